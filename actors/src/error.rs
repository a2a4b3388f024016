//! Errors of the live system, and the business refusals that are values.
//!
//! A [`CommandError`] means the system could not do its job (busy, timed out, log failed); a
//! [`Refusal`] is the system's considered "no" to a valid request. Operations answer
//! `Result<Result<T, Refusal>, CommandError>` ([`Answer`]).

use conductor_engine::checkout::LineShortage;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A bounded queue is full: try again shortly.
    #[error("busy: {0}")]
    Busy(&'static str),
    /// No answer in time. The outcome is unknown; retrying with the same Idempotency-Key
    /// resolves it.
    #[error("no answer in time; the outcome is unknown")]
    Timeout,
    /// The write-ahead log failed; the system takes no more writes.
    #[error("the write-ahead log failed: {0}")]
    LogFailed(String),
    /// The system is shutting down or an actor has stopped.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A business "no".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("insufficient stock")]
    Insufficient(Vec<LineShortage>),
    #[error("{0}")]
    LimitExceeded(String),
}

pub type Answer<T> = Result<Result<T, Refusal>, CommandError>;

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl From<conductor_persistence::WalError> for CommandError {
    fn from(error: conductor_persistence::WalError) -> CommandError {
        match error {
            conductor_persistence::WalError::Busy { .. } => {
                CommandError::Busy("write-ahead log queue full")
            }
            other => CommandError::LogFailed(other.to_string()),
        }
    }
}
