//! `AgentActor`: one per agent. Its sockets (an agent may have several tabs), its presence, the
//! offers it may accept and the conversations it holds, so that every (re)connect starts with a
//! `hello` carrying the whole state. Socket pumps hand it client frames; it never blocks on them.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use crate::inbox::{ConversationView, MessageView};
use crate::routing::conversation::{
    Accept, ConversationActor, Decline, Requeue, Resolve, SendReply, TransferToAgent,
    TransferToTeam, Withdraw,
};
use crate::routing::directory::{Ask, Directory, Tell};
use crate::routing::frames::{ClientFrame, OfferView, PresenceChoice, ServerFrame};
use crate::routing::policy::Presence;
use crate::routing::reply::Reply;
use crate::routing::supervisor::{AgentPresence, ManualAssign, Supervisor};
use crate::routing::{RoutingContext, RoutingError, store};

/// A socket pump's outbox: serialized frames, bounded so a stalled browser cannot eat memory.
pub type Outbox = mpsc::Sender<String>;

/// A socket opened; the pump reads frames for it from `outbox`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub socket_id: u64,
    pub outbox: Outbox,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub socket_id: u64,
}

/// A frame from one of the agent's sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromClient {
    pub socket_id: u64,
    pub frame: ClientFrame,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Offered {
    pub offer: OfferView,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferEnded {
    pub conversation_id: ConversationId,
    pub reason: String,
}

/// The agent now holds a conversation; `messages` are its latest messages, oldest first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Assigned {
    pub view: ConversationView,
    pub reason: String,
    pub messages: Vec<MessageView>,
}

/// After a restart: a conversation the agent still holds, without any frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Held {
    pub view: ConversationView,
}

/// The agent may no longer work (deactivated, signed out, password changed): its sockets
/// close, its offers go to others and its conversations return to the queue at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SignOut {
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unassigned {
    pub conversation_id: ConversationId,
    pub reason: String,
}

/// A frame for every socket of the agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: ServerFrame,
}

/// Shutdown: the sockets close; what the agent holds stays its own (the next process gives
/// it the grace period to come back).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSockets;

/// Another node routes the agent's workspace now: the sockets close and the actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct AgentActor {
    agent_id: AgentId,
    workspace_id: WorkspaceId,
    supervisor: Addr<Supervisor>,
    directory: Addr<Directory>,
    context: Arc<RoutingContext>,
    sockets: HashMap<u64, Outbox>,
    chosen: Presence,
    /// By conversation id only: a conversation's actor may stop and be rebuilt at any time,
    /// so everything for it goes through the directory.
    offers: HashMap<ConversationId, OfferView>,
    held: HashMap<ConversationId, ConversationView>,
    grace: Option<SpawnHandle>,
    heartbeat: Option<SpawnHandle>,
}

impl AgentActor {
    pub fn new(
        agent_id: AgentId,
        workspace_id: WorkspaceId,
        supervisor: Addr<Supervisor>,
        directory: Addr<Directory>,
        context: Arc<RoutingContext>,
    ) -> Self {
        Self {
            agent_id,
            workspace_id,
            supervisor,
            directory,
            context,
            sockets: HashMap::new(),
            chosen: Presence::Online,
            offers: HashMap::new(),
            held: HashMap::new(),
            grace: None,
            heartbeat: None,
        }
    }

    /// Publishes the agent's presence to the store (fire-and-forget; routing never waits on it).
    fn publish_presence(&self, ctx: &mut Context<Self>) {
        let store = self.context.presence.clone();
        let (agent, presence, ttl) = (
            self.agent_id,
            self.presence(),
            self.context.settings.presence_ttl,
        );
        ctx.spawn(
            async move {
                let result = match presence {
                    Presence::Offline => store.clear(agent).await,
                    _ => store.set(agent, presence, ttl).await,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "presence not published");
                }
            }
            .into_actor(self),
        );
    }

    /// Refreshes the presence entry while any socket is open.
    fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeat.is_some() {
            return;
        }
        let every = self.context.settings.presence_ttl / 3;
        self.heartbeat = Some(ctx.run_interval(every, |agent, ctx| agent.publish_presence(ctx)));
    }

    fn stop_heartbeat(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.heartbeat.take() {
            ctx.cancel_future(handle);
        }
    }

    fn presence(&self) -> Presence {
        if self.sockets.is_empty() {
            Presence::Offline
        } else {
            self.chosen
        }
    }

    fn broadcast(&mut self, frame: &ServerFrame) {
        let text = frame.to_json();
        // A socket whose outbox is full or closed is dropped: its pump ends and the tab reconnects.
        self.sockets
            .retain(|_, outbox| outbox.try_send(text.clone()).is_ok());
    }

    fn send_to(&self, socket_id: u64, frame: &ServerFrame) {
        if let Some(outbox) = self.sockets.get(&socket_id) {
            let _ = outbox.try_send(frame.to_json());
        }
    }

    fn hello(&self) -> ServerFrame {
        let mut conversations: Vec<ConversationView> = self.held.values().cloned().collect();
        conversations.sort_by_key(|a| a.id);
        let mut offers: Vec<OfferView> = self.offers.values().cloned().collect();
        offers.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        ServerFrame::Hello {
            agent_id: self.agent_id.to_string(),
            presence: self.presence(),
            conversations,
            offers,
            delivery_statuses: crate::meta::DeliveryStatus::ORDER,
        }
    }

    fn start_grace(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
        }
        let grace = self.context.settings.disconnect_grace;
        self.grace = Some(ctx.run_later(grace, move |agent, _| {
            agent.grace = None;
            tracing::debug!(agent_id = %agent.agent_id, held = agent.held.len(), "grace period over: requeueing");
            let reason = format!(
                "the agent was disconnected for more than {:.1} s",
                grace.as_secs_f64()
            );
            agent.requeue_held(&reason);
        }));
    }

    /// Every conversation the agent holds goes back to the front of the queue, through the
    /// directory (the conversation's actor may have stopped since it was assigned).
    fn requeue_held(&mut self, reason: &str) {
        let held: Vec<ConversationId> = self.held.drain().map(|(id, _)| id).collect();
        for conversation_id in held {
            self.requeue(conversation_id, reason);
        }
    }

    fn requeue(&self, conversation_id: ConversationId, reason: &str) {
        self.directory.do_send(Tell {
            conversation_id,
            message: Requeue {
                agent_id: self.agent_id,
                reason: reason.to_owned(),
            },
        });
    }

    /// Offline with no grace period running: it left longer ago than the grace allows.
    fn gone(&self) -> bool {
        self.sockets.is_empty() && self.grace.is_none()
    }

    /// Asks the conversation (through the directory, which rebuilds a stopped actor from the
    /// database); the conversation itself checks that this agent may act on it.
    fn ask<M>(
        &self,
        conversation_id: &str,
        message: M,
    ) -> impl std::future::Future<Output = Result<M::Result, RoutingError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        ConversationActor: Handler<M>,
    {
        let directory = self.directory.clone();
        let id = ConversationId::parse(conversation_id);
        async move {
            let conversation_id = id.ok_or(RoutingError::NotFound("conversation"))?;
            directory
                .send(Ask {
                    conversation_id,
                    message,
                })
                .await
                .map_err(|_| RoutingError::Unavailable)?
        }
    }

    /// Sends a request to a conversation and answers the socket with an `error` frame on refusal.
    fn forward<M>(
        &self,
        socket_id: u64,
        conversation_id: String,
        message: M,
        ctx: &mut Context<Self>,
    ) where
        M: Message<Result = Result<(), RoutingError>> + Send + 'static,
        ConversationActor: Handler<M>,
    {
        let asked = self.ask(&conversation_id, message);
        ctx.spawn(
            async move { asked.await.and_then(|answer| answer) }
                .into_actor(self)
                .map(move |answer, agent, _| {
                    if let Err(error) = answer {
                        agent.refuse(socket_id, &error, error.to_string(), conversation_id);
                    }
                }),
        );
    }

    /// The `error` frame answering a frame about `conversation_id`.
    fn refuse(
        &self,
        socket_id: u64,
        error: &RoutingError,
        message: String,
        conversation_id: String,
    ) {
        self.send_to(
            socket_id,
            &ServerFrame::Error {
                code: error.code().as_str().into(),
                message,
                client_id: None,
                conversation_id: Some(conversation_id),
            },
        );
    }
}

impl AgentActor {
    /// Takes a waiting conversation of one of the agent's teams, capacity counted exactly as
    /// for an offer; answered by `assigned`, or an `error` frame (`not_found` for anything
    /// outside its teams, `over_capacity` when full).
    fn pick(&self, socket_id: u64, conversation_id: String, ctx: &mut Context<Self>) {
        let Some(id) = ConversationId::parse(&conversation_id) else {
            let message = "no waiting conversation of your teams has this id".to_owned();
            self.refuse(
                socket_id,
                &RoutingError::NotFound("conversation"),
                message,
                conversation_id,
            );
            return;
        };
        let asked = self.supervisor.send(ManualAssign {
            conversation_id: id,
            agent_id: self.agent_id,
            picked: true,
        });
        ctx.spawn(
            async move {
                asked
                    .await
                    .map_err(|_| RoutingError::Unavailable)
                    .and_then(|a| a)
            }
            .into_actor(self)
            .map(move |answer, agent, _| {
                if let Err(error) = answer {
                    agent.refuse(socket_id, &error, error.to_string(), conversation_id);
                }
            }),
        );
    }

    /// Offers cannot be accepted by nobody: they go to the next agent at once.
    fn withdraw_offers(&mut self, reason: &str) {
        let offers: Vec<ConversationId> = self.offers.drain().map(|(id, _)| id).collect();
        for conversation_id in offers {
            self.directory.do_send(Tell {
                conversation_id,
                message: Withdraw {
                    agent_id: self.agent_id,
                    reason: reason.to_owned(),
                },
            });
        }
    }

    /// Is `conversation_id` offered to or held by this agent?
    fn knows(&self, conversation_id: &str) -> bool {
        ConversationId::parse(conversation_id)
            .is_some_and(|id| self.held.contains_key(&id) || self.offers.contains_key(&id))
    }

    /// The agent opened a conversation it holds: its customer's messages are marked read.
    fn open(&self, socket_id: u64, conversation_id: String, ctx: &mut Context<Self>) {
        let held = ConversationId::parse(&conversation_id).filter(|id| self.held.contains_key(id));
        let Some(id) = held else {
            self.send_to(
                socket_id,
                &ServerFrame::Error {
                    code: RoutingError::NotAssigned.code().as_str().into(),
                    message: RoutingError::NotAssigned.to_string(),
                    client_id: None,
                    conversation_id: Some(conversation_id),
                },
            );
            return;
        };
        if !self.context.settings.mark_read_on_open {
            return;
        }
        let db = self.context.db.clone();
        ctx.spawn(
            async move {
                if let Err(error) = crate::outbound::queue_read_receipt(&db, id).await {
                    tracing::warn!(%error, conversation_id = %id, "read receipt not queued");
                }
            }
            .into_actor(self),
        );
    }

    /// Hands a reply to its conversation; answers the socket with `sent` or an `error` frame
    /// that echoes the client's id.
    fn send_reply(
        &self,
        socket_id: u64,
        conversation_id: String,
        client_id: Option<String>,
        reply: Result<Reply, String>,
        ctx: &mut Context<Self>,
    ) {
        let agent_id = self.agent_id;
        let directory = self.directory.clone();
        let id = ConversationId::parse(&conversation_id);
        ctx.spawn(
            async move {
                // A malformed reply is answered like any refusal, echoing the client's id.
                let reply = reply.map_err(RoutingError::Invalid)?;
                let conversation_id = id.ok_or(RoutingError::NotFound("conversation"))?;
                directory
                    .send(Ask {
                        conversation_id,
                        message: SendReply { agent_id, reply },
                    })
                    .await
                    .map_err(|_| RoutingError::Unavailable)??
            }
            .into_actor(self)
            .map(move |answer, agent, _| {
                let frame = match answer {
                    Ok(message) => ServerFrame::Sent {
                        client_id,
                        message_id: message.id.to_string(),
                    },
                    Err(error) => ServerFrame::Error {
                        code: error.code().as_str().into(),
                        message: error.to_string(),
                        client_id,
                        conversation_id: Some(conversation_id),
                    },
                };
                agent.send_to(socket_id, &frame);
            }),
        );
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Started without a socket (after a restart, for the conversations it holds): the grace
        // period runs from now.
        if self.sockets.is_empty() {
            self.start_grace(ctx);
        }
        tracing::debug!(agent_id = %self.agent_id, workspace_id = %self.workspace_id, "agent actor started");
    }
}

impl Handler<Connect> for AgentActor {
    type Result = ();

    fn handle(&mut self, connect: Connect, ctx: &mut Context<Self>) {
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
        }
        let was = self.presence();
        self.chosen = Presence::Online;
        self.sockets.insert(connect.socket_id, connect.outbox);
        // The database says what the agent holds (after a restart, conversation actors may not
        // have introduced themselves yet); hold the mailbox until the hello is sent.
        let db = self.context.db.clone();
        let agent_id = self.agent_id;
        let socket_id = connect.socket_id;
        ctx.wait(
            async move { store::held_by(&db, agent_id).await }
                .into_actor(self)
                .map(move |held, agent, _| {
                    // What the database says it holds is held, whether or not the
                    // conversation's actor has introduced itself yet; what the actor was told
                    // and the database has not stored yet (an assignment whose write is still
                    // under way) is held too: the hello is the union.
                    if let Ok(held) = held {
                        for view in held {
                            agent.held.entry(view.id).or_insert(view);
                        }
                    }
                    let hello = agent.hello();
                    agent.send_to(socket_id, &hello);
                }),
        );
        self.publish_presence(ctx);
        self.start_heartbeat(ctx);
        if was != Presence::Online {
            self.supervisor.do_send(AgentPresence {
                agent_id: self.agent_id,
                presence: Presence::Online,
            });
        }
    }
}

impl Handler<Disconnect> for AgentActor {
    type Result = ();

    fn handle(&mut self, disconnect: Disconnect, ctx: &mut Context<Self>) {
        self.sockets.remove(&disconnect.socket_id);
        if !self.sockets.is_empty() {
            return;
        }
        self.supervisor.do_send(AgentPresence {
            agent_id: self.agent_id,
            presence: Presence::Offline,
        });
        self.stop_heartbeat(ctx);
        self.publish_presence(ctx);
        // Offers cannot be accepted by nobody: they go to the next agent at once.
        self.withdraw_offers("the agent disconnected");
        self.start_grace(ctx);
    }
}

impl Handler<FromClient> for AgentActor {
    type Result = ();

    fn handle(&mut self, message: FromClient, ctx: &mut Context<Self>) {
        let socket = message.socket_id;
        let agent_id = self.agent_id;
        // A frame reaches only a conversation this agent is offered or holds; anything else
        // is answered here, the same for another agent's, another workspace's or none, so that
        // a socket cannot tell which ids exist.
        if let Some((conversation_id, client_id)) = message.frame.conversation()
            && !self.knows(conversation_id)
        {
            let frame = ServerFrame::Error {
                code: RoutingError::NotFound("conversation")
                    .code()
                    .as_str()
                    .into(),
                message: "no conversation of yours has this id (offered or held)".into(),
                client_id: client_id.map(str::to_owned),
                conversation_id: Some(conversation_id.to_owned()),
            };
            self.send_to(socket, &frame);
            return;
        }
        match message.frame {
            ClientFrame::Accept(target) => {
                self.forward(socket, target.conversation_id, Accept { agent_id }, ctx)
            }
            ClientFrame::Decline(target) => {
                self.forward(socket, target.conversation_id, Decline { agent_id }, ctx)
            }
            ClientFrame::Resolve(target) => self.forward(
                socket,
                target.conversation_id,
                Resolve {
                    agent_id: Some(agent_id),
                },
                ctx,
            ),
            ClientFrame::Transfer(target) => {
                match (
                    target.to_agent_id.as_deref().map(AgentId::parse),
                    target.to_team_id.as_deref().map(TeamId::parse),
                ) {
                    (Some(Some(to)), None) => self.forward(
                        socket,
                        target.conversation_id,
                        TransferToAgent {
                            by: Some(agent_id),
                            to,
                        },
                        ctx,
                    ),
                    (None, Some(Some(team_id))) => self.forward(
                        socket,
                        target.conversation_id,
                        TransferToTeam {
                            by: Some(agent_id),
                            team_id,
                        },
                        ctx,
                    ),
                    _ => self.send_to(
                        socket,
                        &ServerFrame::error(
                            crate::error::ErrorCode::ValidationFailed,
                            "a transfer names one valid `to_agent_id` or `to_team_id`",
                        ),
                    ),
                }
            }
            ClientFrame::Presence(choice) => {
                let presence = match choice.status {
                    PresenceChoice::Online => Presence::Online,
                    PresenceChoice::Away => Presence::Away,
                };
                self.chosen = presence;
                self.supervisor
                    .do_send(AgentPresence { agent_id, presence });
                self.broadcast(&ServerFrame::Presence { status: presence });
            }
            ClientFrame::Open(opened) => self.open(socket, opened.conversation_id, ctx),
            ClientFrame::Pick(target) => self.pick(socket, target.conversation_id, ctx),
            ClientFrame::Send {
                conversation_id,
                client_id,
                text,
            } => self.send_reply(
                socket,
                conversation_id,
                client_id,
                Ok(Reply::Text(text)),
                ctx,
            ),
            ClientFrame::SendMedia {
                conversation_id,
                client_id,
                media,
            } => {
                let reply = crate::outbound::MediaRequest::parse(media).map(Reply::Media);
                self.send_reply(socket, conversation_id, client_id, reply, ctx);
            }
            ClientFrame::SendTemplate {
                conversation_id,
                client_id,
                template,
            } => {
                let reply = crate::templates::TemplateRequest::parse(template).map(Reply::Template);
                self.send_reply(socket, conversation_id, client_id, reply, ctx);
            }
        }
    }
}

impl Handler<Offered> for AgentActor {
    type Result = ();

    fn handle(&mut self, offered: Offered, _: &mut Context<Self>) {
        let frame = ServerFrame::Offer(offered.offer.clone());
        if let Some(id) = ConversationId::parse(&offered.offer.conversation_id) {
            self.offers.insert(id, offered.offer);
        }
        self.broadcast(&frame);
    }
}

impl Handler<OfferEnded> for AgentActor {
    type Result = ();

    fn handle(&mut self, ended: OfferEnded, _: &mut Context<Self>) {
        self.offers.remove(&ended.conversation_id);
        self.broadcast(&ServerFrame::OfferWithdrawn {
            conversation_id: ended.conversation_id.to_string(),
            reason: ended.reason,
        });
    }
}

impl Handler<Assigned> for AgentActor {
    type Result = ();

    fn handle(&mut self, assigned: Assigned, _: &mut Context<Self>) {
        let id = assigned.view.id;
        self.offers.remove(&id);
        self.broadcast(&ServerFrame::Assigned {
            conversation_id: id.to_string(),
            reason: assigned.reason,
            conversation: assigned.view.clone(),
        });
        for message in assigned.messages {
            self.broadcast(&ServerFrame::Message {
                conversation_id: id.to_string(),
                message,
            });
        }
        self.held.insert(id, assigned.view);
    }
}

impl Handler<Held> for AgentActor {
    type Result = ();

    fn handle(&mut self, held: Held, _: &mut Context<Self>) {
        let id = held.view.id;
        // A conversation rebuilt after this agent's grace period ran out (its actor had
        // stopped while the agent was away): it goes back to the queue now.
        if self.gone() {
            self.requeue(
                id,
                "its agent was disconnected for longer than the grace period",
            );
            return;
        }
        self.held.insert(id, held.view);
    }
}

impl Handler<Unassigned> for AgentActor {
    type Result = ();

    fn handle(&mut self, unassigned: Unassigned, _: &mut Context<Self>) {
        self.held.remove(&unassigned.conversation_id);
        self.broadcast(&ServerFrame::Unassigned {
            conversation_id: unassigned.conversation_id.to_string(),
            reason: unassigned.reason,
        });
    }
}

impl Handler<Deliver> for AgentActor {
    type Result = ();

    fn handle(&mut self, deliver: Deliver, _: &mut Context<Self>) {
        self.broadcast(&deliver.frame);
    }
}

impl Handler<SignOut> for AgentActor {
    type Result = ();

    fn handle(&mut self, sign_out: SignOut, ctx: &mut Context<Self>) {
        // Dropping the outboxes ends each socket's pump, which closes it with a close frame.
        let had_sockets = !self.sockets.is_empty();
        self.sockets.clear();
        if let Some(handle) = self.grace.take() {
            ctx.cancel_future(handle);
        }
        self.stop_heartbeat(ctx);
        self.publish_presence(ctx);
        if had_sockets {
            self.supervisor.do_send(AgentPresence {
                agent_id: self.agent_id,
                presence: Presence::Offline,
            });
        }
        self.withdraw_offers(&sign_out.reason);
        self.requeue_held(&sign_out.reason);
        // What the database says it holds too: conversations whose actors are not running
        // have not introduced themselves to this actor.
        let db = self.context.db.clone();
        let agent_id = self.agent_id;
        ctx.spawn(
            async move { store::held_by(&db, agent_id).await }
                .into_actor(self)
                .map(move |held, agent, _| match held {
                    Ok(held) => {
                        for view in held {
                            agent.requeue(view.id, &sign_out.reason);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, %agent_id, "conversations of a signed-out agent not requeued")
                    }
                }),
        );
    }
}

impl Handler<Retire> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.sockets.clear();
        ctx.stop();
    }
}

impl Handler<CloseSockets> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: CloseSockets, ctx: &mut Context<Self>) {
        // Dropping the outboxes ends each pump, which closes its socket with a close frame.
        self.sockets.clear();
        self.stop_heartbeat(ctx);
    }
}
