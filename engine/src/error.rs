//! The engine's error type; the web crate maps each variant to an HTTP status in one place.

use std::ops::Deref;

use sea_orm::{DbErr, RuntimeErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Validation(String),
    #[error("invalid credentials")]
    Unauthorized,
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// Busy for a moment (too much at once): try again shortly.
    #[error("{0}")]
    Unavailable(String),
    #[error("the database is unavailable: {0}")]
    Database(DbErr),
    #[error("{0}")]
    Internal(String),
}

/// The SQLSTATE of a database's own refusal, when the error is one.
fn sqlstate(error: &DbErr) -> Option<String> {
    if let DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) =
        error
        && let sea_orm::sqlx::Error::Database(database) = inner.deref()
    {
        return database.code().map(|code| code.into_owned());
    }
    None
}

impl From<DbErr> for EngineError {
    /// A value the database refuses to store (SQLSTATE class 22, "data exception": a NUL
    /// character in text, a string too long, a number out of range) is bad input, not an
    /// outage: the caller can fix it, and retrying would fail the same way.
    fn from(error: DbErr) -> Self {
        match sqlstate(&error) {
            Some(code) if code.starts_with("22") => EngineError::Validation(format!(
                "a value cannot be stored (database code {code}): text may not contain NUL characters, and numbers must be in range"
            )),
            _ => EngineError::Database(error),
        }
    }
}

impl EngineError {
    /// Unique-index violations (by the database's own error kind) become conflicts with a
    /// message the caller can act on, naming the `field` that must change.
    pub fn from_insert(error: DbErr, field: &str, what: &str) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                EngineError::Conflict(format!("`{field}`: {what} already exists"))
            }
            _ => EngineError::from(error),
        }
    }
}

/// Every error code of the public surfaces (shared/CONTRACT.md), each once, with its HTTP status:
/// REST error bodies, routing refusals and websocket `error` frames all take theirs from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    WindowClosed,
    NotAssigned,
    OverCapacity,
    PayloadTooLarge,
    ValidationFailed,
    RateLimited,
    Internal,
    BadGateway,
    Unavailable,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::WindowClosed,
        ErrorCode::NotAssigned,
        ErrorCode::OverCapacity,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ValidationFailed,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::BadGateway,
        ErrorCode::Unavailable,
    ];

    /// The code and its HTTP status: the one table.
    const fn entry(self) -> (&'static str, u16) {
        match self {
            ErrorCode::BadRequest => ("bad_request", 400),
            ErrorCode::Unauthorized => ("unauthorized", 401),
            ErrorCode::Forbidden => ("forbidden", 403),
            ErrorCode::NotFound => ("not_found", 404),
            ErrorCode::Conflict => ("conflict", 409),
            ErrorCode::WindowClosed => ("window_closed", 409),
            ErrorCode::NotAssigned => ("not_assigned", 409),
            ErrorCode::OverCapacity => ("over_capacity", 409),
            ErrorCode::PayloadTooLarge => ("payload_too_large", 413),
            ErrorCode::ValidationFailed => ("validation_failed", 422),
            ErrorCode::RateLimited => ("rate_limited", 429),
            ErrorCode::Internal => ("internal", 500),
            ErrorCode::BadGateway => ("bad_gateway", 502),
            ErrorCode::Unavailable => ("unavailable", 503),
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.entry().0
    }

    pub const fn status(self) -> u16 {
        self.entry().1
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn each_code_once_and_its_json_name_is_its_code() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            assert!((400..600).contains(&code.status()));
        }
    }
}
