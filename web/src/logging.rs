//! Logs: text for people or JSON for an operator's tools (`log.format`), and a span per HTTP
//! request carrying its id, so that every line a request causes can be found by it.
//!
//! What is never logged: secrets (tokens, passwords, the app secret; `SecretString` prints as
//! `[REDACTED]`) at any level, and message bodies at info or above.

use std::future::Future;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// The header a request id comes in and goes back out in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Targets that are never logged, whatever the level asked: they print secrets (tungstenite's
/// client handshake logs the whole request, `Authorization` header and all, at trace; the demo's
/// simulated agents are websocket clients).
const NEVER: &[&str] = &["tungstenite::handshake=off"];

/// `spec` (a tracing filter such as `info,waos=debug`) with [`NEVER`] added.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in NEVER {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the process's subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(settings: &LogSettings) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.level.clone());
    let filter = filter(&spec);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// A caller's own request id when it is a sane one (a proxy's, say), else a new one.
fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Runs the request inside a `request` span (its id, method and path: never its query, which
/// may carry a websocket ticket; the conversation a path names; the caller's workspace once it
/// is known, see [`record_caller`]) and answers its id in `X-Request-Id`.
pub fn request_span<S, B>(
    request: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let id = request_id(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.path(),
        workspace = tracing::field::Empty,
        conversation = tracing::field::Empty,
    );
    if let Some(conversation) = request
        .path()
        .strip_prefix("/api/v1/conversations/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
    {
        span.record("conversation", conversation);
    }
    let answer = service.call(request).instrument(span);
    async move {
        let mut response = answer.await?;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        Ok(response)
    }
}

/// Names the authenticated caller's workspace on the current request's span.
pub fn record_caller(principal: &waos_engine::auth::Principal) {
    if let Some(workspace) = principal.workspace() {
        tracing::Span::current().record("workspace", tracing::field::display(workspace));
    }
    tracing::debug!(caller = principal.actor().name(), "caller authenticated");
}
