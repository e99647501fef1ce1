//! `Engine`: the one door into routing for the rest of the process. The web layer asks it to
//! assign, reply, connect an agent's socket or subscribe a dashboard; it never sees an actor or
//! an actix message, and a stopped actor or a closed mailbox reaches it as a [`RoutingError`].

use std::sync::Arc;

use actix::prelude::*;

use crate::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use crate::inbox::MessageView;
use crate::ingest::{InboundEvent, InboundHandoff, StatusEvent};
use crate::routing::agent::{AgentActor, Connect, Disconnect, FromClient, Outbox, SignOut};
use crate::routing::conversation::SendReply;
use crate::routing::directory::{
    Ask, CloseSockets, Directory, Drain, GetAgentActor, GetSupervisor, Inbound, SettingsChanged,
    StatusChanged, TagsReplaced,
};
use crate::routing::frames::ClientFrame;
use crate::routing::reply::Reply;
use crate::routing::supervisor::{ManualAssign, ReloadAgent, Subscribe, Supervisor, Unsubscribe};
use crate::routing::{RoutingContext, RoutingError};

/// The routing engine as the rest of the process sees it. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    directory: Addr<Directory>,
    times: Arc<crate::time::settings::TeamTimes>,
    automations: Arc<crate::automation::settings::Automations>,
}

/// A closed mailbox: the engine's thread is gone.
fn unavailable<E>(_: E) -> RoutingError {
    RoutingError::Unavailable
}

impl Engine {
    /// Starts the directory (and, through it, every actor) on a thread and actix system of
    /// its own, which lives as long as the process: actors are never torn down mid-query.
    /// Call once per process, before the HTTP server starts its workers.
    pub fn start(context: Arc<RoutingContext>) -> Result<Engine, crate::EngineError> {
        let times = context.times.clone();
        let automations = context.automations.clone();
        let (started, directory) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("waos-engine".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let _ = started.send(Directory::new(context).start());
                });
                let _ = system.run();
            })
            .map_err(|error| {
                crate::EngineError::Internal(format!("starting the engine thread: {error}"))
            })?;
        let directory = directory
            .recv()
            .map_err(|_| crate::EngineError::Internal("the engine thread did not start".into()))?;
        Ok(Engine {
            directory,
            times,
            automations,
        })
    }

    /// A team, calendar or SLA policy changed: every conversation reads its team's settings
    /// again (a waiting one queues under the new hours; a cycle keeps the deadlines it has).
    pub fn time_settings_changed(&self) {
        self.times.forget();
        self.directory.do_send(SettingsChanged);
    }

    /// An automation rule was created, changed or deleted: every conversation reads its
    /// workspace's rules again (and re-arms its timer rules).
    pub fn automations_changed(&self) {
        self.automations.forget();
        self.directory.do_send(SettingsChanged);
    }

    /// A conversation's tags were replaced through the API (after the write): its running actor
    /// takes them, so that its rules' conditions on `conversation.tags` see them.
    pub fn tags_replaced(&self, conversation_id: ConversationId, tags: Vec<String>) {
        self.directory.do_send(TagsReplaced {
            conversation_id,
            tags,
        });
    }

    /// Where ingest hands committed messages and statuses (fire-and-forget).
    pub fn handoff(&self) -> Arc<dyn InboundHandoff> {
        Arc::new(EngineHandoff {
            directory: self.directory.clone(),
        })
    }

    /// The actor of an active agent (started on first use); `None` when there is none.
    async fn agent_actor(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
    ) -> Result<Option<Addr<AgentActor>>, RoutingError> {
        self.directory
            .send(GetAgentActor {
                workspace_id,
                agent_id,
            })
            .await
            .map_err(unavailable)?
    }

    async fn supervisor(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Addr<Supervisor>, RoutingError> {
        self.directory
            .send(GetSupervisor { workspace_id })
            .await
            .map_err(unavailable)
    }

    /// A supervisor's manual assignment of a waiting conversation (the caller has checked that
    /// the conversation is one it may see).
    pub async fn assign(
        &self,
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        self.supervisor(workspace_id)
            .await?
            .send(ManualAssign {
                conversation_id,
                agent_id,
                picked: false,
            })
            .await
            .map_err(unavailable)?
    }

    /// An agent's reply, with the conversation's rules (holder, window, consent).
    pub async fn reply(
        &self,
        conversation_id: ConversationId,
        agent_id: AgentId,
        reply: Reply,
    ) -> Result<MessageView, RoutingError> {
        self.directory
            .send(Ask {
                conversation_id,
                message: SendReply { agent_id, reply },
            })
            .await
            .map_err(unavailable)??
    }

    /// Opens one socket of an agent: its frames go to `outbox` (a `hello` first). `NotFound`
    /// when there is no such active agent.
    pub async fn connect_agent(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
        socket_id: u64,
        outbox: Outbox,
    ) -> Result<AgentSocket, RoutingError> {
        let agent = self
            .agent_actor(workspace_id, agent_id)
            .await?
            .ok_or(RoutingError::NotFound("agent"))?;
        agent.do_send(Connect { socket_id, outbox });
        Ok(AgentSocket { agent, socket_id })
    }

    /// A dashboard's stats: a snapshot into `outbox` now, then coalesced deltas. `teams`
    /// limits what it sees (`None`: the whole workspace).
    pub async fn subscribe_stats(
        &self,
        workspace_id: WorkspaceId,
        subscriber_id: u64,
        teams: Option<Vec<TeamId>>,
        outbox: tokio::sync::mpsc::Sender<String>,
    ) -> Result<StatsSubscription, RoutingError> {
        let supervisor = self.supervisor(workspace_id).await?;
        supervisor.do_send(Subscribe {
            subscriber_id,
            outbox,
            teams,
        });
        Ok(StatsSubscription {
            supervisor,
            subscriber_id,
        })
    }

    /// An agent's settings changed (capacity, teams, skills, deactivation): routing reloads it.
    pub async fn agent_changed(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        self.supervisor(workspace_id)
            .await?
            .do_send(ReloadAgent { agent_id });
        Ok(())
    }

    /// The agent may no longer work under its old credentials (password changed, signed out
    /// everywhere): its sockets close and its conversations return to the queue.
    pub async fn sign_out_agent(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
        reason: &str,
    ) -> Result<(), RoutingError> {
        if let Some(agent) = self.agent_actor(workspace_id, agent_id).await? {
            agent.do_send(SignOut {
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }
}

/// Shutdown, in the order `waos serve` calls them.
impl Engine {
    /// Every agent's and dashboard's socket closes (with a close frame, from its pump), so
    /// consoles reconnect to whichever process serves next; what agents hold stays theirs (the
    /// next process gives them the grace period).
    pub async fn close_sockets(&self) {
        if self.directory.send(CloseSockets).await.is_err() {
            tracing::warn!("the routing engine had already stopped");
        }
    }

    /// Once nothing new comes in: every running conversation has handled what it was sent
    /// (and stored its state), then every audit event recorded so far is written.
    pub async fn drain(&self) {
        if self.directory.send(Drain).await.is_err() {
            tracing::warn!("the routing engine had already stopped");
        }
    }
}

/// One open socket of an agent, as its pump holds it.
pub struct AgentSocket {
    agent: Addr<AgentActor>,
    socket_id: u64,
}

impl AgentSocket {
    /// A frame the agent sent on this socket.
    pub fn frame(&self, frame: ClientFrame) {
        self.agent.do_send(FromClient {
            socket_id: self.socket_id,
            frame,
        });
    }

    /// The socket closed.
    pub fn disconnect(&self) {
        self.agent.do_send(Disconnect {
            socket_id: self.socket_id,
        });
    }
}

/// One dashboard's subscription to a workspace's stats.
pub struct StatsSubscription {
    supervisor: Addr<Supervisor>,
    subscriber_id: u64,
}

impl StatsSubscription {
    pub fn unsubscribe(&self) {
        self.supervisor.do_send(Unsubscribe {
            subscriber_id: self.subscriber_id,
        });
    }
}

/// Hands committed inbound messages to the directory, fire-and-forget.
struct EngineHandoff {
    directory: Addr<Directory>,
}

impl InboundHandoff for EngineHandoff {
    fn inbound(&self, event: InboundEvent) {
        self.directory.do_send(Inbound(event));
    }

    fn status(&self, event: StatusEvent) {
        self.directory.do_send(StatusChanged(event));
    }
}
