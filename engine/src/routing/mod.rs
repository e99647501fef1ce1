//! The routing engine: actors that own routing state, and the pure policy they decide with.
//!
//! ```text
//!  web ──► Engine ──► Directory ──► ConversationActor (one per open conversation, by id)
//!  ingest commit ──InboundHandoff──┘                  │ RequestAgent / Requeue / Release
//!                                                     ▼
//!                                     Supervisor (one per workspace: team queues + roster)
//!                                       choose_agent(roster, request) -> Decision
//!                                                     │ Offer
//!                                                     ▼
//!                                     ConversationActor ──Offered/Assigned──► AgentActor ──► sockets
//!  agent socket ──ClientFrame──► AgentActor ──Accept/Decline/Resolve/Transfer──► ConversationActor
//! ```
//!
//! Every actor runs on the engine's one thread (its own actix system), so messages between them
//! are cheap and their order is the order things happened; the audit writer records them in
//! that order. Each conversation writes its state as it changes, in order (its mailbox waits
//! for the write), so that a restart rebuilds every actor from the database: offers lapse,
//! waiting conversations queue again, and assigned ones stay with their agent (who gets the
//! disconnect grace period to come back).
//!
//! Everything outside the engine goes through [`Engine`]; the actors and their messages are
//! private to this crate. Nothing keeps a conversation actor's address: mail for a conversation
//! goes to the directory by id, which starts its actor from the database when it is not running
//! (it stops when quiet or resolved), so nothing is lost to a stopped actor.

mod agent;
mod conversation;
mod directory;
pub(crate) mod dispatch;
mod engine;
pub mod frames;
pub mod policy;
mod reply;
pub mod stats;
pub mod store;
mod supervisor;
pub mod wait;

pub use agent::Outbox;
pub use engine::{AgentSocket, Engine, StatsSubscription};
pub use reply::Reply;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::audit::{AuditRecord, AuditWriter};
use crate::presence::PresenceStore;

/// Every routing timer, so that tests run in milliseconds what production runs in seconds.
#[derive(Clone, Debug)]
pub struct RoutingSettings {
    /// What one unit of a team's `offer_timeout_secs` lasts (1 s in production).
    pub offer_timeout_unit: Duration,
    /// What one second of SLA targets and warnings and of a team's `auto_resolve_after_secs`
    /// lasts (1 s in production; calendars' hours are always real).
    pub time_unit: Duration,
    pub disconnect_grace: Duration,
    pub decline_cooldown: Duration,
    /// Conversations whose 24-hour window ends within this rise in priority.
    pub window_warning: Duration,
    /// Prefer the customer's last agent when eligible.
    pub sticky: bool,
    /// How the eligible agents are ranked.
    pub policy: crate::routing::policy::PolicyKind,
    /// How long a presence entry lives without a heartbeat (heartbeats come at a third of it).
    pub presence_ttl: Duration,
    /// Dashboards get at most one stats frame per this interval.
    pub stats_interval: Duration,
    /// The expected wait counts the conversations that ended within this (see [`wait`]).
    pub expected_wait_window: Duration,
    /// And says nothing until this many ended within it.
    pub expected_wait_min_samples: usize,
    /// An assigned conversation with no activity for this long stops its actor; the next event
    /// rebuilds it from the database.
    pub conversation_idle: Duration,
    /// Tell Meta an agent read the customer's messages when they open the conversation (the
    /// customer sees blue ticks).
    pub mark_read_on_open: bool,
    /// The first wait before a failed state write or load is tried again (it doubles, up to
    /// [`MAX_STORE_RETRY_FACTOR`] times this).
    pub store_retry: Duration,
    /// Conversation state writes and history reads under way at once, at most: a burst of
    /// thousands of conversations must queue here, not in the connection pool, where their
    /// waits would time out and starve the sign-ins and REST calls sharing it.
    pub max_concurrent_writes: usize,
}

/// The longest wait between two tries of a failed write, as a multiple of `store_retry`.
pub const MAX_STORE_RETRY_FACTOR: u32 = 32;

impl RoutingSettings {
    /// The wait before try `attempt + 1` (`attempt` counts from 1).
    pub fn store_retry_after(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(MAX_STORE_RETRY_FACTOR);
        self.store_retry.saturating_mul(factor)
    }
}

/// What every routing actor shares.
pub struct RoutingContext {
    pub db: DatabaseConnection,
    pub audit: AuditWriter,
    pub presence: Arc<dyn PresenceStore>,
    pub settings: RoutingSettings,
    /// How long each assignment decision takes (the pure choice, no IO), for `/metrics`.
    pub decision_seconds: prometheus_client::metrics::histogram::Histogram,
    /// How long evaluating one event's automation rules takes (the pure evaluation, no IO).
    pub rules_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Conversation actors running now (quiet ones stop), for `/metrics`.
    pub conversation_actors: prometheus_client::metrics::gauge::Gauge,
    /// Permits for conversations' database work (`settings.max_concurrent_writes`).
    pub writes: tokio::sync::Semaphore,
    /// Teams' calendars, SLA policies and inactivity rules, cached.
    pub times: Arc<crate::time::settings::TeamTimes>,
    /// Workspaces' automation rules, cached.
    pub automations: Arc<crate::automation::settings::Automations>,
    /// The epochs of the workspace leases this node holds; `None` on a single node.
    pub epochs: Option<Arc<crate::cluster::Epochs>>,
}

impl RoutingContext {
    /// The lease epoch this node routes `workspace_id` under, which every state write of its
    /// conversations carries (shared/DESIGN.md, "Beyond one machine"). One node holds no
    /// lease and writes no epoch (`Ok(None)`): nothing is fenced. A node of a cluster that does
    /// not hold the workspace's lease (it lost it, or never had it) may write nothing.
    pub fn owner_epoch(
        &self,
        workspace_id: crate::ids::WorkspaceId,
    ) -> Result<Option<u64>, NotOwner> {
        match &self.epochs {
            None => Ok(None),
            Some(epochs) => epochs.get(workspace_id).map(Some).ok_or(NotOwner),
        }
    }

    /// Whether this node is one of a cluster (it routes only the workspaces whose lease it holds).
    pub fn clustered(&self) -> bool {
        self.epochs.is_some()
    }

    pub fn new(
        db: DatabaseConnection,
        audit: AuditWriter,
        presence: Arc<dyn PresenceStore>,
        settings: RoutingSettings,
        epochs: Option<Arc<crate::cluster::Epochs>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            audit,
            presence,
            // 1 µs to about 33 ms.
            decision_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_001, 2.0, 16),
            ),
            // 1 µs to about 33 ms.
            rules_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_001, 2.0, 16),
            ),
            conversation_actors: Default::default(),
            writes: tokio::sync::Semaphore::new(settings.max_concurrent_writes.max(1)),
            times: Arc::new(crate::time::settings::TeamTimes::new(settings.time_unit)),
            automations: Arc::default(),
            settings,
            epochs,
        })
    }

    pub fn audit(&self, event: AuditRecord) {
        self.audit.record(event);
    }
}

/// This node does not hold the workspace's lease: another node routes it (or nobody yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotOwner;

/// Why a routing request was refused, for the API and the socket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("the agent has no free capacity")]
    OverCapacity,
    #[error("the conversation is not assigned to this agent")]
    NotAssigned,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the routing engine is unavailable")]
    Unavailable,
    #[error("the 24-hour customer-service window is closed: send an approved template instead")]
    WindowClosed,
    #[error("{0}")]
    Invalid(String),
}

impl RoutingError {
    /// The error code of CONTRACT.md for this refusal.
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            RoutingError::OverCapacity => ErrorCode::OverCapacity,
            RoutingError::NotAssigned => ErrorCode::NotAssigned,
            RoutingError::NotFound(_) => ErrorCode::NotFound,
            RoutingError::Conflict(_) => ErrorCode::Conflict,
            RoutingError::Unavailable => ErrorCode::Unavailable,
            RoutingError::WindowClosed => ErrorCode::WindowClosed,
            RoutingError::Invalid(_) => ErrorCode::ValidationFailed,
        }
    }
}
