//! Any node takes any request (shared/DESIGN.md, "Beyond one machine"): what needs a
//! workspace's routing goes to the node that holds its lease, over NATS.
//!
//! - `{prefix}.ws.{workspace}`: the owner's door, subscribed by the node holding the lease and
//!   by no other. Ingest's committed events (in order, acknowledged by the owner once handed to
//!   its directory, retried until they are, de-duplicated by message id), engine calls from
//!   the REST API (request and answer), sockets opened and their frames.
//! - `{prefix}.sock.{node}.{workspace}.{socket}`: what the owner sends to a socket that another
//!   node holds (an agent's frames, a dashboard's stats), in order; an empty message closes the
//!   socket. A frame for a socket the node no longer has (its `Connect` gave up waiting, yet the
//!   owner carried it out) is answered with `Closed`, so no socket is served for nobody.
//! - `{prefix}.all`: settings every node must read again (calendars, SLA policies, rules, tags),
//!   and accesses ended (a session, agent or API token), whose sockets close on every node.
//!
//! A socket's agent is routed on the owner, whichever node holds the socket, so its load is
//! counted once across all its sockets and nodes. A node that dies is noticed by its peers'
//! rounds (its heartbeat lapses): the owner drops the dead node's sockets, and a node holding
//! sockets of a dead owner closes them (consoles reconnect, and reach the new owner).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ownership::Epochs;
use crate::auth::AccessEnded;
use crate::ids::{AgentId, ConversationId, MessageId, TeamId, WorkspaceId};
use crate::inbox::MessageView;
use crate::ingest::{InboundEvent, StatusEvent};
use crate::routing::frames::ClientFrame;
use crate::routing::{AgentSocket, Engine, Outbox, Reply, RoutingError, StatsSubscription};

/// Events handed to one owner in one request, at most.
const MAX_EVENTS_PER_REQUEST: usize = 256;
/// Message ids remembered to drop an event delivered twice (its first acknowledgement lost).
const REMEMBERED_EVENTS: usize = 65_536;
/// Frames waiting for one socket of another node, at most (as a local socket's outbox).
const REMOTE_OUTBOX: usize = 256;
/// Socket ids this node gives the sockets of other nodes, apart from its own.
const REMOTE_SOCKET_IDS: u64 = 1 << 63;

/// Something committed that the workspace's owner must route.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Most events are inbound messages: boxing them would cost more.
pub(crate) enum Event {
    Inbound(InboundEvent),
    Status(StatusEvent),
    /// A conversation this node ran when it lost the workspace: the next owner routes it
    /// unless it already does.
    Recover {
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
    },
}

impl Event {
    fn workspace_id(&self) -> WorkspaceId {
        match self {
            Event::Inbound(event) => event.workspace_id,
            Event::Status(event) => event.workspace_id,
            Event::Recover { workspace_id, .. } => *workspace_id,
        }
    }
}

/// What a node asks of a workspace's owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    Events {
        events: Vec<Event>,
    },
    Assign {
        conversation_id: ConversationId,
        agent_id: AgentId,
    },
    Reply {
        conversation_id: ConversationId,
        agent_id: AgentId,
        reply: Reply,
    },
    AgentChanged {
        agent_id: AgentId,
    },
    SignOut {
        agent_id: AgentId,
        reason: String,
    },
    /// An agent's socket opened on `origin`.
    Connect {
        agent_id: AgentId,
        origin: String,
        socket_id: u64,
    },
    /// A dashboard opened on `origin`.
    Subscribe {
        origin: String,
        socket_id: u64,
        teams: Option<Vec<TeamId>>,
    },
    /// A frame an agent sent on a socket of `origin` (no answer: they stay in order).
    Frame {
        origin: String,
        socket_id: u64,
        frame: ClientFrame,
    },
    /// A socket or dashboard of `origin` closed (no answer).
    Closed {
        origin: String,
        socket_id: u64,
    },
}

/// The owner's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum Answer {
    Done,
    Message {
        message: MessageView,
    },
    /// The socket is the owner's (`node`) to serve.
    Connected {
        node: String,
    },
    Refused {
        code: String,
        message: String,
    },
}

/// Settings every node reads again.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum Broadcast {
    TimeSettings {
        origin: String,
    },
    Automations {
        origin: String,
    },
    Tags {
        origin: String,
        conversation_id: ConversationId,
        tags: Vec<String>,
    },
    /// Sockets of a session, agent or token whose access ended close on every node.
    AccessEnded {
        origin: String,
        ended: AccessEnded,
    },
}

/// What the owner refused, as it travels.
fn refused(error: &RoutingError) -> Answer {
    Answer::Refused {
        code: error.code().as_str().to_owned(),
        message: error.to_string(),
    }
}

/// The refusal again, on the asking node.
fn refusal(code: &str, message: String) -> RoutingError {
    const FOUND: [&str; 4] = ["conversation", "agent", "team", "workspace"];
    match code {
        "over_capacity" => RoutingError::OverCapacity,
        "not_assigned" => RoutingError::NotAssigned,
        "not_found" => RoutingError::NotFound(
            FOUND
                .into_iter()
                .find(|thing| message.starts_with(thing))
                .unwrap_or("item"),
        ),
        "conflict" => RoutingError::Conflict(message),
        "window_closed" => RoutingError::WindowClosed,
        "validation_failed" => RoutingError::Invalid(message),
        _ => RoutingError::Unavailable,
    }
}

/// A node id as one token of a subject.
fn token(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A socket on this node whose agent or dashboard another node routes.
struct Sink {
    outbox: Outbox,
    workspace_id: WorkspaceId,
    /// The owner serving it (empty until it answered).
    owner: String,
}

/// A socket of another node, as this node (the owner) serves it.
enum Served {
    Agent(AgentSocket),
    Stats(StatsSubscription),
}

impl Served {
    fn close(&self) {
        match self {
            Served::Agent(socket) => socket.disconnect(),
            Served::Stats(subscription) => subscription.unsubscribe(),
        }
    }
}

/// Counters of the bus, for `/metrics`.
#[derive(Default)]
pub struct BusMetrics {
    /// Calls forwarded to another node (REST calls, sockets opened), and events handed over.
    pub forwards: prometheus_client::metrics::counter::Counter,
    pub handoffs: prometheus_client::metrics::counter::Counter,
    /// Workspaces taken over by this node, and those it holds now.
    pub takeovers: prometheus_client::metrics::counter::Counter,
    pub leases_held: prometheus_client::metrics::gauge::Gauge,
    /// How long a forwarded call took, answer included.
    pub forward_seconds: ForwardSeconds,
    /// How long a batch of events took to reach its owner, acknowledgement included (the
    /// last attempt's, when it took several).
    pub handoff_seconds: ForwardSeconds,
}

/// A histogram of a hop's durations (forwarded calls, handed-over events).
pub struct ForwardSeconds(pub prometheus_client::metrics::histogram::Histogram);

impl Default for ForwardSeconds {
    fn default() -> Self {
        // 50 µs to about 1.6 s.
        ForwardSeconds(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16),
        ))
    }
}

/// This node's end of the bus.
pub struct Bus {
    client: async_nats::Client,
    prefix: String,
    node: String,
    epochs: Arc<Epochs>,
    /// How long a call waits for an owner (a workspace changing hands has none for a while).
    patience: Duration,
    sinks: Mutex<HashMap<u64, Sink>>,
    served: Mutex<HashMap<(String, u64), Served>>,
    next_served: AtomicU64,
    /// Publishes, in order (frames of one socket must not overtake each other).
    outgoing: mpsc::UnboundedSender<(String, Bytes)>,
    handoffs: mpsc::UnboundedSender<Event>,
    /// Events handed over and not yet delivered, by workspace: while there are some, the
    /// workspace's next events queue behind them, also once this node holds it (in order).
    undelivered: Mutex<HashMap<WorkspaceId, usize>>,
    /// Woken when this node takes a lease: what waits out a pause for an owner goes at once.
    taken: tokio::sync::Notify,
    seen: Mutex<(HashSet<MessageId>, VecDeque<MessageId>)>,
    /// Accesses ended on other nodes, for this node's web layer to close their sockets.
    access_ended: mpsc::UnboundedSender<AccessEnded>,
    access_endings: Mutex<Option<mpsc::UnboundedReceiver<AccessEnded>>>,
    pub metrics: BusMetrics,
}

/// Where the bus's queues are drained, once the engine runs.
pub(crate) struct BusQueues {
    outgoing: mpsc::UnboundedReceiver<(String, Bytes)>,
    handoffs: mpsc::UnboundedReceiver<Event>,
}

impl Bus {
    pub(crate) fn new(node: &super::Node) -> (Arc<Bus>, BusQueues) {
        let (outgoing, outgoing_queue) = mpsc::unbounded_channel();
        let (handoffs, handoff_queue) = mpsc::unbounded_channel();
        let (access_ended, access_endings) = mpsc::unbounded_channel();
        let config = node.config();
        let bus = Arc::new(Bus {
            client: node.client(),
            prefix: config.prefix.clone(),
            node: config.node.clone(),
            epochs: node.epochs(),
            patience: config.lease * 2 + Duration::from_secs(1),
            sinks: Mutex::default(),
            served: Mutex::default(),
            next_served: AtomicU64::new(REMOTE_SOCKET_IDS),
            outgoing,
            handoffs,
            undelivered: Mutex::default(),
            taken: tokio::sync::Notify::new(),
            seen: Mutex::default(),
            access_ended,
            access_endings: Mutex::new(Some(access_endings)),
            metrics: BusMetrics::default(),
        });
        (
            bus,
            BusQueues {
                outgoing: outgoing_queue,
                handoffs: handoff_queue,
            },
        )
    }

    /// Whether this node routes `workspace_id` itself.
    pub(crate) fn holds(&self, workspace_id: WorkspaceId) -> bool {
        self.epochs.get(workspace_id).is_some()
    }

    fn door(&self, workspace_id: WorkspaceId) -> String {
        format!("{}.ws.{workspace_id}", self.prefix)
    }

    fn socket_subject(&self, node: &str, workspace_id: WorkspaceId, socket_id: u64) -> String {
        format!(
            "{}.sock.{}.{workspace_id}.{socket_id}",
            self.prefix,
            token(node)
        )
    }

    fn broadcasts(&self) -> String {
        format!("{}.all", self.prefix)
    }

    fn publish(&self, subject: String, payload: Bytes) {
        let _ = self.outgoing.send((subject, payload));
    }

    fn publish_call(&self, workspace_id: WorkspaceId, call: &Call) {
        match serde_json::to_vec(call) {
            Ok(payload) => self.publish(self.door(workspace_id), payload.into()),
            Err(error) => tracing::error!(%error, "a call could not be encoded"),
        }
    }

    /// Hands a committed event to its workspace's owner (queued; retried until it takes it).
    pub(crate) fn hand_over(&self, event: Event) {
        self.metrics.handoffs.inc();
        *self
            .undelivered_lock()
            .entry(event.workspace_id())
            .or_default() += 1;
        let _ = self.handoffs.send(event);
    }

    /// Whether events handed over for `workspace_id` are still on their way (the next ones
    /// must follow them, not overtake them).
    pub(crate) fn handing_over(&self, workspace_id: WorkspaceId) -> bool {
        self.undelivered_lock().contains_key(&workspace_id)
    }

    fn delivered(&self, workspace_id: WorkspaceId, count: usize) {
        let mut undelivered = self.undelivered_lock();
        if let Some(left) = undelivered.get_mut(&workspace_id) {
            *left = left.saturating_sub(count);
            if *left == 0 {
                undelivered.remove(&workspace_id);
            }
        }
    }

    fn undelivered_lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkspaceId, usize>> {
        self.undelivered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sleeps `pause`, or less if this node takes a lease meanwhile.
    async fn pause(&self, pause: Duration) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.taken.notified() => {}
        }
    }

    /// Settings changed here: every other node reads them again.
    pub(crate) fn broadcast_time_settings(&self) {
        self.broadcast(&Broadcast::TimeSettings {
            origin: self.node.clone(),
        });
    }

    pub(crate) fn broadcast_automations(&self) {
        self.broadcast(&Broadcast::Automations {
            origin: self.node.clone(),
        });
    }

    pub(crate) fn broadcast_tags(&self, conversation_id: ConversationId, tags: Vec<String>) {
        self.broadcast(&Broadcast::Tags {
            origin: self.node.clone(),
            conversation_id,
            tags,
        });
    }

    pub(crate) fn broadcast_access_ended(&self, ended: AccessEnded) {
        self.broadcast(&Broadcast::AccessEnded {
            origin: self.node.clone(),
            ended,
        });
    }

    /// Accesses ended on other nodes (taken once, by the web layer).
    pub(crate) fn access_endings(&self) -> Option<mpsc::UnboundedReceiver<AccessEnded>> {
        self.access_endings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn broadcast(&self, change: &Broadcast) {
        if let Ok(payload) = serde_json::to_vec(change) {
            self.publish(self.broadcasts(), payload.into());
        }
    }

    /// Asks the owner of `workspace_id`. Waits (up to two leases) while nobody owns it; a call
    /// the owner did not answer in time is not sent again (it may have been carried out).
    async fn call(&self, workspace_id: WorkspaceId, call: &Call) -> Result<Answer, RoutingError> {
        self.metrics.forwards.inc();
        let payload: Bytes = serde_json::to_vec(call)
            .map_err(|error| RoutingError::Invalid(error.to_string()))?
            .into();
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(self.patience));
            match self
                .client
                .send_request(self.door(workspace_id), request)
                .await
            {
                Ok(message) => {
                    self.metrics
                        .forward_seconds
                        .0
                        .observe(started.elapsed().as_secs_f64());
                    return match serde_json::from_slice(&message.payload) {
                        Ok(Answer::Refused { code, message }) => Err(refusal(&code, message)),
                        Ok(answer) => Ok(answer),
                        Err(error) => {
                            tracing::error!(%error, "the owner's answer could not be read");
                            Err(RoutingError::Unavailable)
                        }
                    };
                }
                Err(error)
                    if error.kind() == async_nats::RequestErrorKind::NoResponders
                        && started.elapsed() < self.patience =>
                {
                    // Changing hands: the next owner opens its door once it has the lease.
                    self.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(error) => {
                    tracing::warn!(%error, %workspace_id, "the workspace's owner did not answer");
                    return Err(RoutingError::Unavailable);
                }
            }
        }
    }

    pub(crate) async fn assign(
        &self,
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        let call = Call::Assign {
            conversation_id,
            agent_id,
        };
        self.call(workspace_id, &call).await.map(|_| ())
    }

    pub(crate) async fn reply(
        &self,
        workspace_id: WorkspaceId,
        conversation_id: ConversationId,
        agent_id: AgentId,
        reply: Reply,
    ) -> Result<MessageView, RoutingError> {
        let call = Call::Reply {
            conversation_id,
            agent_id,
            reply,
        };
        match self.call(workspace_id, &call).await? {
            Answer::Message { message } => Ok(message),
            _ => Err(RoutingError::Unavailable),
        }
    }

    pub(crate) async fn agent_changed(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
    ) -> Result<(), RoutingError> {
        let call = Call::AgentChanged { agent_id };
        self.call(workspace_id, &call).await.map(|_| ())
    }

    pub(crate) async fn sign_out_agent(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
        reason: &str,
    ) -> Result<(), RoutingError> {
        let call = Call::SignOut {
            agent_id,
            reason: reason.to_owned(),
        };
        self.call(workspace_id, &call).await.map(|_| ())
    }

    /// Opens a socket here whose agent (or dashboard) the owner serves: its frames come back
    /// on this node's socket subject.
    async fn open_remote(
        &self,
        workspace_id: WorkspaceId,
        socket_id: u64,
        outbox: Outbox,
        call: Call,
    ) -> Result<(), RoutingError> {
        // Kept before asking: the owner's first frame (the hello) may come before its answer.
        self.sinks_lock().insert(
            socket_id,
            Sink {
                outbox,
                workspace_id,
                owner: String::new(),
            },
        );
        match self.call(workspace_id, &call).await {
            Ok(Answer::Connected { node }) => {
                if let Some(sink) = self.sinks_lock().get_mut(&socket_id) {
                    sink.owner = node;
                }
                Ok(())
            }
            Ok(_) => {
                self.sinks_lock().remove(&socket_id);
                Err(RoutingError::Unavailable)
            }
            Err(error) => {
                self.sinks_lock().remove(&socket_id);
                Err(error)
            }
        }
    }

    pub(crate) async fn connect_agent(
        &self,
        workspace_id: WorkspaceId,
        agent_id: AgentId,
        socket_id: u64,
        outbox: Outbox,
    ) -> Result<(), RoutingError> {
        let call = Call::Connect {
            agent_id,
            origin: self.node.clone(),
            socket_id,
        };
        self.open_remote(workspace_id, socket_id, outbox, call)
            .await
    }

    pub(crate) async fn subscribe_stats(
        &self,
        workspace_id: WorkspaceId,
        socket_id: u64,
        teams: Option<Vec<TeamId>>,
        outbox: Outbox,
    ) -> Result<(), RoutingError> {
        let call = Call::Subscribe {
            origin: self.node.clone(),
            socket_id,
            teams,
        };
        self.open_remote(workspace_id, socket_id, outbox, call)
            .await
    }

    /// A frame from a socket here, for its agent on the owner.
    pub(crate) fn frame(&self, workspace_id: WorkspaceId, socket_id: u64, frame: ClientFrame) {
        let call = Call::Frame {
            origin: self.node.clone(),
            socket_id,
            frame,
        };
        self.publish_call(workspace_id, &call);
    }

    /// A socket here closed.
    pub(crate) fn closed(&self, workspace_id: WorkspaceId, socket_id: u64) {
        if self.sinks_lock().remove(&socket_id).is_none() {
            // Closed by its owner already.
            return;
        }
        let call = Call::Closed {
            origin: self.node.clone(),
            socket_id,
        };
        self.publish_call(workspace_id, &call);
    }

    /// An outbox for a socket of another node, and the id it is served under here.
    fn served_outbox(&self) -> (Outbox, mpsc::Receiver<String>, u64) {
        let (outbox, frames) = mpsc::channel(REMOTE_OUTBOX);
        (
            outbox,
            frames,
            self.next_served.fetch_add(1, Ordering::Relaxed),
        )
    }

    fn sinks_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sink>> {
        self.sinks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn served_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Served>> {
        self.served
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this event was handed over before (its acknowledgement was lost).
    fn seen_before(&self, event: &Event) -> bool {
        let Event::Inbound(event) = event else {
            return false;
        };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(event.message_id) {
            return true;
        }
        order.push_back(event.message_id);
        if order.len() > REMEMBERED_EVENTS
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        false
    }

    /// Shutdown: this node's sockets served by other nodes close (their owners are told).
    pub(crate) fn close_sockets(&self) {
        let sinks: Vec<(u64, Sink)> = self.sinks_lock().drain().collect();
        for (socket_id, sink) in sinks {
            let call = Call::Closed {
                origin: self.node.clone(),
                socket_id,
            };
            self.publish_call(sink.workspace_id, &call);
        }
    }

    /// The live nodes, every round: sockets whose other end died are closed.
    pub(crate) fn nodes_alive(&self, alive: &[String]) {
        let dead_owner: Vec<(u64, Sink)> = {
            let mut sinks = self.sinks_lock();
            let dead: Vec<u64> = sinks
                .iter()
                .filter(|(_, sink)| !sink.owner.is_empty() && !alive.contains(&sink.owner))
                .map(|(id, _)| *id)
                .collect();
            dead.into_iter()
                .filter_map(|id| sinks.remove(&id).map(|sink| (id, sink)))
                .collect()
        };
        for (socket_id, sink) in dead_owner {
            tracing::info!(socket_id, owner = sink.owner, workspace_id = %sink.workspace_id, "socket closed: the node that served it is gone");
        }
        let dead_origin: Vec<Served> = {
            let mut served = self.served_lock();
            let dead: Vec<(String, u64)> = served
                .keys()
                .filter(|(origin, _)| !alive.contains(origin))
                .cloned()
                .collect();
            dead.into_iter()
                .filter_map(|key| served.remove(&key))
                .collect()
        };
        for socket in dead_origin {
            socket.close();
        }
    }
}

/// Runs the bus for `engine`: this node's socket and broadcast subjects, the publisher, the
/// handoff of events, and a door per workspace held (opened and closed with its lease).
pub(crate) async fn run(
    bus: Arc<Bus>,
    engine: Engine,
    queues: BusQueues,
    mut changes: mpsc::UnboundedReceiver<super::Change>,
) {
    tokio::spawn(publish(bus.clone(), queues.outgoing));
    tokio::spawn(hand_over(bus.clone(), engine.clone(), queues.handoffs));
    tokio::spawn(feed_sockets(bus.clone()));
    tokio::spawn(read_broadcasts(bus.clone(), engine.clone()));
    let mut doors: HashMap<WorkspaceId, tokio::task::JoinHandle<()>> = HashMap::new();
    while let Some(change) = changes.recv().await {
        match change {
            super::Change::Taken(lease) => {
                bus.metrics.takeovers.inc();
                engine.start_routing(lease.workspace_id, lease.epoch);
                bus.taken.notify_waiters();
                let door = tokio::spawn(open_door(bus.clone(), engine.clone(), lease.workspace_id));
                match doors.insert(lease.workspace_id, door) {
                    Some(old) => old.abort(),
                    None => {
                        bus.metrics.leases_held.inc();
                    }
                }
            }
            super::Change::Lost(workspace_id) => {
                if let Some(door) = doors.remove(&workspace_id) {
                    bus.metrics.leases_held.dec();
                    door.abort();
                }
                // What ran here goes to the next owner, which routes what it does not yet.
                for conversation_id in engine.stop_routing(workspace_id).await {
                    bus.hand_over(Event::Recover {
                        workspace_id,
                        conversation_id,
                    });
                }
            }
            super::Change::Alive(nodes) => bus.nodes_alive(&nodes),
        }
    }
}

/// Subscribes to `subject`, trying again (with a growing pause) until NATS takes it.
async fn subscribe(bus: &Bus, subject: String) -> async_nats::Subscriber {
    let mut pause = Duration::from_millis(50);
    loop {
        match bus.client.subscribe(subject.clone()).await {
            Ok(subscriber) => return subscriber,
            Err(error) => {
                tracing::warn!(%error, subject, "not subscribed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Sends what the bus publishes, in order.
async fn publish(bus: Arc<Bus>, mut outgoing: mpsc::UnboundedReceiver<(String, Bytes)>) {
    while let Some((subject, payload)) = outgoing.recv().await {
        if let Err(error) = bus.client.publish(subject, payload).await {
            tracing::warn!(%error, "a cluster message was not sent");
        }
    }
}

/// One workspace's door, while this node holds it: every call and event for it.
async fn open_door(bus: Arc<Bus>, engine: Engine, workspace_id: WorkspaceId) {
    let mut calls = subscribe(&bus, bus.door(workspace_id)).await;
    while let Some(message) = calls.next().await {
        // The lease is gone, the door not yet closed (that follows the word of it): this and
        // what else waits here is left unanswered, for the next owner (the callers ask again,
        // or time out), rather than acknowledged unrouted or served from a node that would
        // only pass it on.
        if !bus.holds(workspace_id) {
            tracing::debug!(%workspace_id, "a call at the door of a workspace no longer held: the door closes");
            break;
        }
        let call: Call = match serde_json::from_slice(&message.payload) {
            Ok(call) => call,
            Err(error) => {
                tracing::warn!(%error, %workspace_id, "a call could not be read");
                continue;
            }
        };
        let reply = message.reply.clone();
        let answer = |answer: Answer| {
            if let (Some(reply), Ok(payload)) = (reply, serde_json::to_vec(&answer)) {
                bus.publish(reply.to_string(), payload.into());
            }
        };
        match call {
            // Handed to the directory before the answer: acknowledged once it has them.
            Call::Events { events } => {
                for event in events {
                    if !bus.seen_before(&event) {
                        engine.route(event);
                    }
                }
                answer(Answer::Done);
            }
            Call::Frame {
                origin,
                socket_id,
                frame,
            } => {
                if let Some(Served::Agent(socket)) = bus.served_lock().get(&(origin, socket_id)) {
                    socket.frame(frame);
                }
            }
            Call::Closed { origin, socket_id } => {
                if let Some(socket) = bus.served_lock().remove(&(origin, socket_id)) {
                    socket.close();
                }
            }
            call => {
                let (bus, engine) = (bus.clone(), engine.clone());
                let reply = message.reply.clone();
                tokio::spawn(async move {
                    let answer = serve(&bus, &engine, workspace_id, call).await;
                    if let (Some(reply), Ok(payload)) = (reply, serde_json::to_vec(&answer)) {
                        bus.publish(reply.to_string(), payload.into());
                    }
                });
            }
        }
    }
}

/// Carries out a call for another node, here (the owner).
async fn serve(bus: &Arc<Bus>, engine: &Engine, workspace_id: WorkspaceId, call: Call) -> Answer {
    let done = |result: Result<(), RoutingError>| match result {
        Ok(()) => Answer::Done,
        Err(error) => refused(&error),
    };
    match call {
        Call::Assign {
            conversation_id,
            agent_id,
        } => done(engine.assign(workspace_id, conversation_id, agent_id).await),
        Call::Reply {
            conversation_id,
            agent_id,
            reply,
        } => match engine
            .reply(workspace_id, conversation_id, agent_id, reply)
            .await
        {
            Ok(message) => Answer::Message { message },
            Err(error) => refused(&error),
        },
        Call::AgentChanged { agent_id } => done(engine.agent_changed(workspace_id, agent_id).await),
        Call::SignOut { agent_id, reason } => {
            done(engine.sign_out_agent(workspace_id, agent_id, &reason).await)
        }
        Call::Connect {
            agent_id,
            origin,
            socket_id,
        } => {
            let (outbox, frames, local_id) = bus.served_outbox();
            let socket = engine
                .connect_agent(workspace_id, agent_id, local_id, outbox)
                .await;
            let socket = socket.map(Served::Agent);
            serve_socket(bus, workspace_id, origin, socket_id, socket, frames)
        }
        Call::Subscribe {
            origin,
            socket_id,
            teams,
        } => {
            let (outbox, frames, local_id) = bus.served_outbox();
            let subscription = engine
                .subscribe_stats(workspace_id, local_id, teams, outbox)
                .await;
            let subscription = subscription.map(Served::Stats);
            serve_socket(bus, workspace_id, origin, socket_id, subscription, frames)
        }
        Call::Events { .. } | Call::Frame { .. } | Call::Closed { .. } => Answer::Done,
    }
}

/// A socket of `origin` the engine here opened (or refused): what the engine sends it is
/// forwarded until the engine drops its outbox (then the socket is closed there with an empty
/// message).
fn serve_socket(
    bus: &Arc<Bus>,
    workspace_id: WorkspaceId,
    origin: String,
    socket_id: u64,
    opened: Result<Served, RoutingError>,
    mut frames: mpsc::Receiver<String>,
) -> Answer {
    let served = match opened {
        Ok(served) => served,
        Err(error) => return refused(&error),
    };
    let subject = bus.socket_subject(&origin, workspace_id, socket_id);
    bus.served_lock()
        .insert((origin.clone(), socket_id), served);
    let forwarder = bus.clone();
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            forwarder.publish(subject.clone(), frame.into());
        }
        forwarder.served_lock().remove(&(origin, socket_id));
        forwarder.publish(subject, Bytes::new());
    });
    Answer::Connected {
        node: bus.node.clone(),
    }
}

/// Frames for this node's sockets whose agent (or dashboard) another node serves.
async fn feed_sockets(bus: Arc<Bus>) {
    let subject = format!("{}.sock.{}.*.*", bus.prefix, token(&bus.node));
    let mut frames = subscribe(&bus, subject).await;
    while let Some(message) = frames.next().await {
        let mut tokens = message.subject.rsplit('.');
        let (Some(Ok(socket_id)), Some(Ok(workspace_id))) = (
            tokens.next().map(str::parse::<u64>),
            tokens.next().map(str::parse::<WorkspaceId>),
        ) else {
            continue;
        };
        if message.payload.is_empty() {
            // Closed by its owner: dropping the outbox closes the socket with a close frame.
            bus.sinks_lock().remove(&socket_id);
            continue;
        }
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let known = {
            let mut sinks = bus.sinks_lock();
            match sinks.get(&socket_id).map(|sink| sink.outbox.try_send(text)) {
                // A full outbox drops the frame, as a local socket's does.
                Some(Ok(()) | Err(mpsc::error::TrySendError::Full(_))) => true,
                // Its socket ended without a word (its pump never ran): forgotten here.
                Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                    sinks.remove(&socket_id);
                    false
                }
                None => false,
            }
        };
        if !known {
            // Served for a socket that is gone here: the owner stops serving it.
            tracing::debug!(socket_id, %workspace_id, "frames for a socket closed here: the owner is told");
            let call = Call::Closed {
                origin: bus.node.clone(),
                socket_id,
            };
            bus.publish_call(workspace_id, &call);
        }
    }
}

/// Settings changed on another node: read them again here.
async fn read_broadcasts(bus: Arc<Bus>, engine: Engine) {
    let mut changes = subscribe(&bus, bus.broadcasts()).await;
    while let Some(message) = changes.next().await {
        match serde_json::from_slice::<Broadcast>(&message.payload) {
            Ok(Broadcast::TimeSettings { origin }) if origin != bus.node => {
                engine.time_settings_changed_here();
            }
            Ok(Broadcast::Automations { origin }) if origin != bus.node => {
                engine.automations_changed_here();
            }
            Ok(Broadcast::Tags {
                origin,
                conversation_id,
                tags,
            }) if origin != bus.node => engine.tags_replaced_here(conversation_id, tags),
            Ok(Broadcast::AccessEnded { origin, ended }) if origin != bus.node => {
                let _ = bus.access_ended.send(ended);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "a broadcast could not be read"),
        }
    }
}

/// Hands events to their owners: in order per workspace, a request at a time each (a batch of
/// what queued meanwhile), retried until acknowledged. Events of a workspace this node holds
/// go to its directory directly.
async fn hand_over(bus: Arc<Bus>, engine: Engine, mut handoffs: mpsc::UnboundedReceiver<Event>) {
    let mut queues: HashMap<WorkspaceId, VecDeque<Event>> = HashMap::new();
    let mut flying = FuturesUnordered::new();
    let mut busy: HashSet<WorkspaceId> = HashSet::new();
    let mut open = true;
    loop {
        tokio::select! {
            event = handoffs.recv(), if open => match event {
                Some(event) => queues.entry(event.workspace_id()).or_default().push_back(event),
                None => open = false,
            },
            Some((workspace_id, count)) = flying.next(), if !flying.is_empty() => {
                busy.remove(&workspace_id);
                bus.delivered(workspace_id, count);
            }
        }
        let ready: Vec<WorkspaceId> = queues
            .iter()
            .filter(|(workspace_id, queue)| !queue.is_empty() && !busy.contains(*workspace_id))
            .map(|(workspace_id, _)| *workspace_id)
            .collect();
        for workspace_id in ready {
            let Some(queue) = queues.get_mut(&workspace_id) else {
                continue;
            };
            let batch: Vec<Event> = queue
                .drain(..queue.len().min(MAX_EVENTS_PER_REQUEST))
                .collect();
            if queue.is_empty() {
                queues.remove(&workspace_id);
            }
            busy.insert(workspace_id);
            flying.push(deliver(bus.clone(), engine.clone(), workspace_id, batch));
        }
    }
}

/// One batch of a workspace's events, delivered whatever it takes (NATS away, no owner yet);
/// answers the workspace and how many.
async fn deliver(
    bus: Arc<Bus>,
    engine: Engine,
    workspace_id: WorkspaceId,
    events: Vec<Event>,
) -> (WorkspaceId, usize) {
    let count = events.len();
    let call = Call::Events { events };
    let mut pause = Duration::from_millis(20);
    loop {
        // Held here (taken meanwhile, or all along): no hop.
        if bus.holds(workspace_id) {
            let Call::Events { events } = call else {
                return (workspace_id, count);
            };
            for event in events {
                engine.route(event);
            }
            return (workspace_id, count);
        }
        let payload = match serde_json::to_vec(&call) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, %workspace_id, "events could not be encoded");
                return (workspace_id, count);
            }
        };
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(bus.patience));
        let sent = Instant::now();
        let answer = bus.client.send_request(bus.door(workspace_id), request);
        tokio::pin!(answer);
        let answer = loop {
            tokio::select! {
                answer = &mut answer => break Some(answer),
                // Taken here meanwhile: the owner asked (dead, maybe) will not be waited for.
                () = bus.taken.notified() => if bus.holds(workspace_id) {
                    break None;
                },
            }
        };
        let Some(answer) = answer else {
            continue;
        };
        match answer {
            Ok(_) => {
                let hop = sent.elapsed().as_secs_f64();
                bus.metrics.handoff_seconds.0.observe(hop);
                return (workspace_id, count);
            }
            Err(error) => {
                if error.kind() != async_nats::RequestErrorKind::NoResponders {
                    tracing::warn!(%error, %workspace_id, retry_in_ms = pause.as_millis() as u64, "events not handed to the workspace's owner; trying again");
                }
                bus.pause(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_travel_with_their_code() {
        for error in [
            RoutingError::OverCapacity,
            RoutingError::NotAssigned,
            RoutingError::NotFound("conversation"),
            RoutingError::NotFound("agent"),
            RoutingError::Conflict("the conversation has ended".into()),
            RoutingError::WindowClosed,
            RoutingError::Invalid("a reply is 1 to 4096 characters".into()),
            RoutingError::Unavailable,
        ] {
            let Answer::Refused { code, message } = refused(&error) else {
                panic!("not a refusal");
            };
            assert_eq!(refusal(&code, message), error);
        }
    }

    #[test]
    fn node_ids_are_one_subject_token() {
        assert_eq!(token("host.example:1234 x"), "host-example-1234-x");
        assert_eq!(token("node-1_a"), "node-1_a");
    }
}
