//! `Directory`: finds the actor of a conversation (starting it from the database when needed)
//! and the supervisor of a workspace. The one place that knows where actors are, so that a
//! later multi-node version can replace it without touching the actors.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::ids::{AgentId, ConversationId, WorkspaceId};
use crate::ingest::{InboundEvent, InboundHandoff};
use crate::routing::agent::AgentActor;
use crate::routing::conversation::{ConversationActor, NewMessage};
use crate::routing::supervisor::{GetAgent, Supervisor};
use crate::routing::{RoutingContext, store};

/// Conversations loaded from the database at the same time, at most.
const MAX_CONCURRENT_LOADS: usize = 4;

/// A newly stored inbound message, after its commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound(pub InboundEvent);

/// A status moved one of our messages forward, after its commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StatusChanged(pub crate::ingest::StatusEvent);

#[derive(Message)]
#[rtype(result = "()")]
pub struct ConversationStopped {
    pub conversation_id: ConversationId,
}

#[derive(Message)]
#[rtype(result = "Addr<Supervisor>")]
pub struct GetSupervisor {
    pub workspace_id: WorkspaceId,
}

/// The actor of an open conversation, started from the database if it is not running.
#[derive(Message)]
#[rtype(result = "Option<Addr<ConversationActor>>")]
pub struct GetConversation {
    pub conversation_id: ConversationId,
}

/// The actor of an agent (for its sockets); `Ok(None)` when there is no such active agent.
#[derive(Message)]
#[rtype(result = "Result<Option<Addr<AgentActor>>, crate::routing::RoutingError>")]
pub struct GetAgentActor {
    pub workspace_id: WorkspaceId,
    pub agent_id: AgentId,
}

pub struct Directory {
    context: Arc<RoutingContext>,
    supervisors: HashMap<WorkspaceId, Addr<Supervisor>>,
    conversations: HashMap<ConversationId, Addr<ConversationActor>>,
    /// Conversations being loaded, with the messages that arrived meanwhile.
    loading: HashMap<ConversationId, Vec<InboundEvent>>,
    /// Loads under way, and conversations waiting to be loaded: a burst of new conversations
    /// must not take every pooled connection at once (agents' sockets need some too).
    loads_in_flight: usize,
    load_backlog: std::collections::VecDeque<ConversationId>,
    /// Callers waiting for a conversation's actor to be loaded.
    waiters: HashMap<ConversationId, Vec<oneshot::Sender<Option<Addr<ConversationActor>>>>>,
}

impl Directory {
    pub fn new(context: Arc<RoutingContext>) -> Self {
        Self {
            context,
            supervisors: HashMap::new(),
            conversations: HashMap::new(),
            loading: HashMap::new(),
            waiters: HashMap::new(),
            loads_in_flight: 0,
            load_backlog: Default::default(),
        }
    }

    fn supervisor(
        &mut self,
        workspace_id: WorkspaceId,
        ctx: &mut Context<Self>,
    ) -> Addr<Supervisor> {
        let context = self.context.clone();
        let directory = ctx.address();
        self.supervisors
            .entry(workspace_id)
            .or_insert_with(|| Supervisor::new(workspace_id, directory, context).start())
            .clone()
    }

    /// Loads and starts a conversation's actor; `event` (if any) is delivered once it runs.
    fn start_conversation(
        &mut self,
        conversation_id: ConversationId,
        event: Option<InboundEvent>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(pending) = self.loading.get_mut(&conversation_id) {
            pending.extend(event);
            return;
        }
        self.loading
            .insert(conversation_id, event.into_iter().collect());
        if self.loads_in_flight >= MAX_CONCURRENT_LOADS {
            self.load_backlog.push_back(conversation_id);
            return;
        }
        self.load(conversation_id, ctx);
    }

    /// Loads one conversation and starts its actor; then starts the next load waiting its turn.
    fn load(&mut self, conversation_id: ConversationId, ctx: &mut Context<Self>) {
        self.loads_in_flight += 1;
        let db = self.context.db.clone();
        ctx.spawn(
            async move { store::load_open_conversation(&db, conversation_id).await }
                .into_actor(self)
                .map(move |loaded, directory, ctx| {
                    directory.loads_in_flight -= 1;
                    if let Some(next) = directory.load_backlog.pop_front() {
                        directory.load(next, ctx);
                    }
                    let pending = directory.loading.remove(&conversation_id).unwrap_or_default();
                    let waiters = directory.waiters.remove(&conversation_id).unwrap_or_default();
                    let stored = match loaded {
                        Ok(Some(stored)) => stored,
                        Ok(None) => {
                            waiters.into_iter().for_each(|w| drop(w.send(None)));
                            return;
                        }
                        Err(error) => {
                            tracing::error!(%error, %conversation_id, "conversation not loaded; it is routed at the next restart or message");
                            waiters.into_iter().for_each(|w| drop(w.send(None)));
                            return;
                        }
                    };
                    let actor = directory.start_actor(stored, ctx);
                    for event in pending {
                        actor.do_send(NewMessage { message: event.message });
                    }
                    waiters.into_iter().for_each(|w| drop(w.send(Some(actor.clone()))));
                }),
        );
    }

    /// Starts a conversation's actor from its stored state and records where it is.
    fn start_actor(
        &mut self,
        stored: store::StoredConversation,
        ctx: &mut Context<Self>,
    ) -> Addr<ConversationActor> {
        let conversation_id = stored.id;
        let supervisor = self.supervisor(stored.workspace_id, ctx);
        let actor =
            ConversationActor::new(stored, supervisor, ctx.address(), self.context.clone()).start();
        self.conversations.insert(conversation_id, actor.clone());
        actor
    }
}

impl Actor for Directory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Route again everything that was open when the process last stopped.
        let db = self.context.db.clone();
        ctx.wait(
            async move {
                store::reset_offers(&db).await?;
                store::open_conversations(&db).await
            }
            .into_actor(self)
            .map(|open, directory, ctx| match open {
                Ok(open) => {
                    tracing::info!(
                        conversations = open.len(),
                        "routing open conversations again"
                    );
                    for (conversation_id, workspace_id) in open {
                        directory.supervisor(workspace_id, ctx);
                        directory.start_conversation(conversation_id, None, ctx);
                    }
                }
                Err(error) => tracing::error!(%error, "could not recover open conversations"),
            }),
        );
    }
}

impl Handler<Inbound> for Directory {
    type Result = ();

    fn handle(&mut self, Inbound(mut event): Inbound, ctx: &mut Context<Self>) {
        match self.conversations.get(&event.conversation_id) {
            Some(actor) if actor.connected() => actor.do_send(NewMessage {
                message: event.message,
            }),
            _ => {
                self.conversations.remove(&event.conversation_id);
                let conversation_id = event.conversation_id;
                // A conversation ingest has just opened comes with its rows: no load, unless
                // a load of it is already under way (its result then wins).
                if let Some(stored) = event.conversation.take()
                    && !self.loading.contains_key(&conversation_id)
                {
                    self.start_actor(*stored, ctx);
                    return;
                }
                self.supervisor(event.workspace_id, ctx);
                // A new conversation's first message is already its last message when loaded.
                let deliver = (!event.opened).then_some(event.clone());
                self.start_conversation(event.conversation_id, deliver, ctx);
            }
        }
    }
}

impl Handler<StatusChanged> for Directory {
    type Result = ();

    fn handle(&mut self, StatusChanged(event): StatusChanged, _: &mut Context<Self>) {
        // Only a running conversation has an agent to tell; the status is stored either way.
        if let Some(actor) = self
            .conversations
            .get(&event.conversation_id)
            .filter(|a| a.connected())
        {
            actor.do_send(crate::routing::conversation::StatusUpdate(event));
        }
    }
}

impl Handler<ConversationStopped> for Directory {
    type Result = ();

    fn handle(&mut self, stopped: ConversationStopped, _: &mut Context<Self>) {
        if self
            .conversations
            .get(&stopped.conversation_id)
            .is_some_and(|actor| !actor.connected())
        {
            self.conversations.remove(&stopped.conversation_id);
        }
    }
}

impl Handler<GetSupervisor> for Directory {
    type Result = MessageResult<GetSupervisor>;

    fn handle(&mut self, message: GetSupervisor, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.supervisor(message.workspace_id, ctx))
    }
}

impl Handler<GetConversation> for Directory {
    type Result = ResponseFuture<Option<Addr<ConversationActor>>>;

    fn handle(&mut self, message: GetConversation, ctx: &mut Context<Self>) -> Self::Result {
        let id = message.conversation_id;
        if let Some(actor) = self.conversations.get(&id).filter(|a| a.connected()) {
            let actor = actor.clone();
            return Box::pin(async move { Some(actor) });
        }
        let (answer, answered) = oneshot::channel();
        self.waiters.entry(id).or_default().push(answer);
        self.start_conversation(id, None, ctx);
        Box::pin(async move { answered.await.ok().flatten() })
    }
}

impl Handler<GetAgentActor> for Directory {
    type Result = ResponseFuture<Result<Option<Addr<AgentActor>>, crate::routing::RoutingError>>;

    fn handle(&mut self, message: GetAgentActor, ctx: &mut Context<Self>) -> Self::Result {
        let supervisor = self.supervisor(message.workspace_id, ctx);
        Box::pin(async move {
            let found = supervisor
                .send(GetAgent {
                    agent_id: message.agent_id,
                })
                .await
                .map_err(|_| crate::routing::RoutingError::Unavailable)??;
            Ok(found.map(|(actor, _)| actor))
        })
    }
}

/// The routing engine as the rest of the process sees it.
pub struct Engine {
    pub directory: Addr<Directory>,
}

impl Engine {
    /// Starts the directory (and, through it, every actor) on a thread and actix system of
    /// its own, which lives as long as the process: actors are never torn down mid-query.
    /// Call once per process, before the HTTP server starts its workers.
    pub fn start(context: Arc<RoutingContext>) -> Result<Engine, crate::EngineError> {
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
        Ok(Engine { directory })
    }

    pub fn handoff(&self) -> Arc<dyn InboundHandoff> {
        Arc::new(EngineHandoff {
            directory: self.directory.clone(),
        })
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

    fn status(&self, event: crate::ingest::StatusEvent) {
        self.directory.do_send(StatusChanged(event));
    }
}
