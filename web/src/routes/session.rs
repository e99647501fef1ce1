//! Sign-in, sign-out and websocket tickets.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use waos_engine::audit::{self, AuditKind, AuditRecord};
use waos_engine::auth::{self, AccessEnded, Principal, Refused, Session};
use waos_engine::authz::Action;
use waos_engine::ids::{AgentId, WorkspaceId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Client, bearer};
use crate::state::AppState;
use crate::throttle::ThrottleKey;

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
    responses((status = 200, body = Session), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many failed sign-ins for this account or address; `Retry-After` says when to try again"),
        (status = 503, body = ErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    client: Client,
    input: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { email, password } = input.into_inner();
    let keys = throttle_keys(&email, &client);
    let turn = state.login_throttle.turn(&keys).await;
    refuse_while_locked(
        &state,
        &turn,
        None,
        &client,
        "sign-in refused: too many failed attempts",
    )
    .await?;
    let outcome = auth::login(
        &state.db,
        &state.hashing,
        &email,
        &password,
        ttl(state.session_ttl),
    )
    .await?;
    match outcome {
        Ok(session) => {
            let account = Some((session.agent_id, session.workspace_id));
            security_event(
                &state,
                AuditKind::LoginSucceeded,
                account,
                &client,
                "signed in",
            )
            .await;
            Ok(HttpResponse::Ok().json(session))
        }
        Err(Refused { account }) => {
            tracing::warn!("sign-in refused");
            security_event(
                &state,
                AuditKind::LoginFailed,
                account,
                &client,
                "sign-in refused: wrong email or password",
            )
            .await;
            match state.login_throttle.failed(&turn).await {
                Some(wait) => Err(throttled(wait)),
                None => Err(waos_engine::EngineError::Unauthorized.into()),
            }
        }
    }
}

/// The throttle's buckets a password guess counts in: the account's (by email) and the
/// client address's.
fn throttle_keys<'a>(email: &'a str, client: &Client) -> Vec<ThrottleKey<'a>> {
    let mut keys = vec![ThrottleKey::Account(email)];
    keys.extend(client.address.map(ThrottleKey::Address));
    keys
}

/// 429 while any of the turn's buckets is locked, with a security event.
async fn refuse_while_locked(
    state: &AppState,
    turn: &crate::throttle::Turn<'_>,
    account: Option<(AgentId, WorkspaceId)>,
    client: &Client,
    text: &str,
) -> Result<(), ApiError> {
    let Some(wait) = state.login_throttle.locked_for(turn).await else {
        return Ok(());
    };
    // A flood of refused attempts must not become a flood of rows: bounded, then counted.
    if state.security_events.check().is_ok() {
        security_event(state, AuditKind::LoginThrottled, account, client, text).await;
    }
    Err(throttled(wait))
}

fn throttled(wait: std::time::Duration) -> ApiError {
    ApiError::RateLimited {
        message: "too many failed sign-ins for this account or address; wait and try again".into(),
        retry_after: wait,
    }
}

/// Records a sign-in's security event with the client's address and user agent. The event is
/// the trail, not the answer: a failure to write it is logged, and the sign-in goes on.
async fn security_event(
    state: &AppState,
    kind: AuditKind,
    account: Option<(AgentId, WorkspaceId)>,
    client: &Client,
    text: &str,
) {
    let event = AuditRecord {
        kind,
        workspace_id: account.map(|(_, workspace)| workspace),
        agent_id: account.map(|(agent, _)| agent),
        reason: Some(client.as_reason()),
        text: text.to_owned(),
        ..AuditRecord::default()
    };
    if let Err(error) = audit::record(&state.db, event).await {
        tracing::warn!(%error, "could not record a security event");
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = bearer(&request) {
        auth::logout(&state.db, &token).await?;
    }
    // A session ended on purpose: the agent's sockets close and its conversations go to
    // agents who are there, rather than waiting out the disconnect grace period.
    if let Principal::Agent(agent) = &caller {
        state.end_access(AccessEnded::Agent {
            agent_id: agent.agent_id,
            keep: None,
        });
        if let Err(error) = state
            .engine
            .sign_out_agent(agent.workspace_id, agent.agent_id, "the agent signed out")
            .await
        {
            tracing::warn!(%error, agent = %agent.agent_id, "an agent's sign-out did not reach routing");
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[schema(value_type = String, format = Password)]
    pub current: SecretString,
    /// The new one (at least 10 characters).
    #[schema(value_type = String, format = Password)]
    pub new: SecretString,
}

#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "Changed; every other session of the agent has ended"),
        (status = 422, body = ErrorBody, description = "`current` is wrong, or `new` too short"),
        (status = 429, body = ErrorBody, description = "Too many wrong `current` passwords; `Retry-After` says when to try again")),
    security(("bearer" = [])))]
pub async fn change_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    client: Client,
    Caller(caller): Caller,
    input: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Action::ChangeOwnPassword)?;
    let (Principal::Agent(agent), Some(token)) = (&caller, bearer(&request)) else {
        return Err(ApiError::Internal("a person who is not an agent".into()));
    };
    // A stolen session must not become a way to guess the password: wrong guesses are failed
    // sign-ins, in the same buckets (the account's email, the address), so neither door adds
    // attempts to the other.
    let own = auth::account(&state.db, agent.agent_id).await?;
    let email = own.email.clone();
    let keys = throttle_keys(&email, &client);
    let turn = state.login_throttle.turn(&keys).await;
    let account = Some((agent.agent_id, agent.workspace_id));
    refuse_while_locked(
        &state,
        &turn,
        account,
        &client,
        "password change refused: too many wrong passwords",
    )
    .await?;
    let PasswordChange { current, new } = input.into_inner();
    if !auth::change_password(&state.db, &state.hashing, own, &token, &current, &new).await? {
        security_event(
            &state,
            AuditKind::LoginFailed,
            account,
            &client,
            "password change refused: the current password is wrong",
        )
        .await;
        return Err(match state.login_throttle.failed(&turn).await {
            Some(wait) => throttled(wait),
            None => ApiError::Validation("`current` is not the password of this account".into()),
        });
    }
    security_event(
        &state,
        AuditKind::PasswordChanged,
        account,
        &client,
        "changed its own password; its other sessions ended",
    )
    .await;
    // The other sessions' sockets close with them; this session's stay open, its presence and
    // offers untouched, and so do the agent's conversations: the agent is still there.
    state.end_access(AccessEnded::Agent {
        agent_id: agent.agent_id,
        keep: Some(waos_engine::crypto::token_hash(&token)),
    });
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/auth/ws-ticket", tag = "auth",
    responses((status = 200, body = Ticket), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn ws_ticket(
    state: web::Data<AppState>,
    request: HttpRequest,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Action::OpenAgentSocket)?;
    let Principal::Agent(agent) = caller else {
        return Err(ApiError::Internal("a person who is not an agent".into()));
    };
    let session = bearer(&request);
    let ticket = auth::issue_ticket(
        &state.db,
        &agent,
        session.as_deref(),
        ttl(state.ws_ticket_ttl),
    )
    .await?;
    Ok(HttpResponse::Ok().json(Ticket { ticket }))
}
