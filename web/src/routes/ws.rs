//! `GET /ws/agent`: the agent's live socket. A thin pump: socket in, outbox out, heartbeat;
//! every decision is the `AgentActor`'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio::sync::mpsc;
use waos_engine::auth::{self, Principal};
use waos_engine::authz::Action;
use waos_engine::error::ErrorCode;
use waos_engine::routing::frames::{ServerFrame, parse_client_frame};

use crate::error::ApiError;
use crate::extract::{bearer, principal_of_bearer};
use crate::sockets::{Holder, Registration};
use crate::state::AppState;

/// Ids for sockets, unique within the process.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

#[derive(Deserialize)]
pub struct TicketQuery {
    ticket: Option<String>,
}

/// The Origin, when a browser sends one, must be this server's own.
fn same_origin(request: &HttpRequest) -> bool {
    let Some(origin) = request
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let host = request.connection_info().host().to_owned();
    origin
        .split_once("://")
        .is_some_and(|(_, origin_host)| origin_host.trim_end_matches('/') == host)
}

/// Checks the origin, then the credentials: a bearer token (API clients, integrations) or a
/// single-use ticket (browsers, which cannot set headers on a websocket). Answers the caller
/// and, for a person, the hash of the session the socket belongs to.
async fn authenticate_socket(
    state: &AppState,
    request: &HttpRequest,
    ticket: Option<&str>,
) -> Result<(Principal, Option<String>), ApiError> {
    if !same_origin(request) {
        return Err(ApiError::Forbidden("cross-origin websocket refused".into()));
    }
    let caller = match (bearer(request), ticket) {
        (Some(token), _) => principal_of_bearer(state, &token).await?.map(|principal| {
            let session = matches!(principal, Principal::Agent(_))
                .then(|| waos_engine::crypto::token_hash(&token));
            (principal, session)
        }),
        (None, Some(ticket)) => auth::redeem_ticket(&state.db, ticket)
            .await?
            .map(|(agent, session)| (Principal::Agent(agent), session)),
        (None, None) => None,
    };
    caller.ok_or_else(|| {
        ApiError::Unauthorized(
            "send a bearer token or a fresh `?ticket=` from /api/v1/auth/ws-ticket".into(),
        )
    })
}

pub async fn agent_socket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<TicketQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let (caller, session) = authenticate_socket(&state, &request, query.ticket.as_deref()).await?;
    caller
        .require(Action::OpenAgentSocket)
        .map_err(ApiError::from)?;
    let Principal::Agent(principal) = caller else {
        return Err(ApiError::Internal("a person who is not an agent".into()).into());
    };
    let socket_id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let registration =
        state
            .sockets
            .register(Holder::Agent(principal.agent_id), socket_id, session);
    let (outbox, frames) = mpsc::channel::<String>(state.websocket.outbox_capacity.max(1));
    let socket = std::rc::Rc::new(
        state
            .engine
            .connect_agent(
                principal.workspace_id,
                principal.agent_id,
                socket_id,
                outbox,
            )
            .await
            .map_err(ApiError::from)?,
    );
    let on_frame = {
        let socket = socket.clone();
        let caller = Principal::Agent(principal.clone());
        move |text: &str| match parse_client_frame(text) {
            // Every frame through the table (today every person may send each kind).
            Ok(frame) => match caller.require(frame.action()) {
                Ok(()) => {
                    socket.frame(frame);
                    None
                }
                Err(refused) => {
                    Some(ServerFrame::error(ErrorCode::Forbidden, refused.to_string()).to_json())
                }
            },
            Err(problem) => Some(ServerFrame::error(ErrorCode::BadRequest, problem).to_json()),
        }
    };
    let on_close = move || socket.disconnect();
    pump(
        &state,
        &request,
        body,
        frames,
        registration,
        on_frame,
        on_close,
    )
}

/// The socket loop shared by agents and supervisors: text frames in to `on_frame` (which may
/// answer with an error frame), the outbox out, pings on a timer; `on_close` when it ends,
/// which is also when its holder's access ends (`registration`).
fn pump(
    state: &AppState,
    request: &HttpRequest,
    body: web::Payload,
    mut frames: mpsc::Receiver<String>,
    registration: Registration,
    on_frame: impl Fn(&str) -> Option<String> + 'static,
    on_close: impl FnOnce() + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    // Not a websocket after all (no upgrade): the socket it was opened for ends here, or its
    // holder would look online with nobody behind it.
    let (response, mut session, stream) = match actix_ws::handle(request, body) {
        Ok(handled) => handled,
        Err(error) => {
            on_close();
            return Err(error);
        }
    };
    let mut stream = stream.max_frame_size(64 * 1024).aggregate_continuations();
    let heartbeat = std::time::Duration::from_millis(state.websocket.heartbeat_interval_ms.max(10));
    let client_timeout =
        std::time::Duration::from_millis(state.websocket.client_timeout_ms.max(10));

    actix_web::rt::spawn(async move {
        let mut ticker = tokio::time::interval(heartbeat);
        let mut last_heard = Instant::now();
        // Set when the server ends the session (shutdown, sign-out, a consumer too slow): the
        // close frame says "going away", and a console reconnects.
        let mut ended_by_server = None;
        loop {
            tokio::select! {
                incoming = stream.recv() => {
                    let Some(Ok(message)) = incoming else { break };
                    last_heard = Instant::now();
                    let answer = match message {
                        actix_ws::AggregatedMessage::Text(text) => on_frame(&text),
                        actix_ws::AggregatedMessage::Binary(_) => {
                            Some(ServerFrame::error(ErrorCode::BadRequest, "frames are JSON text").to_json())
                        }
                        actix_ws::AggregatedMessage::Ping(bytes) => {
                            if session.pong(&bytes).await.is_err() { break }
                            None
                        }
                        actix_ws::AggregatedMessage::Pong(_) => None,
                        actix_ws::AggregatedMessage::Close(_) => break,
                    };
                    if let Some(answer) = answer
                        && session.text(answer).await.is_err()
                    {
                        break;
                    }
                }
                outgoing = frames.recv() => {
                    // `None`: the engine dropped this socket (shutdown, sign-out, too slow).
                    let Some(text) = outgoing else {
                        ended_by_server = Some(actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Away,
                            description: Some("the server ended this session; reconnect".into()),
                        });
                        break;
                    };
                    if session.text(text).await.is_err() { break }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > client_timeout { break }
                    if session.ping(b"").await.is_err() { break }
                }
                () = registration.closed() => {
                    ended_by_server = Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Policy,
                        description: Some("signed out: this access has ended".into()),
                    });
                    break;
                }
            }
        }
        on_close();
        let _ = session.close(ended_by_server).await;
    });
    Ok(response)
}

#[derive(Deserialize)]
struct AssignFrame {
    conversation_id: String,
    agent_id: String,
}

/// `GET /ws/supervisor`: a `stats` snapshot, then coalesced `stats_delta` frames; the client may
/// send `assign` frames. Supervisors see their teams, admins the whole workspace.
pub async fn supervisor_socket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<TicketQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    use waos_engine::auth::Role;

    let (principal, session) =
        authenticate_socket(&state, &request, query.ticket.as_deref()).await?;
    let (Some(holder), Some(workspace)) = (Holder::of(&principal), principal.workspace()) else {
        return Err(ApiError::Forbidden(
            "the queue dashboard is a workspace's; the installation token has none".into(),
        )
        .into());
    };
    principal
        .require(Action::WatchDashboard)
        .map_err(ApiError::from)?;
    let subscriber_id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let registration = state.sockets.register(holder, subscriber_id, session);
    let (outbox, frames) = mpsc::channel::<String>(state.websocket.outbox_capacity.max(1));
    // A supervisor sees its teams; admins and integrations the whole workspace.
    let teams = match &principal {
        Principal::Agent(agent) if agent.role < Role::Admin => Some(agent.team_ids.clone()),
        _ => None,
    };
    let subscription = state
        .engine
        .subscribe_stats(workspace, subscriber_id, teams, outbox.clone())
        .await
        .map_err(ApiError::from)?;
    let caller = std::rc::Rc::new(principal);

    let on_frame = {
        let state = state.clone();
        move |text: &str| {
            let frame: AssignFrame = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) if value["type"] == "assign" => match serde_json::from_value(value) {
                    Ok(frame) => frame,
                    Err(problem) => {
                        return Some(
                            ServerFrame::error(
                                ErrorCode::BadRequest,
                                format!("bad `assign` frame: {problem}"),
                            )
                            .to_json(),
                        );
                    }
                },
                Ok(_) => {
                    return Some(
                        ServerFrame::error(
                            ErrorCode::BadRequest,
                            "the only client frame here is `assign`",
                        )
                        .to_json(),
                    );
                }
                Err(problem) => {
                    return Some(
                        ServerFrame::error(ErrorCode::BadRequest, format!("not JSON: {problem}"))
                            .to_json(),
                    );
                }
            };
            let (Some(conversation_id), Some(agent_id)) = (
                waos_engine::ids::ConversationId::parse(&frame.conversation_id),
                waos_engine::ids::AgentId::parse(&frame.agent_id),
            ) else {
                return Some(
                    ServerFrame::error(ErrorCode::NotFound, "no such conversation or agent")
                        .to_json(),
                );
            };
            let (state, caller, outbox) = (state.clone(), caller.clone(), outbox.clone());
            actix_web::rt::spawn(async move {
                // The same checks as the REST route: another team's conversation is not found.
                let Err(error) = crate::routes::conversations::assign_by_hand(
                    &state,
                    &caller,
                    conversation_id,
                    agent_id,
                )
                .await
                else {
                    return;
                };
                let frame = ServerFrame::Error {
                    code: error.code().as_str().into(),
                    message: error.to_string(),
                    client_id: None,
                    conversation_id: Some(conversation_id.to_string()),
                };
                let _ = outbox.try_send(frame.to_json());
            });
            None
        }
    };
    let on_close = move || subscription.unsubscribe();
    pump(
        &state,
        &request,
        body,
        frames,
        registration,
        on_frame,
        on_close,
    )
}
