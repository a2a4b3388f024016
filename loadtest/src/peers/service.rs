//! The thin checkout service a shop writes today: axum, `POST /v1/reservations` with the same
//! JSON request and response shapes as Conductor's (one line), and a handler that calls
//! Redis-Lua or PostgreSQL through a pool of connections with a prepared statement (or a
//! cached script). It runs as its own process (`conductor-loadtest peer-service`), like the
//! Conductor server, so that both pay the same HTTP and process costs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::peers::redis::{hold, unix_ms, HOLD_SCRIPT};
use crate::target::{err, Error};

/// The longest hold a request may ask for, as in API.md.
const TTL_S_MAX: u64 = 86_400;

pub enum Backend {
    /// Multiplexed connections, used round-robin: redis-rs pipelines the requests of many
    /// handlers on each (what `ConnectionManager` users get).
    Redis {
        conns: Vec<redis::aio::MultiplexedConnection>,
        next: AtomicUsize,
        script: redis::Script,
    },
    Postgres(deadpool_postgres::Pool),
}

#[derive(Deserialize)]
struct ReserveBody {
    lines: Vec<LineBody>,
    #[serde(default = "default_ttl")]
    ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    600
}

#[derive(Deserialize)]
struct LineBody {
    sku: String,
    qty: u64,
}

pub async fn connect(backend: &str, url: &str, pool: usize) -> Result<Backend, Error> {
    match backend {
        "redis" => {
            let client = redis::Client::open(url)?;
            let mut conns = Vec::new();
            for _ in 0..pool.max(1) {
                conns.push(client.get_multiplexed_async_connection().await?);
            }
            Ok(Backend::Redis {
                conns,
                next: AtomicUsize::new(0),
                script: redis::Script::new(HOLD_SCRIPT),
            })
        }
        "postgres" => {
            let config: tokio_postgres::Config = url.parse()?;
            let manager = deadpool_postgres::Manager::from_config(
                config,
                tokio_postgres::NoTls,
                deadpool_postgres::ManagerConfig {
                    // Fast: a connection is checked by its state, not by a query per checkout.
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            let pool = deadpool_postgres::Pool::builder(manager)
                .max_size(pool.max(1))
                .build()?;
            Ok(Backend::Postgres(pool))
        }
        other => Err(err(format!("unknown backend {other}"))),
    }
}

pub fn router(backend: Arc<Backend>) -> Router {
    Router::new()
        .route("/v1/reservations", post(reserve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(backend)
}

/// Serves until killed.
pub async fn serve(backend: &str, url: &str, listen: &str, pool: usize) -> Result<(), Error> {
    let backend = Arc::new(connect(backend, url, pool).await?);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router(backend)).await?;
    Ok(())
}

fn problem(status: StatusCode, name: &str, detail: String, extra: serde_json::Value) -> Response {
    let mut body = json!({
        "type": format!("/problems/{name}"),
        "title": name,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn reserve(State(backend): State<Arc<Backend>>, Json(body): Json<ReserveBody>) -> Response {
    let [line] = body.lines.as_slice() else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "this service takes exactly one line".into(),
            json!({}),
        );
    };
    if line.qty == 0 || body.ttl_seconds == 0 || body.ttl_seconds > TTL_S_MAX {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "qty and ttl_seconds must be positive".into(),
            json!({}),
        );
    }
    let outcome: Result<Result<i64, i64>, String> = match &*backend {
        Backend::Redis {
            conns,
            next,
            script,
        } => {
            let mut conn = conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone();
            hold(&mut conn, script, &line.sku, line.qty, body.ttl_seconds)
                .await
                .map_err(|e| e.to_string())
        }
        Backend::Postgres(pool) => pg_hold(pool, &line.sku, line.qty, body.ttl_seconds).await,
    };
    match outcome {
        Ok(Ok(id)) => {
            let expires_at = rfc3339(unix_ms() / 1000 + body.ttl_seconds);
            let view = json!({
                "id": format!("H-{id}"),
                "status": "held",
                "expires_at": expires_at,
                "lines": [{"sku": line.sku, "qty": line.qty, "allocations": [
                    {"stock_point": "WH1", "qty": line.qty, "source": "on_hand"}]}],
            });
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                view.to_string(),
            )
                .into_response()
        }
        Ok(Err(left)) => problem(
            StatusCode::CONFLICT,
            "insufficient-stock",
            "not enough stock".into(),
            json!({"shortages": [{"sku": line.sku, "requested": line.qty, "available": left.max(0)}]}),
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e, json!({})),
    }
}

async fn pg_hold(
    pool: &deadpool_postgres::Pool,
    sku: &str,
    qty: u64,
    ttl_s: u64,
) -> Result<Result<i64, i64>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let statement = client
        .prepare_cached(crate::peers::postgres::HOLD_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let qty = i64::try_from(qty).map_err(|e| e.to_string())?;
    let row = client
        .query_opt(&statement, &[&sku, &qty, &(ttl_s as f64)])
        .await
        .map_err(|e| e.to_string())?;
    match row {
        Some(row) => Ok(Ok(row.get(0))),
        None => {
            // Only refusals pay for this read: the shortage says what is left, as Conductor's.
            let left = client
                .query_opt("SELECT qty FROM stock WHERE sku = $1", &[&sku])
                .await
                .map_err(|e| e.to_string())?
                .map_or(0, |r| r.get::<_, i64>(0));
            Ok(Err(left))
        }
    }
}

/// `secs` since the epoch as RFC 3339 UTC (days-from-civil inverted, Howard Hinnant's method).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The service as a child process of the harness.
pub struct ServiceProcess {
    child: std::process::Child,
    pub url: String,
}

impl ServiceProcess {
    pub async fn start(
        backend: &str,
        store_url: &str,
        pool: usize,
    ) -> Result<ServiceProcess, Error> {
        let port = crate::server::free_port()?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["peer-service", "--backend", backend, "--url", store_url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--pool", &pool.to_string()])
            .stdin(std::process::Stdio::null())
            .spawn()?;
        let service = ServiceProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/readyz", service.url)).send().await {
                if r.status().is_success() {
                    return Ok(service);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        Err(err("the peer service did not start"))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
