//! `Engine`: the one door into routing for the rest of the process. The web layer asks it to
//! assign, reply, connect an agent's socket or subscribe a dashboard; it never sees an actor or
//! an actix message, and a stopped actor or a closed mailbox reaches it as a [`RoutingError`].
//!
//! On a node of a cluster, a call about a workspace another node routes goes to that node
//! over the bus ([`crate::cluster::bus`]); callers cannot tell the difference.

use std::sync::Arc;

use actix::prelude::*;

use crate::auth::AccessEnded;
use crate::cluster::bus::{Bus, Event};
use crate::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use crate::inbox::MessageView;
use crate::ingest::{InboundEvent, InboundHandoff, StatusEvent};
use crate::routing::agent::{AgentActor, Connect, Disconnect, FromClient, Outbox, SignOut};
use crate::routing::conversation::SendReply;
use crate::routing::directory::{
    Ask, CloseSockets, Directory, Drain, GetAgentActor, GetSupervisor, Inbound, Recover,
    SettingsChanged, StartRouting, StatusChanged, StopRouting, TagsReplaced,
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
    /// On a node of a cluster: the way to the other nodes.
    bus: Option<Arc<Bus>>,
}

/// A closed mailbox: the engine's thread is gone.
fn unavailable<E>(_: E) -> RoutingError {
    RoutingError::Unavailable
}

impl Engine {
    /// Starts the directory (and, through it, every actor) on a thread and actix system of
    /// its own, which lives as long as the process: actors are never torn down mid-query.
    /// Call once per process, before the HTTP server starts its workers. On a node of a
    /// cluster (`node`), routing follows the node's leases and its bus runs on the caller's
    /// runtime.
    pub fn start(
        context: Arc<RoutingContext>,
        node: Option<&crate::cluster::Node>,
    ) -> Result<Engine, crate::EngineError> {
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
        let mut engine = Engine {
            directory,
            times,
            automations,
            bus: None,
        };
        if let Some(node) = node
            && let Some(changes) = node.take_changes()
        {
            let (bus, queues) = Bus::new(node);
            engine.bus = Some(bus.clone());
            tokio::spawn(crate::cluster::bus::run(
                bus,
                engine.clone(),
                queues,
                changes,
            ));
        }
        Ok(engine)
    }

    /// The bus to the owner of `workspace_id`, when another node routes it.
    fn remote(&self, workspace_id: WorkspaceId) -> Option<&Arc<Bus>> {
        self.bus.as_ref().filter(|bus| !bus.holds(workspace_id))
    }

    /// The cluster bus's counters (`None` on a single node).
    pub fn bus_metrics(&self) -> Option<&crate::cluster::bus::BusMetrics> {
        self.bus.as_ref().map(|bus| &bus.metrics)
    }

    /// A team, calendar or SLA policy changed: every conversation reads its team's settings
    /// again (a waiting one queues under the new hours; a cycle keeps the deadlines it has),
    /// on every node.
    pub fn time_settings_changed(&self) {
        self.time_settings_changed_here();
        if let Some(bus) = &self.bus {
            bus.broadcast_time_settings();
        }
    }

    pub(crate) fn time_settings_changed_here(&self) {
        self.times.forget();
        self.directory.do_send(SettingsChanged);
    }

    /// An automation rule was created, changed or deleted: every conversation reads its
    /// workspace's rules again (and re-arms its timer rules), on every node.
    pub fn automations_changed(&self) {
        self.automations_changed_here();
        if let Some(bus) = &self.bus {
            bus.broadcast_automations();
        }
    }

    pub(crate) fn automations_changed_here(&self) {
        self.automations.forget();
        self.directory.do_send(SettingsChanged);
    }

    /// A conversation's tags were replaced through the API (after the write): its running actor
    /// takes them, so that its rules' conditions on `conversation.tags` see them.
    pub fn tags_replaced(&self, conversation_id: ConversationId, tags: Vec<String>) {
        if let Some(bus) = &self.bus {
            bus.broadcast_tags(conversation_id, tags.clone());
        }
        self.tags_replaced_here(conversation_id, tags);
    }

    pub(crate) fn tags_replaced_here(&self, conversation_id: ConversationId, tags: Vec<String>) {
        self.directory.do_send(TagsReplaced {
            conversation_id,
            tags,
        });
    }

    /// Someone's access ended here (the caller closed its sockets on this node): the other
    /// nodes close theirs.
    pub fn access_ended(&self, ended: AccessEnded) {
        if let Some(bus) = &self.bus {
            bus.broadcast_access_ended(ended);
        }
    }

    /// Accesses ended on other nodes, whose sockets on this node must close; `None` on a single
    /// node, or once taken.
    pub fn access_endings(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<AccessEnded>> {
        self.bus.as_ref().and_then(|bus| bus.access_endings())
    }

    /// Where ingest hands committed messages and statuses (fire-and-forget).
    pub fn handoff(&self) -> Arc<dyn InboundHandoff> {
        Arc::new(EngineHandoff {
            engine: self.clone(),
        })
    }

    /// A committed event, for the directory here (this node routes its workspace).
    pub(crate) fn route(&self, event: Event) {
        match event {
            Event::Inbound(event) => self.directory.do_send(Inbound(event)),
            Event::Status(event) => self.directory.do_send(StatusChanged(event)),
            Event::Recover {
                workspace_id,
                conversation_id,
            } => self.directory.do_send(Recover {
                workspace_id,
                conversation_id,
            }),
        }
    }

    /// This node took the workspace's lease under `epoch`: it routes it from now on.
    pub(crate) fn start_routing(&self, workspace_id: WorkspaceId, epoch: u64) {
        self.directory.do_send(StartRouting {
            workspace_id,
            epoch,
        });
    }

    /// This node no longer holds the workspace's lease; answers the conversations it ran.
    pub(crate) async fn stop_routing(&self, workspace_id: WorkspaceId) -> Vec<ConversationId> {
        self.directory
            .send(StopRouting { workspace_id })
            .await
            .unwrap_or_default()
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
            .map_err(unavailable)?
    }

    /// A supervisor's manual assignment of a waiting conversation (the caller has checked that
    /// the conversation is one it may see).
    pub async fn assign(
        &self,
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        if let Some(bus) = self.remote(workspace_id) {
            return bus.assign(workspace_id, conversation_id, agent_id).await;
        }
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
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
        agent_id: AgentId,
        reply: Reply,
    ) -> Result<MessageView, RoutingError> {
        if let Some(bus) = self.remote(workspace_id) {
            return bus
                .reply(workspace_id, conversation_id, agent_id, reply)
                .await;
        }
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
        if let Some(bus) = self.remote(workspace_id) {
            bus.connect_agent(workspace_id, agent_id, socket_id, outbox)
                .await?;
            return Ok(AgentSocket(End::There {
                bus: bus.clone(),
                workspace_id,
                socket_id,
            }));
        }
        let agent = self
            .agent_actor(workspace_id, agent_id)
            .await?
            .ok_or(RoutingError::NotFound("agent"))?;
        agent.do_send(Connect { socket_id, outbox });
        Ok(AgentSocket(End::Here {
            actor: agent,
            socket_id,
        }))
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
        if let Some(bus) = self.remote(workspace_id) {
            bus.subscribe_stats(workspace_id, subscriber_id, teams, outbox)
                .await?;
            return Ok(StatsSubscription(End::There {
                bus: bus.clone(),
                workspace_id,
                socket_id: subscriber_id,
            }));
        }
        let supervisor = self.supervisor(workspace_id).await?;
        supervisor.do_send(Subscribe {
            subscriber_id,
            outbox,
            teams,
        });
        Ok(StatsSubscription(End::Here {
            actor: supervisor,
            socket_id: subscriber_id,
        }))
    }

    /// An agent's settings changed (capacity, teams, skills, deactivation): routing reloads it.
    pub async fn agent_changed(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        if let Some(bus) = self.remote(workspace_id) {
            return bus.agent_changed(workspace_id, agent_id).await;
        }
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
        if let Some(bus) = self.remote(workspace_id) {
            return bus.sign_out_agent(workspace_id, agent_id, reason).await;
        }
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
        if let Some(bus) = &self.bus {
            bus.close_sockets();
        }
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

/// Where a socket's other end is: an actor here, or the owner across the bus.
enum End<A: Actor> {
    Here {
        actor: Addr<A>,
        socket_id: u64,
    },
    There {
        bus: Arc<Bus>,
        workspace_id: WorkspaceId,
        socket_id: u64,
    },
}

/// One open socket of an agent, as its pump holds it.
pub struct AgentSocket(End<AgentActor>);

impl AgentSocket {
    /// A frame the agent sent on this socket.
    pub fn frame(&self, frame: ClientFrame) {
        match &self.0 {
            End::Here { actor, socket_id } => actor.do_send(FromClient {
                socket_id: *socket_id,
                frame,
            }),
            End::There {
                bus,
                workspace_id,
                socket_id,
            } => bus.frame(*workspace_id, *socket_id, frame),
        }
    }

    /// The socket closed.
    pub fn disconnect(&self) {
        match &self.0 {
            End::Here { actor, socket_id } => actor.do_send(Disconnect {
                socket_id: *socket_id,
            }),
            End::There {
                bus,
                workspace_id,
                socket_id,
            } => bus.closed(*workspace_id, *socket_id),
        }
    }
}

/// One dashboard's subscription to a workspace's stats.
pub struct StatsSubscription(End<Supervisor>);

impl StatsSubscription {
    pub fn unsubscribe(&self) {
        match &self.0 {
            End::Here { actor, socket_id } => actor.do_send(Unsubscribe {
                subscriber_id: *socket_id,
            }),
            End::There {
                bus,
                workspace_id,
                socket_id,
            } => bus.closed(*workspace_id, *socket_id),
        }
    }
}

/// Hands committed events to the directory (fire-and-forget), or, for a workspace another
/// node routes, to the bus.
struct EngineHandoff {
    engine: Engine,
}

impl EngineHandoff {
    fn hand(&self, workspace_id: WorkspaceId, event: Event) {
        match &self.engine.bus {
            // Another node routes it, or this one took it over while events for it were still
            // on their way there: this one follows them.
            Some(bus) if !bus.holds(workspace_id) || bus.handing_over(workspace_id) => {
                bus.hand_over(event)
            }
            _ => self.engine.route(event),
        }
    }
}

impl InboundHandoff for EngineHandoff {
    fn inbound(&self, event: InboundEvent) {
        self.hand(event.workspace_id, Event::Inbound(event));
    }

    fn status(&self, event: StatusEvent) {
        self.hand(event.workspace_id, Event::Status(event));
    }
}
