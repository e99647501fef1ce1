//! The engine's error type; the web crate maps each variant to an HTTP status in one place.

use sea_orm::DbErr;

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
    Database(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// Unique-index violations become conflicts with a message the caller can act on.
    pub fn from_insert(error: DbErr, what: &str) -> Self {
        let text = error.to_string().to_lowercase();
        if text.contains("unique") || text.contains("duplicate") {
            EngineError::Conflict(format!("{what} already exists"))
        } else {
            EngineError::Database(error)
        }
    }
}
