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
    /// The request field a refusal is about, as a path (`email`, `weekly.mon[0][1]`,
    /// `admin.email`), so that a form can show it beside its input. Only on 409 and 422, and
    /// only when one field is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The field a refusal names. Messages about one field start with its path in backticks
/// (`` `weekly.mon[0][1]` must be ... ``); serde's own say ``missing field `x` `` or
/// ``unknown field `x` ``.
fn field_of(message: &str) -> Option<String> {
    let quoted = |rest: &str| {
        rest.split_once('`')
            .map(|(field, _)| field.to_owned())
            .filter(|field| !field.is_empty() && !field.contains(char::is_whitespace))
    };
    if let Some(rest) = message.strip_prefix('`') {
        return quoted(rest);
    }
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|lead| message.find(lead).map(|at| &message[at + lead.len()..]))
        .and_then(quoted)
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
        let message = self.to_string();
        let field = match self {
            ApiError::Validation(_) | ApiError::Conflict(_) => field_of(&message),
            _ => None,
        };
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().as_str(),
                message,
                field,
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

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn a_refusal_names_the_field_it_starts_with_or_serde_names() {
        let cases = [
            (
                "`weekly.mon[0][1]` 25:00 is not a time",
                Some("weekly.mon[0][1]"),
            ),
            ("`admin.email` is not an email address", Some("admin.email")),
            ("missing field `name` at line 1 column 2", Some("name")),
            ("unknown field `nmae`, expected one of `name`", Some("nmae")),
            // A value in backticks is not a field.
            ("invalid value: integer `-1`, expected u32", None),
            ("retention days must be between 1 and 36500", None),
            ("`` is empty", None),
            ("`two words` quoted", None),
        ];
        for (message, field) in cases {
            assert_eq!(field_of(message).as_deref(), field, "{message}");
        }
    }
}
