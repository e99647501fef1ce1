//! `GET /ws/agent`: the agent's live socket. A thin pump: socket in, outbox out, heartbeat;
//! every decision is the `AgentActor`'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio::sync::mpsc;
use waos_engine::auth::{self, AgentPrincipal};
use waos_engine::routing::agent::{Connect, Disconnect, FromClient};
use waos_engine::routing::directory::GetAgentActor;
use waos_engine::routing::frames::{ServerFrame, parse_client_frame};

use crate::error::ApiError;
use crate::extract::bearer;
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

/// Checks the origin, then the credentials: a bearer token (API clients) or a single-use
/// ticket (browsers, which cannot set headers on a websocket).
async fn authenticate_socket(
    state: &AppState,
    request: &HttpRequest,
    ticket: Option<&str>,
) -> Result<AgentPrincipal, ApiError> {
    if !same_origin(request) {
        return Err(ApiError::Forbidden("cross-origin websocket refused".into()));
    }
    authenticate(state, request, ticket).await
}

async fn authenticate(
    state: &AppState,
    request: &HttpRequest,
    ticket: Option<&str>,
) -> Result<AgentPrincipal, ApiError> {
    let principal = match (bearer(request), ticket) {
        (Some(token), _) => auth::authenticate(&state.db, &token).await?,
        (None, Some(ticket)) => auth::redeem_ticket(&state.db, ticket).await?,
        (None, None) => None,
    };
    principal.ok_or_else(|| {
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
    let principal = authenticate_socket(&state, &request, query.ticket.as_deref()).await?;
    let agent = state
        .directory
        .send(GetAgentActor {
            workspace_id: principal.workspace_id,
            agent_id: principal.agent_id,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the routing engine is not running".into()))?
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound("agent".into()))?;

    let socket_id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let (outbox, frames) = mpsc::channel::<String>(state.websocket.outbox_capacity.max(1));
    agent.do_send(Connect { socket_id, outbox });
    let on_frame = {
        let agent = agent.clone();
        move |text: &str| match parse_client_frame(text) {
            Ok(frame) => {
                agent.do_send(FromClient { socket_id, frame });
                None
            }
            Err(problem) => Some(ServerFrame::error("bad_request", problem).to_json()),
        }
    };
    let on_close = move || agent.do_send(Disconnect { socket_id });
    pump(&state, &request, body, frames, on_frame, on_close)
}

/// The socket loop shared by agents and supervisors: text frames in to `on_frame` (which may
/// answer with an error frame), the outbox out, pings on a timer; `on_close` when it ends.
fn pump(
    state: &AppState,
    request: &HttpRequest,
    body: web::Payload,
    mut frames: mpsc::Receiver<String>,
    on_frame: impl Fn(&str) -> Option<String> + 'static,
    on_close: impl FnOnce() + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, stream) = actix_ws::handle(request, body)?;
    let mut stream = stream.max_frame_size(64 * 1024).aggregate_continuations();
    let heartbeat = std::time::Duration::from_millis(state.websocket.heartbeat_interval_ms.max(10));
    let client_timeout =
        std::time::Duration::from_millis(state.websocket.client_timeout_ms.max(10));

    actix_web::rt::spawn(async move {
        let mut ticker = tokio::time::interval(heartbeat);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                incoming = stream.recv() => {
                    let Some(Ok(message)) = incoming else { break };
                    last_heard = Instant::now();
                    let answer = match message {
                        actix_ws::AggregatedMessage::Text(text) => on_frame(&text),
                        actix_ws::AggregatedMessage::Binary(_) => {
                            Some(ServerFrame::error("bad_request", "frames are JSON text").to_json())
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
                    // `None`: the actor dropped this socket (too slow, or it stopped).
                    let Some(text) = outgoing else { break };
                    if session.text(text).await.is_err() { break }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > client_timeout { break }
                    if session.ping(b"").await.is_err() { break }
                }
            }
        }
        on_close();
        let _ = session.close(None).await;
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
    use waos_engine::routing::directory::GetSupervisor;
    use waos_engine::routing::supervisor::{ManualAssign, Subscribe, Unsubscribe};

    let principal = authenticate_socket(&state, &request, query.ticket.as_deref()).await?;
    if principal.role < Role::Supervisor {
        return Err(ApiError::Forbidden("the queue dashboard is for supervisors".into()).into());
    }
    let supervisor = state
        .directory
        .send(GetSupervisor {
            workspace_id: principal.workspace_id,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the routing engine is not running".into()))?;
    let subscriber_id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let (outbox, frames) = mpsc::channel::<String>(state.websocket.outbox_capacity.max(1));
    let teams = (principal.role < Role::Admin).then(|| principal.team_ids.clone());
    supervisor.do_send(Subscribe {
        subscriber_id,
        outbox: outbox.clone(),
        teams: teams.clone(),
    });

    let on_frame = {
        let supervisor = supervisor.clone();
        move |text: &str| {
            let frame: AssignFrame = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) if value["type"] == "assign" => match serde_json::from_value(value) {
                    Ok(frame) => frame,
                    Err(problem) => {
                        return Some(
                            ServerFrame::error(
                                "bad_request",
                                format!("bad `assign` frame: {problem}"),
                            )
                            .to_json(),
                        );
                    }
                },
                Ok(_) => {
                    return Some(
                        ServerFrame::error("bad_request", "the only client frame here is `assign`")
                            .to_json(),
                    );
                }
                Err(problem) => {
                    return Some(
                        ServerFrame::error("bad_request", format!("not JSON: {problem}")).to_json(),
                    );
                }
            };
            let (Some(conversation_id), Some(agent_id)) = (
                waos_engine::ids::ConversationId::parse(&frame.conversation_id),
                waos_engine::ids::AgentId::parse(&frame.agent_id),
            ) else {
                return Some(
                    ServerFrame::error("not_found", "no such conversation or agent").to_json(),
                );
            };
            let (supervisor, outbox) = (supervisor.clone(), outbox.clone());
            actix_web::rt::spawn(async move {
                let answer = supervisor
                    .send(ManualAssign {
                        conversation_id,
                        agent_id,
                    })
                    .await;
                let error = match answer {
                    Ok(Ok(())) => return,
                    Ok(Err(waos_engine::routing::RoutingError::OverCapacity)) => {
                        ("over_capacity", "the agent has no free capacity".to_owned())
                    }
                    Ok(Err(other)) => ("conflict", other.to_string()),
                    Err(_) => (
                        "unavailable",
                        "the routing engine is not running".to_owned(),
                    ),
                };
                let frame = ServerFrame::Error {
                    code: error.0.into(),
                    message: error.1,
                    client_id: None,
                    conversation_id: Some(conversation_id.to_string()),
                };
                let _ = outbox.try_send(frame.to_json());
            });
            None
        }
    };
    let on_close = move || supervisor.do_send(Unsubscribe { subscriber_id });
    pump(&state, &request, body, frames, on_frame, on_close)
}
