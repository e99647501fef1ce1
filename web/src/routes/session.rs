//! Sign-in, sign-out and websocket tickets.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use waos_engine::audit::{self, AuditRecord};
use waos_engine::auth::{self, Principal, Session};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, bearer};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ticket {
    /// Single use, valid for seconds: `GET /ws/agent?ticket=...`.
    pub ticket: String,
}

fn ttl(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::hours(12))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    input: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { email, password } = input.into_inner();
    let result = auth::login(
        &state.db,
        &state.hashing,
        &email,
        &password,
        ttl(state.session_ttl),
    )
    .await;
    match result {
        Ok(session) => Ok(HttpResponse::Ok().json(session)),
        Err(waos_engine::EngineError::Unauthorized) => {
            tracing::warn!("login refused");
            let event = AuditRecord {
                kind: waos_engine::audit::AuditKind::LoginFailed,
                text: "sign-in refused: wrong email or password".to_owned(),
                ..AuditRecord::default()
            };
            if let Err(error) = audit::record(&state.db, event).await {
                tracing::warn!(%error, "could not record a security event");
            }
            Err(waos_engine::EngineError::Unauthorized.into())
        }
        Err(other) => Err(other.into()),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    Caller(_caller): Caller,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = bearer(&request) {
        auth::logout(&state.db, &token).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/auth/ws-ticket", tag = "auth",
    responses((status = 200, body = Ticket), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn ws_ticket(
    state: web::Data<AppState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    let Principal::Agent(agent) = caller else {
        return Err(ApiError::Forbidden(
            "websocket tickets are for agents; sign in as one".into(),
        ));
    };
    let ticket = auth::issue_ticket(&state.db, &agent, ttl(state.ws_ticket_ttl)).await?;
    Ok(HttpResponse::Ok().json(Ticket { ticket }))
}
