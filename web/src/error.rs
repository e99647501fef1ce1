//! One error type for every HTTP answer: the code decides the status and the JSON body here,
//! and nowhere else. Bodies are `{"error":{"code":"...","message":"..."}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use waos_engine::EngineError;
use waos_engine::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Validation(String),
    #[error("the agent has no free capacity")]
    OverCapacity,
    #[error("the conversation is not assigned to this agent")]
    NotAssigned,
    #[error("the 24-hour customer-service window is closed: send an approved template instead")]
    WindowClosed,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too many attempts: try again after `retry_after` (sent as `Retry-After`, in seconds).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Meta (or another upstream) refused or failed; the message says how.
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `not_found`, `validation_failed`, ...
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    /// Its code; the status comes with it from the one table ([`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::OverCapacity => ErrorCode::OverCapacity,
            ApiError::NotAssigned => ErrorCode::NotAssigned,
            ApiError::WindowClosed => ErrorCode::WindowClosed,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::BadGateway(_) => ErrorCode::BadGateway,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited { retry_after, .. } = self {
            // Whole seconds, rounded up: a client that waits this long finds a slot.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            response.insert_header(("retry-after", seconds.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().as_str(),
                message: self.to_string(),
            },
        })
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::Validation(message) => ApiError::Validation(message),
            EngineError::Unauthorized => {
                ApiError::Unauthorized("the email or password is wrong".to_owned())
            }
            EngineError::Forbidden(message) => ApiError::Forbidden(message),
            EngineError::Unavailable(message) => ApiError::Unavailable(message),
            EngineError::Database(error) => {
                tracing::warn!(%error, "database error");
                ApiError::Unavailable("the database is unavailable; try again shortly".to_owned())
            }
            EngineError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// Maps actix's JSON body errors: malformed JSON is 400, well-formed but wrong fields 422.
pub fn json_error(
    error: actix_web::error::JsonPayloadError,
    _request: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match &error {
        JsonPayloadError::Deserialize(inner) if inner.is_data() => {
            ApiError::Validation(inner.to_string())
        }
        JsonPayloadError::Deserialize(inner) => {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        }
        JsonPayloadError::ContentType => {
            ApiError::BadRequest("send the body as application/json".to_owned())
        }
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge("the body is too large".to_owned())
        }
        other => ApiError::BadRequest(other.to_string()),
    };
    api.into()
}

/// Maps bad query strings (`?limit=abc`) to 422.
pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _request: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::Validation(error.to_string()).into()
}

impl From<waos_engine::routing::RoutingError> for ApiError {
    fn from(error: waos_engine::routing::RoutingError) -> Self {
        use waos_engine::routing::RoutingError;
        match error {
            RoutingError::OverCapacity => ApiError::OverCapacity,
            RoutingError::NotAssigned => ApiError::NotAssigned,
            RoutingError::WindowClosed => ApiError::WindowClosed,
            RoutingError::NotFound(what) => ApiError::NotFound(what.into()),
            RoutingError::Conflict(message) => ApiError::Conflict(message),
            RoutingError::Invalid(message) => ApiError::Validation(message),
            RoutingError::Unavailable => {
                ApiError::Unavailable("the routing engine is not running".into())
            }
        }
    }
}
