//! The router and its middleware, and the server's life: bind, recover, serve, drain, stop.
//!
//! Middleware, outermost first: panic catcher (a bug answers a problem, not a dropped
//! connection), metrics (route latency), request timeout, then on `/v1` auth and
//! idempotency. Routing failures (404, 405) and body limits answer problem+json like the rest.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use axum::Router;
use conductor_actors::conductor::IdempotencyBegin;
use conductor_actors::{Conductor, Config};
use conductor_engine::idempotency::{
    fingerprint, IdempotencyKey, StoredResponse, IDEMPOTENT_RESPONSE_BYTES_MAX,
};
use futures_util::FutureExt;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::app::{too_large, AppState, IdempotencyContext, Shared, BODY_BYTES_MAX};
use crate::auth::{KeyStore, Scope};
use crate::metrics::{self, METRICS};
use crate::problem::{Problem, PROBLEM_JSON};
use crate::{api, openapi, sse};

/// How long shutdown waits for in-flight requests before it stops the engine anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The availability stream: no deadline, and the only route that takes its key in the query.
const STREAM_PATH: &str = "/v1/availability/stream";

pub fn router(st: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/api-keys", post(api::create_key).get(api::list_keys))
        .route("/v1/api-keys/{id}", axum::routing::delete(api::revoke_key))
        .route("/v1/stock-points", get(api::list_stock_points))
        .route("/v1/stock-points/{id}", put(api::put_stock_point))
        .route("/v1/stock-points/{id}/tasks", get(api::list_tasks))
        .route(
            "/v1/stock-points/{id}/replenishment",
            get(api::replenishment),
        )
        .route("/v1/inventory/adjustments", post(api::adjust))
        .route("/v1/inventory/safety-stock", put(api::safety_stock))
        .route("/v1/inventory/incoming", post(api::incoming))
        .route("/v1/inventory/receipts", post(api::receipt))
        .route("/v1/skus/{sku}/limits", put(api::sku_limits))
        .route("/v1/availability", get(api::availability))
        .route(STREAM_PATH, get(sse::stream))
        .route("/v1/reservations", post(api::reserve))
        .route(
            "/v1/reservations/{id}",
            get(api::get_reservation).delete(api::release_reservation),
        )
        .route("/v1/reservations/{id}/confirm", post(api::confirm))
        .route("/v1/orders", post(api::place_order))
        .route("/v1/orders/{id}", get(api::get_order))
        .route("/v1/orders/{id}/cancel", post(api::cancel_order))
        .route("/v1/orders/{id}/returns", post(api::open_return))
        .route("/v1/returns/{id}", get(api::get_return))
        .route("/v1/returns/{id}/receive", post(api::receive_return))
        .route("/v1/tasks/{id}/complete", post(api::complete_task))
        .route(
            "/v1/sourcing-rules",
            get(api::get_rules).put(api::put_rules),
        );
    let ops = Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi::serve));
    Router::new()
        .merge(v1)
        .merge(ops)
        .route_layer(middleware::from_fn_with_state(st.clone(), guard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(catch_panic))
        .with_state(st)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take that method",
    )
}

async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            error!("a request handler panicked");
            Problem::internal().into_response()
        }
    }
}

/// Every routed request: timed for the metrics, bounded by the deadline (all but the stream),
/// and for a `/v1` route authenticated first. One layer, not three: each layer clones the inner
/// service and boxes the request's future once more. A timed-out command may still take effect:
/// the problem says to retry with the same Idempotency-Key.
async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // A cheap clone (the path is shared), not a copy of the string.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let deadline = (req.uri().path() != STREAM_PATH).then_some(st.request_timeout);
    let call = async {
        if route
            .as_ref()
            .is_some_and(|r| r.as_str().starts_with("/v1/"))
        {
            authenticate(st, req, next).await
        } else {
            next.run(req).await
        }
    };
    let response = match deadline {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(response) => response,
            Err(_) => Problem::from(conductor_actors::error::CommandError::Timeout).into_response(),
        },
    };
    if let Some(route) = route {
        metrics::observe(
            method.as_str(),
            route.as_str(),
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

/// The scope each `/v1` route needs (stock point binding is checked by the handler, which
/// knows the stock point). `None` means any valid key.
fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    Some(match route {
        "/v1/stock-points" if method == Method::GET => return None,
        "/v1/availability" | "/v1/availability/stream" => Scope::Read,
        "/v1/reservations"
        | "/v1/reservations/{id}"
        | "/v1/reservations/{id}/confirm"
        | "/v1/orders"
        | "/v1/orders/{id}"
        | "/v1/orders/{id}/cancel"
        | "/v1/orders/{id}/returns"
        | "/v1/returns/{id}" => Scope::Checkout,
        "/v1/stock-points/{id}/tasks"
        | "/v1/tasks/{id}/complete"
        | "/v1/inventory/receipts"
        | "/v1/returns/{id}/receive" => Scope::Fulfilment,
        _ => Scope::Admin,
    })
}

/// The bearer token, borrowed from the request where it can be (this runs for every call).
fn bearer(req: &Request) -> Option<Cow<'_, str>> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Borrowed(token.trim()));
    }
    // EventSource cannot send headers: the stream alone takes the key in the query.
    if req.uri().path() == STREAM_PATH {
        let query = req.uri().query()?;
        return form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v);
    }
    None
}

/// Auth for a `/v1` route, then idempotency for POSTs that carry a key.
async fn authenticate(st: Shared, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return Problem::unauthorized("send Authorization: Bearer <key>").into_response();
    };
    let key = match st.keys.authenticate(&token) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
    };
    // The scope is checked before the body is read, so that a caller without it learns
    // nothing from validation errors (403 before 422).
    let route = req.extensions().get::<MatchedPath>();
    if let Some(scope) = route.and_then(|r| required_scope(req.method(), r.as_str())) {
        if let Err(problem) = key.require(scope) {
            return problem.into_response();
        }
    }
    let idempotency = (req.method() == Method::POST)
        .then(|| req.headers().get("idempotency-key").cloned())
        .flatten();
    let scope = idempotency.as_ref().map(|_| key.id().to_owned());
    req.extensions_mut().insert(key);
    match (idempotency, scope) {
        (Some(value), Some(scope)) => idempotent(st, scope, value, req, next).await,
        _ => next.run(req).await,
    }
}

fn stored_response(stored: &StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Body::from(stored.body.clone())).into_response();
    if !stored.body.is_empty() {
        let kind = if status.is_success() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Runs a POST at most once per (API key, Idempotency-Key): the first response is recorded in
/// the log, and a retry with the same body gets it back.
async fn idempotent(
    st: Shared,
    scope: String,
    value: HeaderValue,
    req: Request,
    next: Next,
) -> Response {
    let c = match st.c() {
        Ok(c) => c.clone(),
        Err(p) => return p.into_response(),
    };
    let key = match value
        .to_str()
        .ok()
        .and_then(|v| IdempotencyKey::new(&scope, v).ok())
    {
        Some(key) => key,
        None => {
            return Problem::invalid("Idempotency-Key", "1 to 255 visible ASCII characters")
                .into_response()
        }
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large().into_response(),
    };
    let print = fingerprint(&[b"POST", parts.uri.path().as_bytes(), &bytes]);
    match c.idempotency_begin(&key, print) {
        IdempotencyBegin::Replay(stored) => {
            metrics::count(&METRICS.idempotent_replays);
            return stored_response(&stored);
        }
        IdempotencyBegin::Mismatch => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was used with a different request",
            )
            .into_response()
        }
        IdempotencyBegin::Running => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "Request in progress",
                "the first request with this Idempotency-Key is still running",
            )
            .retry_after(1)
            .into_response()
        }
        IdempotencyBegin::New => {}
    }
    // If this future is dropped (client gone, timeout), the key must not stay "running".
    struct Abandon<'a>(Option<(&'a Conductor, &'a IdempotencyKey)>);
    impl Drop for Abandon<'_> {
        fn drop(&mut self) {
            if let Some((c, key)) = self.0.take() {
                c.idempotency_abandon(key);
            }
        }
    }
    let mut guard = Abandon(Some((&c, &key)));
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdempotencyContext {
        key: key.clone(),
        fingerprint: print,
    });
    let response = next.run(req).await;
    let status = response.status();
    // Record answers that are final: effects (2xx) and business refusals (4xx); never a 5xx or
    // a rate limit, which a retry should get past.
    let final_answer = status.is_success()
        || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS);
    if !final_answer {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, IDEMPOTENT_RESPONSE_BYTES_MAX).await else {
        warn!("response too large to remember for its idempotency key");
        return Problem::internal().into_response();
    };
    guard.0 = None;
    if let Err(e) = c
        .idempotency_record(
            key.clone(),
            print,
            StoredResponse {
                status: status.as_u16(),
                body: bytes.to_vec(),
            },
        )
        .await
    {
        warn!(error = %e, "idempotency record failed; a retry may run again");
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "live"}))
}

async fn readyz(State(st): State<Shared>) -> Response {
    match st.conductor.get() {
        Some(c) if st.ready.load(Ordering::Acquire) && c.takes_writes() => {
            axum::Json(serde_json::json!({"status": "ready"})).into_response()
        }
        Some(_) if st.ready.load(Ordering::Acquire) => Problem::unavailable(
            "not ready: the orchestrator or the order desk is stopped or restarting",
        )
        .into_response(),
        _ => Problem::unavailable("not ready: recovering or shutting down").into_response(),
    }
}

async fn metrics_text(State(st): State<Shared>) -> Response {
    let body = metrics::render(st.conductor.get(), st.ready.load(Ordering::Acquire));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

/// What `serve` needs, resolved from flags, environment and the config file.
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub config: Config,
    pub admin_key: Option<String>,
    pub demo: bool,
    /// Tokio worker threads; the binary builds its runtime with this many.
    pub runtime_threads: usize,
    pub request_timeout: Duration,
}

/// Runs the server until SIGINT or SIGTERM, then drains and stops. Binds first, so that
/// `/healthz` answers and `/readyz` says "not yet" while the log is recovered.
pub async fn serve(options: ServeOptions) -> std::io::Result<()> {
    let keys = KeyStore::open(&options.config.data_dir, options.admin_key.clone())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let st: Shared = Arc::new(AppState {
        conductor: OnceLock::new(),
        keys,
        ready: Default::default(),
        stopping: stop_rx,
        task_homes: Mutex::new(Default::default()),
        request_timeout: options.request_timeout,
    });
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let local = listener.local_addr()?;
    info!(listen = %local, runtime_threads = options.runtime_threads, "listening");
    let app = router(st.clone());
    let shutdown_rx = stop_tx.subscribe();
    let server = tokio::spawn(async move {
        let mut rx = shutdown_rx;
        // Answers go out at once: a response written in two parts must not wait for the
        // client's delayed ACK (Nagle), which shows as 40 ms tails.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
    });

    let (conductor, recovered) = Conductor::start(options.config.clone())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    info!(
        events = recovered.events,
        settled = recovered.settled,
        elapsed_ms = recovered.elapsed.as_millis() as u64,
        "ready"
    );
    if st.conductor.set(conductor.clone()).is_err() {
        return Err(std::io::Error::other("started twice"));
    }
    st.ready.store(true, Ordering::Release);
    if options.demo {
        crate::demo::start(conductor.clone(), stop_tx.subscribe()).await;
    }

    shutdown_signal().await;
    info!("shutting down: readiness off, draining");
    st.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => warn!(error = %e, "server task failed"),
        Err(_) => warn!("in-flight requests did not finish in time"),
    }
    conductor.shutdown().await;
    info!("bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    // For supervisors and tests that own the process through a pipe: when they go away, stop.
    let orphaned = async {
        if std::env::var_os("CONDUCTOR_EXIT_ON_STDIN_EOF").is_some() {
            // A plain thread, not spawn_blocking: the runtime must not wait for it at exit.
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut sink = [0u8; 256];
                while matches!(std::io::Read::read(&mut std::io::stdin(), &mut sink), Ok(n) if n > 0)
                {
                }
                let _ = tx.send(());
            });
            let _ = rx.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
        _ = orphaned => {},
    }
}
