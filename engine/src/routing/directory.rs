//! `Directory`: the one door to a conversation's actor. Everything addressed to a conversation
//! (by agents, supervisors, the web and ingest) goes through it by id, never through an `Addr`
//! kept from earlier, so a message reaches the conversation whether its actor is running, being
//! loaded, stopping, or stopped long ago (it is rebuilt from the database). It also keeps each
//! workspace's supervisor. The one place that knows where actors are.
//!
//! On a node of a cluster it routes only the workspaces whose lease the node holds
//! ([`StartRouting`], [`StopRouting`]): a workspace taken over is fenced and recovered from the
//! database as a restart does; one lost stops at once, writing nothing (its new owner routes it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::ids::{AgentId, ConversationId, WorkspaceId};
use crate::inbox::MessageView;
use crate::ingest::{InboundEvent, StatusEvent};
use crate::routing::agent::AgentActor;
use crate::routing::conversation::{
    Abandon, ConversationActor, NewMessage, Opened, Ping, ReloadSettings, StatusUpdate, Stop,
    TagsEdited, Wake,
};
use crate::routing::supervisor::{GetAgent, Retire, Supervisor};
use crate::routing::{RoutingContext, RoutingError, store};

/// Conversations loaded from the database at the same time, at most.
const MAX_CONCURRENT_LOADS: usize = 4;

/// A newly stored inbound message, after its commit.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inbound(pub InboundEvent);

/// A status moved one of our messages forward, after its commit.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StatusChanged(pub StatusEvent);

/// A conversation actor would like to stop (resolved, or quiet for `conversation_idle`). The
/// directory stops routing mail to it first, then tells it to [`Stop`]; whatever arrives
/// meanwhile waits and goes to the conversation's next actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RetireRequest {
    pub conversation_id: ConversationId,
}

/// The conversation did not stop after all (something happened before [`Stop`] reached it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StillRunning {
    pub conversation_id: ConversationId,
}

/// Teams' time settings or the workspace's automation rules changed: every running
/// conversation reads them again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SettingsChanged;

/// A conversation actor stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConversationStopped {
    pub conversation_id: ConversationId,
    /// When its clocks next need it (an SLA deadline, the inactivity resolve).
    pub wake_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// This node now holds the workspace's lease, taken under `epoch`: it routes the workspace
/// from now on (several nodes).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartRouting {
    pub workspace_id: WorkspaceId,
    pub epoch: u64,
}

/// This node no longer holds the workspace's lease: its actors stop at once, writing nothing.
/// Answers the conversations they ran, for the next owner to recover (see [`Recover`]).
#[derive(Message)]
#[rtype(result = "Vec<ConversationId>")]
pub(crate) struct StopRouting {
    pub workspace_id: WorkspaceId,
}

/// A conversation the workspace's former owner ran: routed here from its stored state unless
/// it already is. The former owner may have opened it after this node's takeover read the open
/// conversations (a paused node routes what reaches it until its next round tells it that it
/// lost the lease), so the takeover alone would leave it without an actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Recover {
    pub workspace_id: WorkspaceId,
    pub conversation_id: ConversationId,
}

/// `Unavailable` when this node does not route the workspace (another node of the cluster does).
#[derive(Message)]
#[rtype(result = "Result<Addr<Supervisor>, RoutingError>")]
pub(crate) struct GetSupervisor {
    pub workspace_id: WorkspaceId,
}

/// The actor of an agent (for its sockets); `Ok(None)` when there is no such active agent.
#[derive(Message)]
#[rtype(result = "Result<Option<Addr<AgentActor>>, RoutingError>")]
pub(crate) struct GetAgentActor {
    pub workspace_id: WorkspaceId,
    pub agent_id: AgentId,
}

/// A conversation's tags were replaced through the API. Only an actor that runs (or is about
/// to) is told: one that is not reads them from the database when it starts.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TagsReplaced {
    pub conversation_id: ConversationId,
    pub tags: Vec<String>,
}

/// Shutdown: every socket of every workspace closes.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseSockets;

/// Shutdown, once nothing new arrives: every running conversation has handled its mail, then
/// the audit queue is written.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// `message` for a conversation, fire-and-forget: delivered to its actor, which is started from
/// the database first when it is not running. Dropped only when the conversation is not open.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tell<M> {
    pub conversation_id: ConversationId,
    pub message: M,
}

/// `message` for a conversation, with its answer; `NotFound` when the conversation is not open.
pub(crate) struct Ask<M> {
    pub conversation_id: ConversationId,
    pub message: M,
}

impl<M: Message> Message for Ask<M>
where
    M::Result: Send,
{
    type Result = Result<M::Result, RoutingError>;
}

/// One piece of mail for a conversation, waiting for its actor.
type Delivery = Box<dyn FnOnce(&Addr<ConversationActor>) + Send>;

/// Something that waits for a workspace's takeover to finish.
type Deferred = Box<dyn FnOnce(&mut Directory, &mut Context<Directory>)>;

/// A workspace this node holds the lease of.
struct Owned {
    /// The epoch the lease was taken under.
    epoch: u64,
    /// Fenced and listed: routed from now on. Until then, what concerns it waits in `deferred`
    /// (a supervisor or an actor started before the fence would read a state that a former
    /// owner may still change).
    claimed: bool,
    deferred: Vec<Deferred>,
}

/// Where a conversation's actor stands, as the directory routes mail to it.
enum Slot {
    Running(Addr<ConversationActor>),
    /// Told to stop; mail waits here and goes to the next actor (or back to this one).
    Stopping(Addr<ConversationActor>, Vec<Delivery>),
    /// Being read from the database (or waiting for a load slot); mail waits here.
    Loading(Vec<Delivery>),
}

pub(crate) struct Directory {
    context: Arc<RoutingContext>,
    supervisors: HashMap<WorkspaceId, Addr<Supervisor>>,
    conversations: HashMap<ConversationId, Slot>,
    /// Loads under way, and conversations waiting to be loaded: a burst of new conversations
    /// must not take every pooled connection at once (agents' sockets need some too).
    loads_in_flight: usize,
    load_backlog: VecDeque<ConversationId>,
    /// Failed loads so far, by conversation (for the retry's back-off).
    load_failures: HashMap<ConversationId, u32>,
    /// On a node of a cluster, the workspaces it routes, with the epoch each was taken under;
    /// `None` on a single node, which routes every workspace.
    owned: Option<HashMap<WorkspaceId, Owned>>,
    /// On a node of a cluster, the workspace of each conversation whose actor was started (to
    /// stop a workspace's when its lease goes).
    workspace_of: HashMap<ConversationId, WorkspaceId>,
    /// Conversations another node stored as opened (new or reopened) and handed over: loaded
    /// as ingest's rows would have started them, their opening message still to go through
    /// the rules.
    fresh_loads: HashMap<ConversationId, MessageView>,
}

impl Directory {
    pub(crate) fn new(context: Arc<RoutingContext>) -> Self {
        Self {
            supervisors: HashMap::new(),
            conversations: HashMap::new(),
            loads_in_flight: 0,
            load_backlog: VecDeque::new(),
            load_failures: HashMap::new(),
            owned: context.clustered().then(HashMap::new),
            workspace_of: HashMap::new(),
            fresh_loads: HashMap::new(),
            context,
        }
    }

    /// Whether this node routes `workspace_id` (or is taking it over).
    fn holds(&self, workspace_id: WorkspaceId) -> bool {
        self.owned
            .as_ref()
            .is_none_or(|owned| owned.contains_key(&workspace_id))
    }

    /// Runs `then` once this node routes `workspace_id`: now, or when its takeover finishes.
    /// Dropped (never run) when another node routes it.
    fn when_routed(
        &mut self,
        workspace_id: WorkspaceId,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        // The lease is this node's, but the word of it ([`StartRouting`]) has not come yet:
        // what the rest of the node already sends here (it asks the lease, not this
        // directory) starts the takeover now, and waits for it, rather than being dropped.
        if self
            .owned
            .as_ref()
            .is_some_and(|owned| !owned.contains_key(&workspace_id))
            && let Ok(Some(epoch)) = self.context.owner_epoch(workspace_id)
        {
            self.start_routing(workspace_id, epoch, ctx);
        }
        match self
            .owned
            .as_mut()
            .map(|owned| owned.get_mut(&workspace_id))
        {
            None => then(self, ctx),
            Some(Some(owned)) if owned.claimed => then(self, ctx),
            Some(Some(owned)) => owned.deferred.push(Box::new(then)),
            Some(None) => {}
        }
    }

    /// Routes `workspace_id` from now on, under `epoch`, once its takeover is done.
    fn start_routing(&mut self, workspace_id: WorkspaceId, epoch: u64, ctx: &mut Context<Self>) {
        let Some(owned) = &mut self.owned else {
            return;
        };
        if owned.contains_key(&workspace_id) {
            return;
        }
        owned.insert(
            workspace_id,
            Owned {
                epoch,
                claimed: false,
                deferred: Vec::new(),
            },
        );
        self.claim(workspace_id, epoch, 0, ctx);
    }

    /// The workspace's supervisor, once this node routes it; the sender is dropped (`Err`)
    /// when another node does.
    fn routed_supervisor(
        &mut self,
        workspace_id: WorkspaceId,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Addr<Supervisor>> {
        let (found, supervisor) = oneshot::channel();
        self.when_routed(workspace_id, ctx, move |directory, ctx| {
            let _ = found.send(directory.supervisor(workspace_id, ctx));
        });
        supervisor
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

    /// Hands `delivery` to the conversation's actor now, or keeps it until the actor runs.
    fn deliver(
        &mut self,
        conversation_id: ConversationId,
        delivery: Delivery,
        ctx: &mut Context<Self>,
    ) {
        match self.conversations.get_mut(&conversation_id) {
            Some(Slot::Running(actor)) if actor.connected() => delivery(actor),
            Some(Slot::Stopping(_, waiting) | Slot::Loading(waiting)) => waiting.push(delivery),
            // Never started, or gone without saying so: (re)built from the database.
            Some(Slot::Running(_)) | None => {
                self.conversations
                    .insert(conversation_id, Slot::Loading(vec![delivery]));
                self.queue_load(conversation_id, ctx);
            }
        }
    }

    fn queue_load(&mut self, conversation_id: ConversationId, ctx: &mut Context<Self>) {
        if self.loads_in_flight >= MAX_CONCURRENT_LOADS {
            self.load_backlog.push_back(conversation_id);
            return;
        }
        self.load(conversation_id, ctx);
    }

    /// Loads one conversation and starts its actor with the mail that waited; then starts the
    /// next load waiting its turn.
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
                    let waiting = match directory.conversations.remove(&conversation_id) {
                        Some(Slot::Loading(waiting)) => waiting,
                        // Started from ingest's rows meanwhile: that actor stands.
                        Some(other) => {
                            directory.conversations.insert(conversation_id, other);
                            return;
                        }
                        None => Vec::new(),
                    };
                    let stored = match loaded {
                        Ok(Some(stored)) => stored,
                        // Resolved or gone: there is nobody to tell (askers hear `NotFound`).
                        Ok(None) => {
                            directory.load_failures.remove(&conversation_id);
                            directory.fresh_loads.remove(&conversation_id);
                            return;
                        }
                        // Tried again (the pool may be exhausted for a moment, or the
                        // database away): an open conversation must not be left without actor.
                        Err(error) => {
                            let attempt = directory.load_failures.entry(conversation_id).or_insert(0);
                            *attempt += 1;
                            let wait = directory.context.settings.store_retry_after(*attempt);
                            tracing::warn!(%error, %conversation_id, attempt = *attempt, retry_in_ms = wait.as_millis() as u64, "conversation not loaded; trying again");
                            directory
                                .conversations
                                .insert(conversation_id, Slot::Loading(waiting));
                            ctx.run_later(wait, move |directory, ctx| {
                                directory.queue_load(conversation_id, ctx)
                            });
                            return;
                        }
                    };
                    directory.load_failures.remove(&conversation_id);
                    let workspace_id = stored.workspace_id;
                    if !directory.holds(workspace_id) {
                        // Lost to another node while it loaded: that node routes it.
                        directory.fresh_loads.remove(&conversation_id);
                        return;
                    }
                    if directory
                        .owned
                        .as_ref()
                        .and_then(|owned| owned.get(&workspace_id))
                        .is_some_and(|owned| !owned.claimed)
                    {
                        // Read before the takeover's fence: read again after it.
                        directory.workspace_of.insert(conversation_id, workspace_id);
                        directory
                            .conversations
                            .insert(conversation_id, Slot::Loading(waiting));
                        directory.when_routed(workspace_id, ctx, move |directory, ctx| {
                            directory.queue_load(conversation_id, ctx)
                        });
                        return;
                    }
                    let mut stored = stored;
                    // The message that opened it: its rules run once, on it, even when a
                    // later one was stored before the load read the rows (that one's own
                    // rules run when it is delivered).
                    let opening = directory.fresh_loads.remove(&conversation_id);
                    let late_opening = match opening {
                        Some(opening)
                            if stored.last_message.as_ref().map(|m| m.id) == Some(opening.id) =>
                        {
                            stored.fresh = true;
                            None
                        }
                        other => other,
                    };
                    let actor = directory.start_actor(stored, ctx);
                    if let Some(opening) = late_opening {
                        actor.do_send(Opened { message: opening });
                    }
                    for delivery in waiting {
                        delivery(&actor);
                    }
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
        // (Only a node of a cluster stops a workspace's actors: one node keeps no such map.)
        if self.owned.is_some() {
            self.workspace_of
                .insert(conversation_id, stored.workspace_id);
        }
        let supervisor = self.supervisor(stored.workspace_id, ctx);
        let actor =
            ConversationActor::new(stored, supervisor, ctx.address(), self.context.clone()).start();
        self.conversations
            .insert(conversation_id, Slot::Running(actor.clone()));
        actor
    }
}

impl Actor for Directory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A node of a cluster recovers each workspace when it takes its lease.
        if self.owned.is_some() {
            return;
        }
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
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            directory.conversations.entry(conversation_id)
                        {
                            slot.insert(Slot::Loading(Vec::new()));
                            directory.queue_load(conversation_id, ctx);
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "could not recover open conversations"),
            }),
        );
    }
}

impl Handler<Inbound> for Directory {
    type Result = ();

    fn handle(&mut self, Inbound(event): Inbound, ctx: &mut Context<Self>) {
        // Stored already: when another node routes the workspace, its recovery reads it.
        self.when_routed(event.workspace_id, ctx, move |directory, ctx| {
            directory.inbound(event, ctx)
        });
    }
}

impl Directory {
    fn inbound(&mut self, mut event: InboundEvent, ctx: &mut Context<Self>) {
        let conversation_id = event.conversation_id;
        self.supervisor(event.workspace_id, ctx);
        // Opened on another node, which handed over the message but not its rows: read them.
        if event.opened && event.conversation.is_none() {
            self.open_stored(conversation_id, event.message, ctx);
            return;
        }
        // A conversation ingest has just opened (or reopened) comes with its rows: no load.
        if let Some(stored) = event.conversation.take() {
            match self.conversations.get_mut(&conversation_id) {
                None => {
                    self.start_actor(*stored, ctx);
                    return;
                }
                Some(Slot::Running(actor)) if !actor.connected() => {
                    self.start_actor(*stored, ctx);
                    return;
                }
                // Reopened while its resolved actor is still winding down: rebuilt from the
                // database once that actor has stopped.
                Some(_) => {
                    self.open_stored(conversation_id, event.message, ctx);
                    return;
                }
            }
        }
        let message = event.message;
        self.deliver(
            conversation_id,
            Box::new(move |actor| actor.do_send(NewMessage { message })),
            ctx,
        );
    }
}

impl Directory {
    /// A conversation just opened (or reopened) by `opening`, whose rows are in the database:
    /// its actor is (re)built from them, and runs the opening message's rules. One still
    /// running is either the resolved conversation's, winding down, or one a takeover's
    /// recovery already built from these rows: it is asked to [`Stop`], which the first does
    /// (the mail waiting then reloads it, so some must wait) and the second declines (it runs
    /// the opening message's rules itself, says [`StillRunning`] and stays).
    fn open_stored(
        &mut self,
        conversation_id: ConversationId,
        opening: MessageView,
        ctx: &mut Context<Self>,
    ) {
        // Whichever actor the rows build next runs the opening message's rules.
        self.fresh_loads.insert(conversation_id, opening.clone());
        match self.conversations.get_mut(&conversation_id) {
            Some(slot @ Slot::Running(_)) => {
                let Slot::Running(actor) = std::mem::replace(slot, Slot::Loading(Vec::new()))
                else {
                    return;
                };
                if actor.connected() {
                    actor.do_send(Stop {
                        opening: Some(opening),
                    });
                    *slot = Slot::Stopping(actor, vec![Box::new(|_| {})]);
                    return;
                }
                self.queue_load(conversation_id, ctx);
            }
            // Asked to stop already (idle, say): if it declines, it runs the rules then.
            Some(Slot::Stopping(actor, waiting)) => {
                actor.do_send(Stop {
                    opening: Some(opening),
                });
                waiting.push(Box::new(|_| {}));
            }
            // Read from the database after the reopen was stored (the handoff follows the
            // commit), so the load sees it. (A takeover's recovery, say, loading it now.)
            Some(Slot::Loading(_)) => {}
            None => {
                self.conversations
                    .insert(conversation_id, Slot::Loading(Vec::new()));
                self.queue_load(conversation_id, ctx);
            }
        }
    }

    /// Takes a workspace over under `epoch`: its conversations fenced, its offers ended, and
    /// each open one routed again (retried while the database fails, as long as it is held).
    fn claim(
        &mut self,
        workspace_id: WorkspaceId,
        epoch: u64,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) {
        let db = self.context.db.clone();
        ctx.spawn(
            async move { store::claim_workspace(&db, workspace_id, epoch).await }
                .into_actor(self)
                .map(move |open, directory, ctx| {
                    let Some(owned) = directory
                        .owned
                        .as_mut()
                        .and_then(|owned| owned.get_mut(&workspace_id))
                        .filter(|owned| owned.epoch == epoch && !owned.claimed)
                    else {
                        return;
                    };
                    match open {
                        Ok(open) => {
                            tracing::info!(%workspace_id, epoch, conversations = open.len(), "routing the workspace");
                            owned.claimed = true;
                            let deferred = std::mem::take(&mut owned.deferred);
                            directory.supervisor(workspace_id, ctx);
                            for conversation_id in open {
                                if let std::collections::hash_map::Entry::Vacant(slot) =
                                    directory.conversations.entry(conversation_id)
                                {
                                    slot.insert(Slot::Loading(Vec::new()));
                                    directory.queue_load(conversation_id, ctx);
                                }
                            }
                            // What came meanwhile, in order.
                            for then in deferred {
                                then(directory, ctx);
                            }
                        }
                        Err(error) => {
                            let wait = directory.context.settings.store_retry_after(attempt + 1);
                            tracing::warn!(%error, %workspace_id, retry_in_ms = wait.as_millis() as u64, "workspace not taken over; trying again");
                            ctx.run_later(wait, move |directory, ctx| {
                                directory.claim(workspace_id, epoch, attempt + 1, ctx)
                            });
                        }
                    }
                }),
        );
    }
}

impl Handler<StartRouting> for Directory {
    type Result = ();

    fn handle(&mut self, start: StartRouting, ctx: &mut Context<Self>) {
        self.start_routing(start.workspace_id, start.epoch, ctx);
    }
}

impl Handler<StopRouting> for Directory {
    type Result = MessageResult<StopRouting>;

    fn handle(&mut self, stop: StopRouting, _: &mut Context<Self>) -> Self::Result {
        let workspace_id = stop.workspace_id;
        let Some(owned) = &mut self.owned else {
            return MessageResult(Vec::new());
        };
        if owned.remove(&workspace_id).is_none() {
            return MessageResult(Vec::new());
        }
        tracing::info!(%workspace_id, "workspace no longer routed here");
        if let Some(supervisor) = self.supervisors.remove(&workspace_id) {
            supervisor.do_send(Retire);
        }
        let leaving: Vec<ConversationId> = self
            .workspace_of
            .iter()
            .filter(|(_, of)| **of == workspace_id)
            .map(|(id, _)| *id)
            .collect();
        for conversation_id in &leaving {
            self.workspace_of.remove(conversation_id);
            self.fresh_loads.remove(conversation_id);
            // Mail waiting for it is dropped: what was stored is the new owner's to route,
            // and askers hear that the conversation is not here.
            if let Some(Slot::Running(actor) | Slot::Stopping(actor, _)) =
                self.conversations.remove(conversation_id)
            {
                actor.do_send(Abandon);
            }
        }
        MessageResult(leaving)
    }
}

impl Handler<Recover> for Directory {
    type Result = ();

    fn handle(&mut self, recover: Recover, ctx: &mut Context<Self>) {
        let conversation_id = recover.conversation_id;
        self.when_routed(recover.workspace_id, ctx, move |directory, ctx| {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                directory.conversations.entry(conversation_id)
            {
                // Resolved meanwhile: the load finds nothing open and starts nothing.
                slot.insert(Slot::Loading(Vec::new()));
                directory.queue_load(conversation_id, ctx);
            }
        });
    }
}

impl Handler<SettingsChanged> for Directory {
    type Result = ();

    fn handle(&mut self, _: SettingsChanged, _: &mut Context<Self>) {
        for slot in self.conversations.values() {
            if let Slot::Running(actor) = slot {
                actor.do_send(ReloadSettings);
            }
        }
    }
}

impl Handler<StatusChanged> for Directory {
    type Result = ();

    fn handle(&mut self, StatusChanged(event): StatusChanged, ctx: &mut Context<Self>) {
        // Only a running conversation has an agent to tell; the status is stored either way.
        self.when_routed(event.workspace_id, ctx, move |directory, _| {
            if let Some(Slot::Running(actor)) = directory.conversations.get(&event.conversation_id)
            {
                actor.do_send(StatusUpdate(event));
            }
        });
    }
}

impl Handler<RetireRequest> for Directory {
    type Result = ();

    fn handle(&mut self, request: RetireRequest, _: &mut Context<Self>) {
        let id = request.conversation_id;
        let Some(slot) = self.conversations.get_mut(&id) else {
            return;
        };
        let actor = match std::mem::replace(slot, Slot::Loading(Vec::new())) {
            Slot::Running(actor) => {
                *slot = Slot::Stopping(actor.clone(), Vec::new());
                actor
            }
            Slot::Stopping(actor, waiting) => {
                *slot = Slot::Stopping(actor.clone(), waiting);
                actor
            }
            loading @ Slot::Loading(_) => {
                *slot = loading;
                return;
            }
        };
        // Everything routed to it before this is ahead of `Stop` in its mailbox.
        actor.do_send(Stop { opening: None });
    }
}

impl Handler<StillRunning> for Directory {
    type Result = ();

    fn handle(&mut self, message: StillRunning, _: &mut Context<Self>) {
        let id = message.conversation_id;
        // It ran the opening message's rules itself: no later load of it is fresh.
        self.fresh_loads.remove(&id);
        if let Some(slot) = self.conversations.get_mut(&id)
            && matches!(slot, Slot::Stopping(..))
            && let Slot::Stopping(actor, waiting) =
                std::mem::replace(slot, Slot::Loading(Vec::new()))
        {
            for delivery in waiting {
                delivery(&actor);
            }
            *slot = Slot::Running(actor);
        }
    }
}

impl Handler<ConversationStopped> for Directory {
    type Result = ();

    fn handle(&mut self, stopped: ConversationStopped, ctx: &mut Context<Self>) {
        let id = stopped.conversation_id;
        // On a node of a cluster, the workspace it was routed in (`None` on one node, which
        // routes everything): one another node routes now wakes nothing here.
        let workspace_id = match self.conversations.get(&id) {
            _ if self.owned.is_none() => None,
            // A newer actor stands: this one's workspace is its.
            Some(Slot::Running(actor)) if actor.connected() => self.workspace_of.get(&id).copied(),
            _ => self.workspace_of.remove(&id),
        };
        let routed = self.owned.is_none() || workspace_id.is_some_and(|w| self.holds(w));
        if let (Some(at), true) = (stopped.wake_at, routed) {
            // Started again from the database at that moment (it re-arms what is left); a
            // conversation resolved meanwhile loads as nothing.
            let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            ctx.run_later(wait, move |directory, ctx| {
                if workspace_id.is_none_or(|workspace_id| directory.holds(workspace_id)) {
                    directory.deliver(id, Box::new(|actor| actor.do_send(Wake)), ctx)
                }
            });
        }
        match self.conversations.remove(&id) {
            // Mail arrived while it stopped: its next actor is read from the database.
            Some(Slot::Stopping(_, waiting)) if !waiting.is_empty() => {
                self.conversations.insert(id, Slot::Loading(waiting));
                self.queue_load(id, ctx);
            }
            Some(Slot::Stopping(..)) | None => {}
            // A newer actor (or a load) already stands in its place.
            Some(Slot::Running(actor)) if actor.connected() => {
                self.conversations.insert(id, Slot::Running(actor));
            }
            Some(Slot::Running(_)) => {}
            Some(loading @ Slot::Loading(_)) => {
                self.conversations.insert(id, loading);
            }
        }
    }
}

impl Handler<TagsReplaced> for Directory {
    type Result = ();

    fn handle(&mut self, replaced: TagsReplaced, _: &mut Context<Self>) {
        let message = TagsEdited {
            tags: replaced.tags,
        };
        match self.conversations.get_mut(&replaced.conversation_id) {
            Some(Slot::Running(actor)) if actor.connected() => actor.do_send(message),
            // A load may have read the tags before they were replaced.
            Some(Slot::Stopping(_, waiting) | Slot::Loading(waiting)) => {
                waiting.push(Box::new(move |actor| actor.do_send(message)));
            }
            Some(Slot::Running(_)) | None => {}
        }
    }
}

impl<M> Handler<Tell<M>> for Directory
where
    M: Message + Send + 'static,
    M::Result: Send,
    ConversationActor: Handler<M>,
{
    type Result = ();

    fn handle(&mut self, tell: Tell<M>, ctx: &mut Context<Self>) {
        let message = tell.message;
        self.deliver(
            tell.conversation_id,
            Box::new(move |actor| actor.do_send(message)),
            ctx,
        );
    }
}

impl<M> Handler<Ask<M>> for Directory
where
    M: Message + Send + 'static,
    M::Result: Send,
    ConversationActor: Handler<M>,
{
    type Result = ResponseFuture<Result<M::Result, RoutingError>>;

    fn handle(&mut self, ask: Ask<M>, ctx: &mut Context<Self>) -> Self::Result {
        let (answer, answered) = oneshot::channel();
        let message = ask.message;
        self.deliver(
            ask.conversation_id,
            Box::new(move |actor| {
                // `send` queues the message now, so it keeps its place among the others.
                let request = actor.send(message);
                actix::spawn(async move {
                    let _ = answer.send(request.await);
                });
            }),
            ctx,
        );
        Box::pin(async move {
            match answered.await {
                Ok(Ok(result)) => Ok(result),
                // The actor stopped with the message unread (it had just resolved).
                Ok(Err(_)) => Err(RoutingError::Conflict("the conversation has ended".into())),
                // Never delivered: the conversation is not open.
                Err(_) => Err(RoutingError::NotFound("conversation")),
            }
        })
    }
}

impl Handler<CloseSockets> for Directory {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseSockets, _: &mut Context<Self>) -> Self::Result {
        let supervisors: Vec<Addr<Supervisor>> = self.supervisors.values().cloned().collect();
        Box::pin(async move {
            for supervisor in supervisors {
                let _ = supervisor
                    .send(crate::routing::supervisor::CloseSockets)
                    .await;
            }
        })
    }
}

impl Handler<Drain> for Directory {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        let running: Vec<Addr<ConversationActor>> = self
            .conversations
            .values()
            .filter_map(|slot| match slot {
                Slot::Running(actor) | Slot::Stopping(actor, _) => Some(actor.clone()),
                Slot::Loading(_) => None,
            })
            .collect();
        let context = self.context.clone();
        Box::pin(async move {
            // Each answers after what was queued before it (its writes included).
            futures_util::future::join_all(running.iter().map(|actor| actor.send(Ping))).await;
            context.audit.flush().await;
        })
    }
}

impl Handler<GetSupervisor> for Directory {
    type Result = ResponseFuture<Result<Addr<Supervisor>, RoutingError>>;

    fn handle(&mut self, message: GetSupervisor, ctx: &mut Context<Self>) -> Self::Result {
        let supervisor = self.routed_supervisor(message.workspace_id, ctx);
        Box::pin(async move { supervisor.await.map_err(|_| RoutingError::Unavailable) })
    }
}

impl Handler<GetAgentActor> for Directory {
    type Result = ResponseFuture<Result<Option<Addr<AgentActor>>, RoutingError>>;

    fn handle(&mut self, message: GetAgentActor, ctx: &mut Context<Self>) -> Self::Result {
        let supervisor = self.routed_supervisor(message.workspace_id, ctx);
        Box::pin(async move {
            let supervisor = supervisor.await.map_err(|_| RoutingError::Unavailable)?;
            let found = supervisor
                .send(GetAgent {
                    agent_id: message.agent_id,
                })
                .await
                .map_err(|_| RoutingError::Unavailable)??;
            Ok(found.map(|(actor, _)| actor))
        })
    }
}
