//! The state every handler shares, and the extractors that turn a request into checked values:
//! the caller's key, strict JSON bodies (400 malformed, 413 too large, 415 not JSON, 422 wrong
//! shape), and lookups of codes into the live system's ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use conductor_actors::Conductor;
use conductor_engine::ids::{Code, SkuId, StockPointId};
use conductor_engine::network::{Network, StockPoint};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::auth::{Key, KeyStore};
use crate::problem::{from_json_error, ApiResult, Problem};

/// The largest request body accepted; larger is 413.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Task ids remembered with their stock point, so completing one needs no search.
const TASK_HOMES_MAX: usize = 200_000;

pub struct AppState {
    /// Set once recovery is done; until then `/v1` answers 503 and `/readyz` is not ready.
    pub conductor: OnceLock<Conductor>,
    pub keys: KeyStore,
    /// False before recovery and from the first shutdown signal on.
    pub ready: AtomicBool,
    /// Flips to true at shutdown, so that open streams end and the server can drain.
    pub stopping: watch::Receiver<bool>,
    /// Where each task id we have seen lives.
    pub task_homes: Mutex<HashMap<String, StockPointId>>,
    pub request_timeout: Duration,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn c(&self) -> ApiResult<&Conductor> {
        match self.conductor.get() {
            Some(c) if self.ready.load(Ordering::Acquire) => Ok(c),
            Some(_) => Err(Problem::unavailable("shutting down")),
            None => Err(Problem::unavailable("recovering; not ready yet")),
        }
    }

    pub fn remember_task(&self, task: &str, sp: StockPointId) {
        let mut homes = self.task_homes.lock().unwrap_or_else(|e| e.into_inner());
        if homes.len() >= TASK_HOMES_MAX {
            // A cache: forgetting only costs a search on the next completion.
            homes.clear();
        }
        homes.insert(task.to_owned(), sp);
    }

    pub fn task_home(&self, task: &str) -> Option<StockPointId> {
        self.task_homes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task)
            .copied()
    }
}

/// The request's Idempotency-Key (scoped to the API key) and body fingerprint, put in the
/// request by the idempotency middleware for handlers that record it with their effect.
#[derive(Clone)]
pub struct IdempotencyContext {
    pub key: conductor_engine::idempotency::IdempotencyKey,
    pub fingerprint: u64,
}

/// The authenticated caller, put in the request by the auth middleware.
pub struct Caller(pub Arc<Key>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Problem> {
        parts
            .extensions
            .get::<Arc<Key>>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| Problem::unauthorized("no API key"))
    }
}

fn is_json(parts_content_type: Option<&axum::http::HeaderValue>) -> bool {
    parts_content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

async fn read_body(req: Request) -> Result<(bool, Bytes), Problem> {
    let json = is_json(req.headers().get(header::CONTENT_TYPE));
    let bytes = axum::body::to_bytes(req.into_body(), BODY_BYTES_MAX)
        .await
        .map_err(|_| too_large())?;
    Ok((json, bytes))
}

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Body too large",
        format!("request bodies are at most {BODY_BYTES_MAX} bytes"),
    )
}

fn not_json() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        "send the body as application/json",
    )
}

/// The first allocation of a JSON response body. axum's `Json` starts at 128 bytes and doubles,
/// so a held reservation (~600 bytes with its explanation) was copied three times as it grew.
const JSON_RESPONSE_CAPACITY: usize = 1024;

/// A JSON response (`application/json`). A value that cannot be serialized is logged and
/// answered with the internal problem, never a plain-text 500.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(JSON_RESPONSE_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "a response did not serialize");
                Problem::internal().into_response()
            }
        }
    }
}

/// A strict JSON body: must be `application/json`, at most [`BODY_BYTES_MAX`], and match `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &S) -> Result<JsonBody<T>, Problem> {
        let (json, bytes) = read_body(req).await?;
        if !json {
            return Err(not_json());
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| from_json_error(&e))
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()` (for `confirm`, `cancel`, ...).
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &S) -> Result<OptionalJson<T>, Problem> {
        let (json, bytes) = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| from_json_error(&e))
    }
}

/// A code from the request (SKU, stock point): 1-64 of `[A-Za-z0-9._-]`, else 422 on `field`.
/// `field` is only spelled out for an error, so a path built with `format_args!` costs
/// nothing on the way that succeeds.
pub fn code(field: impl std::fmt::Display, text: &str) -> ApiResult<Code> {
    Code::parse(text).map_err(|e| Problem::invalid(field.to_string(), e.to_string()))
}

/// A stock point named in a request body; unknown is 422 (the contract's rule for bodies).
pub fn stock_point_in_body<'n>(
    network: &'n Network,
    field: &str,
    text: &str,
) -> ApiResult<&'n StockPoint> {
    code(field, text)?;
    network
        .iter()
        .find(|sp| sp.code.as_str() == text)
        .ok_or_else(|| Problem::invalid(field, format!("unknown stock point {text}")))
}

/// A stock point named in the path; unknown is 404.
pub fn stock_point_in_path<'n>(network: &'n Network, text: &str) -> ApiResult<&'n StockPoint> {
    network
        .iter()
        .find(|sp| sp.code.as_str() == text)
        .ok_or_else(|| Problem::not_found(format!("stock point {text} not found")))
}

/// The SKU's id, defining it (durably) when it is new; for routes that create stock.
pub async fn sku_defining(c: &Conductor, field: &str, text: &str) -> ApiResult<SkuId> {
    let code = code(field, text)?;
    if let Some(id) = c.board().sku_id(code.as_str()) {
        return Ok(id);
    }
    let ids = crate::problem::answer(c.define_skus(vec![code]).await)?;
    ids.first()
        .copied()
        .ok_or_else(|| Problem::unavailable("the SKU was not defined"))
}

/// The SKU's id if it exists; unknown is 422 on `field` (it cannot have stock).
pub fn sku_known(c: &Conductor, field: &str, text: &str) -> ApiResult<SkuId> {
    code(field, text)?;
    c.board()
        .sku_id(text)
        .ok_or_else(|| Problem::invalid(field, format!("unknown sku {text}")))
}

pub fn sku_code(c: &Conductor, sku: SkuId) -> String {
    c.board()
        .sku_code(sku)
        .map(|c| c.as_str().to_owned())
        .unwrap_or_else(|| format!("#{}", sku.0))
}

pub fn sp_code(network: &Network, sp: StockPointId) -> String {
    network
        .get(sp)
        .map(|s| s.code.as_str().to_owned())
        .unwrap_or_else(|| format!("#{}", sp.0))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::to_bytes;

    use super::*;

    async fn parts(response: Response) -> (StatusCode, Option<String>, Bytes) {
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = to_bytes(response.into_body(), BODY_BYTES_MAX)
            .await
            .unwrap_or_default();
        (status, kind, body)
    }

    #[tokio::test]
    async fn a_json_response_is_the_value_as_application_json() {
        let value = serde_json::json!({"id": "res-1", "lines": [{"sku": "é", "qty": 2}]});
        let (status, kind, body) = parts(Json(&value).into_response()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind.as_deref(), Some("application/json"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).ok(),
            Some(value)
        );
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_json_is_the_internal_problem_not_plain_text() {
        // JSON object keys must be strings: serde_json refuses a map keyed by pairs.
        let value: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let (status, kind, body) = parts(Json(value).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(kind.as_deref(), Some(crate::problem::PROBLEM_JSON));
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(problem["status"], 500);
    }
}
