//! Every error the API answers, as `application/problem+json`, and the one mapping from the
//! live system's [`CommandError`] and [`Refusal`] to HTTP.
//!
//! A problem never carries a stack trace, a file path or a Debug dump: `detail` is written for
//! the client, and the log gets the rest.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use conductor_actors::error::{CommandError, Refusal};
use serde_json::{json, Map, Value};

use crate::metrics;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client is told to wait after a 503 for a busy or restarting system.
const RETRY_AFTER_BUSY_S: u64 = 1;

/// One error response. `name` is the last segment of `type` (`/problems/<name>`).
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub name: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extension members (`field`, `shortages`, ...), merged into the body.
    pub extra: Map<String, Value>,
    pub retry_after_s: Option<u64>,
}

pub type ApiResult<T> = Result<T, Problem>;

impl Problem {
    pub fn new(
        status: StatusCode,
        name: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            name,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_s: None,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Problem {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            detail,
        )
    }

    /// 422 naming the bad field, as the contract asks for invalid values.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Problem {
        let field = field.into();
        let detail = detail.into();
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            format!("{field}: {detail}"),
        )
        .with("field", Value::String(field))
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown API key",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
        .retry_after(RETRY_AFTER_BUSY_S)
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed inside the server; it has been logged",
        )
    }

    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.name)
    }

    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(self.type_uri()));
        body.insert("title".into(), Value::String(self.title.into()));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        metrics::rejected(self.name);
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The one mapping from the live system's failures to HTTP. None of these is the client's
/// fault, so each is a 503 with `Retry-After`, and the detail says whether retrying is safe.
impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Problem {
        match error {
            CommandError::Busy(what) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Busy",
                format!("{what}; retry shortly"),
            )
            .retry_after(RETRY_AFTER_BUSY_S),
            CommandError::Timeout => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "No answer in time",
                "outcome unknown, retry with the same Idempotency-Key",
            )
            .retry_after(RETRY_AFTER_BUSY_S),
            CommandError::LogFailed(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log-failed",
                "Write-ahead log failed",
                "the write-ahead log failed; the system takes no more writes",
            ),
            CommandError::Unavailable(what) => Problem::unavailable(what),
        }
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Problem {
        match refusal {
            Refusal::NotFound(what) => Problem::not_found(format!("{what} not found")),
            Refusal::Conflict(what) => Problem::conflict(what),
            Refusal::Invalid { field, message } => Problem::invalid(field, message),
            Refusal::Insufficient(shortages) => {
                let items: Vec<Value> = shortages
                    .iter()
                    .map(|s| json!({"sku": s.sku.as_str(), "requested": s.requested.0, "available": s.available.0}))
                    .collect();
                Problem::new(
                    StatusCode::CONFLICT,
                    "insufficient-stock",
                    "Insufficient stock",
                    "not enough stock for every line; nothing is held",
                )
                .with("shortages", Value::Array(items))
            }
            Refusal::LimitExceeded(what) => Problem::new(
                StatusCode::CONFLICT,
                "limit-exceeded",
                "Per-customer limit exceeded",
                what,
            ),
        }
    }
}

/// Flattens the live system's nested answer into the API's result.
pub fn answer<T>(answer: conductor_actors::error::Answer<T>) -> ApiResult<T> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refusal)) => Err(refusal.into()),
        Err(error) => Err(error.into()),
    }
}

/// Unwraps a query's `Result<T, CommandError>`.
pub fn query<T>(result: Result<T, CommandError>) -> ApiResult<T> {
    result.map_err(Problem::from)
}

/// Classifies a serde_json error: bad syntax is 400, a well-formed document of the wrong shape
/// is 422 (the contract's split).
pub fn from_json_error(error: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => Problem::malformed(error.to_string()),
        Category::Data => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            error.to_string(),
        ),
    }
}
