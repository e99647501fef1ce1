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

/// Bearer token (API clients) or single-use ticket (browsers).
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
    if !same_origin(&request) {
        return Err(ApiError::Forbidden("cross-origin websocket refused".into()).into());
    }
    let principal = authenticate(&state, &request, query.ticket.as_deref()).await?;
    let agent = state
        .directory
        .send(GetAgentActor {
            workspace_id: principal.workspace_id,
            agent_id: principal.agent_id,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the routing engine is not running".into()))?
        .ok_or_else(|| ApiError::NotFound("agent".into()))?;

    let (response, mut session, stream) = actix_ws::handle(&request, body)?;
    let mut stream = stream.max_frame_size(64 * 1024).aggregate_continuations();
    let socket_id = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut frames) = mpsc::channel::<String>(state.websocket.outbox_capacity.max(1));
    agent.do_send(Connect { socket_id, outbox });
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
                    match message {
                        actix_ws::AggregatedMessage::Text(text) => match parse_client_frame(&text) {
                            Ok(frame) => agent.do_send(FromClient { socket_id, frame }),
                            Err(problem) => {
                                let frame = ServerFrame::error("bad_request", problem).to_json();
                                if session.text(frame).await.is_err() { break }
                            }
                        },
                        actix_ws::AggregatedMessage::Binary(_) => {
                            let frame = ServerFrame::error("bad_request", "frames are JSON text").to_json();
                            if session.text(frame).await.is_err() { break }
                        }
                        actix_ws::AggregatedMessage::Ping(bytes) => {
                            if session.pong(&bytes).await.is_err() { break }
                        }
                        actix_ws::AggregatedMessage::Pong(_) => {}
                        actix_ws::AggregatedMessage::Close(_) => break,
                    }
                }
                outgoing = frames.recv() => {
                    // `None`: the agent actor dropped this socket (too slow, or it stopped).
                    let Some(text) = outgoing else { break };
                    if session.text(text).await.is_err() { break }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > client_timeout { break }
                    if session.ping(b"").await.is_err() { break }
                }
            }
        }
        agent.do_send(Disconnect { socket_id });
        let _ = session.close(None).await;
    });
    Ok(response)
}
