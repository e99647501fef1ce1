//! The group-commit writer: every webhook's items, durably stored exactly once before Meta hears 200.
//!
//! Webhook handlers [`IngestWriter::submit`] their decoded items and wait. One task drains
//! whatever has queued up meanwhile and writes it all in one transaction, so that a burst of
//! concurrent webhooks costs one commit, not one each. If that transaction fails, each job is
//! retried alone so that one bad request cannot fail its neighbours; a job whose transaction
//! failed is answered with an error (the handler answers 503 and Meta retries). Only after the
//! commit are new inbound messages handed to the engine through [`InboundHandoff`].
//!
//! - `tx`: one transaction's writer (`TxWriter`): the batch's look-ups done up front, each item
//!   stored, the batch's rows inserted at the end;
//! - `messages`, `conversations`, `statuses`: what storing a message (and its reaction), its
//!   contact and conversation, and a delivery status does;
//! - `batch`: multi-row statements within the databases' limits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ChannelId, ConversationId, MessageId, TeamId, WorkspaceId};
use crate::meta::{DeliveryStatus, Item};
use crate::store::entity::undecodable_item;

mod batch;
mod conversations;
mod messages;
mod statuses;
mod tx;

pub use statuses::reconcile_pending_statuses;
use tx::TxWriter;

/// WhatsApp's customer-service window: free-form replies only within 24 h of the last inbound message.
pub const CUSTOMER_SERVICE_WINDOW: ChronoDuration = ChronoDuration::hours(24);

/// A stored inbound message the engine must route, handed over after its commit.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct InboundEvent {
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub channel_id: ChannelId,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// True when this message opened a conversation (new, or reopened within the window).
    pub opened: bool,
    /// The stored message, as agents see it.
    pub message: crate::inbox::MessageView,
    /// When `opened`: the conversation as routing needs it, from the rows just written, so
    /// that the engine starts its actor without reading them back. (Not handed to another
    /// node: the owner reads them.)
    #[serde(skip)]
    pub conversation: Option<Box<crate::routing::store::StoredConversation>>,
}

/// A delivery status that moved one of our messages forward, handed over after its commit.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StatusEvent {
    pub workspace_id: WorkspaceId,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub wamid: String,
    pub status: DeliveryStatus,
    /// Meta's errors, for `failed`.
    pub error: Option<Value>,
}

/// The one seam between ingest and routing: called once per newly stored inbound message (and
/// per status that moved a message forward), after it is committed, in commit order.
/// Implementations must not block.
pub trait InboundHandoff: Send + Sync + 'static {
    fn inbound(&self, event: InboundEvent);

    fn status(&self, _event: StatusEvent) {}
}

/// A handoff that only logs: what runs before the routing engine is attached.
pub struct LogHandoff;

impl InboundHandoff for LogHandoff {
    fn inbound(&self, event: InboundEvent) {
        tracing::debug!(conversation_id = %event.conversation_id, message_id = %event.message_id, opened = event.opened, "inbound message stored");
    }
}

/// What one submission did, for the handler's log line and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub messages_stored: u64,
    pub statuses_stored: u64,
    pub duplicates: u64,
    pub unrouted: u64,
    pub undecodable: u64,
    pub conversations_opened: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the database did not take the write: {0}")]
    Database(#[from] DbErr),
    #[error("the ingest writer is overloaded")]
    Overloaded,
    #[error("the ingest writer has stopped")]
    Stopped,
}

/// Items of one webhook body, and what identifies the body (for keys of raw leftovers).
pub struct Submission {
    pub items: Vec<Item>,
    /// SHA-256 of the exact body bytes: makes replays of undecodable items idempotent.
    pub body_sha256: [u8; 32],
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<IngestReport, IngestError>>,
}

/// Tuning of the writer; defaults suit production, tests shrink them.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// Jobs waiting for the writer; past this, webhooks are answered 503 at once.
    pub queue_capacity: usize,
    /// Most jobs in one transaction.
    pub max_batch: usize,
    /// A customer message this soon after a resolve reopens that conversation.
    pub reopen_window: ChronoDuration,
    /// The tags erased messages' wamids were replaced by: looked up beside each wamid.
    pub eraser: crate::crypto::WamidEraser,
}

/// A cloneable handle to the writer task.
#[derive(Clone)]
pub struct IngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writer task on the current tokio runtime. It stops when every handle is dropped.
    pub fn spawn(
        db: DatabaseConnection,
        handoff: Arc<dyn InboundHandoff>,
        settings: IngestSettings,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(settings.queue_capacity.max(1));
        tokio::spawn(run_writer(db, handoff, queue, settings));
        Self { jobs }
    }

    /// Stores the items durably; returns once they are committed (or could not be).
    pub async fn submit(&self, submission: Submission) -> Result<IngestReport, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { submission, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => IngestError::Stopped,
            })?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }

    /// Waits until everything submitted before this call is committed (or refused): an empty
    /// submission queues behind them, and the writer answers in order. For shutdown.
    pub async fn flush(&self) {
        let (reply, answer) = oneshot::channel();
        let barrier = Job {
            submission: Submission {
                items: Vec::new(),
                body_sha256: [0; 32],
            },
            reply,
        };
        if self.jobs.send(barrier).await.is_ok() {
            let _ = answer.await;
        }
    }
}

async fn run_writer(
    db: DatabaseConnection,
    handoff: Arc<dyn InboundHandoff>,
    mut queue: mpsc::Receiver<Job>,
    settings: IngestSettings,
) {
    let max_batch = settings.max_batch.max(1);
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let submissions: Vec<&Submission> = jobs.iter().map(|job| &job.submission).collect();
        match write(&db, &submissions, &settings).await {
            Ok((reports, events)) => {
                for (job, report) in jobs.into_iter().zip(reports) {
                    let _ = job.reply.send(Ok(report));
                }
                events.hand_to(handoff.as_ref());
            }
            Err(error) if jobs.len() == 1 => {
                tracing::warn!(%error, "ingest transaction failed");
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(error.into()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, jobs = jobs.len(), "group commit failed; retrying each job alone");
                for job in jobs {
                    let result = write(&db, &[&job.submission], &settings).await;
                    match result {
                        Ok((mut reports, events)) => {
                            let _ = job.reply.send(Ok(reports.pop().unwrap_or_default()));
                            events.hand_to(handoff.as_ref());
                        }
                        Err(error) => {
                            let _ = job.reply.send(Err(error.into()));
                        }
                    }
                }
            }
        }
    }
}

/// One transaction for all submissions: one report per submission, and the events to hand off.
async fn write(
    db: &DatabaseConnection,
    submissions: &[&Submission],
    settings: &IngestSettings,
) -> Result<(Vec<IngestReport>, Handoffs), DbErr> {
    let txn = crate::store::begin_write(db).await?;
    let mut writer = TxWriter {
        txn: &txn,
        channels: HashMap::new(),
        teams: HashMap::new(),
        messages: HashMap::new(),
        contacts: HashMap::new(),
        open: HashMap::new(),
        windows: HashMap::new(),
        known_statuses: HashSet::new(),
        pending_messages: Vec::new(),
        pending_by_id: HashMap::new(),
        pending_statuses: Vec::new(),
        submission: 0,
        events: Vec::new(),
        statuses: Vec::new(),
        reopen_window: settings.reopen_window,
        eraser: settings.eraser.clone(),
    };
    writer.prefetch(submissions).await?;
    let mut reports = Vec::with_capacity(submissions.len());
    for (number, submission) in submissions.iter().enumerate() {
        writer.submission = number;
        let mut report = IngestReport::default();
        for (index, item) in submission.items.iter().enumerate() {
            writer
                .store_item(
                    item,
                    &leftover_key(&submission.body_sha256, index),
                    &mut report,
                )
                .await?;
        }
        reports.push(report);
    }
    writer.flush_messages(&mut reports).await?;
    writer.flush_statuses(&mut reports).await?;
    writer.flush_windows().await?;
    let events = Handoffs {
        inbound: std::mem::take(&mut writer.events),
        statuses: std::mem::take(&mut writer.statuses),
    };
    txn.commit().await?;
    Ok((reports, events))
}

/// What a committed transaction hands to routing.
struct Handoffs {
    inbound: Vec<InboundEvent>,
    statuses: Vec<StatusEvent>,
}

impl Handoffs {
    fn hand_to(self, handoff: &dyn InboundHandoff) {
        self.inbound
            .into_iter()
            .for_each(|event| handoff.inbound(event));
        self.statuses
            .into_iter()
            .for_each(|event| handoff.status(event));
    }
}

/// A stable key for a raw leftover item: the same body replayed gives the same key.
fn leftover_key(body_sha256: &[u8; 32], index: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body_sha256);
    hasher.update((index as u64).to_be_bytes());
    hex::encode(hasher.finalize())
}

/// SHA-256 of a raw body, in hex.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Keeps a signed body that is not JSON, for an operator (idempotent on replay).
pub async fn store_undecodable_body(
    db: &DatabaseConnection,
    body: &[u8],
    body_sha256: &[u8; 32],
    reason: &str,
) -> Result<(), DbErr> {
    let row = undecodable_item::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        phone_number_id: Set(None),
        reason: Set(reason.to_owned()),
        raw: Set(body.to_vec()),
        raw_sha256: Set(hex::encode(body_sha256)),
        created_at: Set(Utc::now()),
    };
    undecodable_item::Entity::insert(row)
        .on_conflict_do_nothing_on([undecodable_item::Column::RawSha256])
        .exec_without_returning(db)
        .await?;
    Ok(())
}
