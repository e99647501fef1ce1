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
    /// message the caller can act on.
    pub fn from_insert(error: DbErr, what: &str) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                EngineError::Conflict(format!("{what} already exists"))
            }
            _ => EngineError::from(error),
        }
    }
}
