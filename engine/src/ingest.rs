//! The group-commit writer: every webhook's items, durably stored exactly once before Meta hears 200.
//!
//! Webhook handlers [`IngestWriter::submit`] their decoded items and wait. One task drains
//! whatever has queued up meanwhile and writes it all in one transaction, so that a burst of
//! concurrent webhooks costs one commit, not one each. If that transaction fails, each job is
//! retried alone so that one bad request cannot fail its neighbours; a job whose transaction
//! failed is answered with an error (the handler answers 503 and Meta retries). Only after the
//! commit are new inbound messages handed to the engine through [`InboundHandoff`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect, TryInsertResult,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ChannelId, ContactId, ConversationId, MessageId, TeamId, WorkspaceId};
use crate::meta::{InboundMessage, Item, StatusUpdate, status_rank};
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::message::MessageDirection;
use crate::store::entity::{
    channel, contact, conversation, message, message_status, team, undecodable_item, unrouted_item,
};

/// WhatsApp's customer-service window: free-form replies only within 24 h of the last inbound message.
pub const CUSTOMER_SERVICE_WINDOW: ChronoDuration = ChronoDuration::hours(24);

/// A stored inbound message the engine must route, handed over after its commit.
#[derive(Clone, Debug)]
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
    /// that the engine starts its actor without reading them back.
    pub conversation: Option<Box<crate::routing::store::StoredConversation>>,
}

/// A delivery status that moved one of our messages forward, handed over after its commit.
#[derive(Clone, Debug)]
pub struct StatusEvent {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub wamid: String,
    pub status: String,
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

/// Rows per multi-row statement: far below the bind-parameter limits of Postgres (65,535) and
/// SQLite (32,766) at the widest row (messages, 19 columns).
const ROWS_PER_STATEMENT: usize = 500;

/// Bytes per multi-row statement, at most (about). sqlx 0.9.0 leaves Nagle's algorithm on
/// (launchbadge/sqlx#4335): a statement larger than one TLS record (16 KiB) leaves in more
/// than one write, and its tail then waits for the server's delayed ACK, ~40 ms a statement.
/// Measured: at 1,600 webhooks/s over TLS, p99 1.5 s with 500-row statements; in one write
/// each, no wait. Without TLS the limit does not matter, and costs little.
const STATEMENT_BYTES: usize = 12 * 1024;

/// Fixed bytes of a row besides its text and raw JSON (ids, timestamps, kinds), roughly.
const ROW_OVERHEAD_BYTES: usize = 256;

/// Where the chunk of rows starting at `start` ends: as many as fit [`ROWS_PER_STATEMENT`]
/// and [`STATEMENT_BYTES`], and at least one.
fn chunk_end(sizes: &[usize], start: usize) -> usize {
    let mut end = start;
    let mut bytes = 0;
    while end < sizes.len() && end - start < ROWS_PER_STATEMENT {
        bytes += sizes[end];
        if bytes > STATEMENT_BYTES && end > start {
            break;
        }
        end += 1;
    }
    end
}

/// Rows whose (first, second) column pair is one of `keys`, as one condition per first value
/// (`first = ? AND second IN (…)`), for an index that leads with both (a number and its
/// wamids; a channel and its contacts). Two separate `IN` lists let Postgres match the few
/// first values on the index and then filter every row under them, a scan that grew with the
/// history (4-5 ms a look-up at 10,000 messages, seen in the statement log).
fn by_pairs<C: ColumnTrait>(keys: &[(String, String)], first: C, second: C) -> sea_orm::Condition {
    let mut grouped: HashMap<&str, Vec<&str>> = HashMap::new();
    for (a, b) in keys {
        grouped.entry(a).or_default().push(b);
    }
    let mut grouped: Vec<_> = grouped.into_iter().collect();
    grouped.sort();
    grouped
        .into_iter()
        .fold(sea_orm::Condition::any(), |any, (a, mut bs)| {
            bs.sort_unstable();
            bs.dedup();
            any.add(
                sea_orm::Condition::all()
                    .add(first.eq(a))
                    .add(second.is_in(bs)),
            )
        })
}

/// The length of `value` as JSON, without building the string.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A row (a message or a status) waiting for the batch's multi-row insert.
struct Pending<A> {
    row: A,
    /// Its primary key, fresh: finds it again if another process's row won the unique index.
    id: String,
    /// About how many bytes the row adds to a statement.
    bytes: usize,
    /// The submission that stored it (reports are per submission).
    submission: usize,
    /// Its message opened a conversation (messages only).
    opened: bool,
}

/// Inserts `pending`, one statement per chunk of [`chunk_end`], skipping rows whose key the
/// unique index `conflict` already holds (another process stored them first). Returns the
/// ids of the rows skipped.
async fn insert_pending<A>(
    txn: &DatabaseTransaction,
    pending: &[Pending<A>],
    conflict: &[<A::Entity as EntityTrait>::Column],
    id_column: <A::Entity as EntityTrait>::Column,
) -> Result<HashSet<String>, DbErr>
where
    A: ActiveModelTrait + Send,
{
    let sizes: Vec<usize> = pending.iter().map(|p| p.bytes).collect();
    let mut skipped = HashSet::new();
    let mut start = 0;
    while start < pending.len() {
        let end = chunk_end(&sizes, start);
        let chunk = &pending[start..end];
        start = end;
        let rows: Vec<A> = chunk.iter().map(|p| p.row.clone()).collect();
        let inserted = A::Entity::insert_many(rows)
            .on_conflict_do_nothing_on(conflict.iter().copied())
            .exec_without_returning(txn)
            .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n as usize == chunk.len()) {
            continue;
        }
        // Rare (two processes raced): find which of our fresh ids did not go in.
        let ids: Vec<String> = chunk.iter().map(|p| p.id.clone()).collect();
        let present: HashSet<String> = A::Entity::find()
            .select_only()
            .column(id_column)
            .filter(id_column.is_in(ids.clone()))
            .into_tuple::<String>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        skipped.extend(ids.into_iter().filter(|id| !present.contains(id)));
    }
    Ok(skipped)
}

/// A customer key within a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ContactKey {
    UserId(String),
    Phone(String),
}

/// One transaction's writes, with what the whole batch needs looked up up front (a few queries
/// per batch instead of several per message). A key in a cache is authoritative: `None` means
/// "looked up, absent". Keys not prefetched fall back to a query.
struct TxWriter<'t> {
    txn: &'t DatabaseTransaction,
    /// Channels by phone_number_id.
    channels: HashMap<String, Option<channel::Model>>,
    /// The channels' teams by id (their offer settings go with a new conversation).
    teams: HashMap<String, Option<team::Model>>,
    /// Stored messages by (phone_number_id, wamid): duplicates and status targets.
    messages: HashMap<(String, String), Option<message::Model>>,
    /// Contacts by (workspace_id, key).
    contacts: HashMap<(String, ContactKey), Option<contact::Model>>,
    /// Open conversations by (channel_id, contact_id), for the contacts prefetched.
    open: HashMap<(String, String), Option<conversation::Model>>,
    /// The latest inbound time per conversation, written once per batch.
    windows: HashMap<String, DateTime<Utc>>,
    /// Statuses already stored, by (phone_number_id, wamid, status), for this batch's wamids.
    known_statuses: HashSet<(String, String, String)>,
    /// New messages and statuses, inserted together at the end of the batch (one statement
    /// per few hundred rows instead of one per row: the writer's round trips were its cost).
    pending_messages: Vec<Pending<message::ActiveModel>>,
    /// Index into `pending_messages` by message id: a status or reaction for a message of this
    /// same batch changes the row before it is written.
    pending_by_id: HashMap<String, usize>,
    pending_statuses: Vec<Pending<message_status::ActiveModel>>,
    /// The submission whose items are being stored (reports are per submission).
    submission: usize,
    events: Vec<InboundEvent>,
    statuses: Vec<StatusEvent>,
    reopen_window: ChronoDuration,
    eraser: crate::crypto::WamidEraser,
}

impl TxWriter<'_> {
    /// Looks up, with one query each, the channels, stored messages, contacts and open
    /// conversations that this batch's items name.
    async fn prefetch(&mut self, submissions: &[&Submission]) -> Result<(), DbErr> {
        let items = submissions.iter().flat_map(|s| s.items.iter());
        let mut numbers = Vec::new();
        let mut wamids: Vec<(String, String)> = Vec::new();
        let mut status_wamids: Vec<(String, String)> = Vec::new();
        let mut senders = Vec::new();
        for item in items {
            match item {
                Item::Message(m) => {
                    numbers.push(m.phone_number_id.clone());
                    wamids.push((m.phone_number_id.clone(), m.wamid.clone()));
                    senders.push((m.phone_number_id.clone(), m.sender.clone()));
                }
                Item::Status(s) => {
                    numbers.push(s.phone_number_id.clone());
                    wamids.push((s.phone_number_id.clone(), s.wamid.clone()));
                    status_wamids.push((s.phone_number_id.clone(), s.wamid.clone()));
                }
                _ => {}
            }
        }
        if numbers.is_empty() {
            return Ok(());
        }
        numbers.sort();
        numbers.dedup();
        let channels = channel::Entity::find()
            .filter(channel::Column::PhoneNumberId.is_in(numbers.clone()))
            .filter(channel::Column::Active.eq(true))
            .all(self.txn)
            .await?;
        for number in &numbers {
            let found = channels
                .iter()
                .find(|c| &c.phone_number_id == number)
                .cloned();
            self.channels.insert(number.clone(), found);
        }
        let mut team_ids: Vec<String> = channels.iter().map(|c| c.team_id.clone()).collect();
        team_ids.sort();
        team_ids.dedup();
        let teams = team::Entity::find()
            .filter(team::Column::Id.is_in(team_ids.clone()))
            .all(self.txn)
            .await?;
        for id in team_ids {
            let found = teams.iter().find(|t| t.id == id).cloned();
            self.teams.insert(id, found);
        }

        // An erased message is stored under its tag: on a channel with erased messages, look
        // for both forms, and file what is found under the wamid Meta sends (its retries stay
        // duplicates). Every other channel's look-up stays as it was.
        let erased_numbers: HashSet<&String> = numbers
            .iter()
            .filter(|number| {
                matches!(self.channels.get(*number), Some(Some(channel)) if channel.has_erased_messages)
            })
            .collect();
        let mut by_tag: HashMap<(String, String), String> = HashMap::new();
        let mut wanted = wamids.clone();
        for (number, wamid) in wamids
            .iter()
            .filter(|(number, _)| erased_numbers.contains(number))
        {
            let tag = (number.clone(), self.eraser.tag(number, wamid));
            wanted.push(tag.clone());
            by_tag.insert(tag, wamid.clone());
        }
        let stored = message::Entity::find()
            .filter(by_pairs(
                &wanted,
                message::Column::PhoneNumberId,
                message::Column::Wamid,
            ))
            .all(self.txn)
            .await?;
        for key in wamids {
            self.messages.entry(key).or_insert(None);
        }
        for row in stored {
            if let Some(wamid) = row.wamid.clone() {
                let key = (row.phone_number_id.clone(), wamid);
                let key = match by_tag.get(&key) {
                    Some(raw) => (row.phone_number_id.clone(), raw.clone()),
                    None => key,
                };
                self.messages.insert(key, Some(row));
            }
        }
        if !status_wamids.is_empty() {
            let mut wanted = status_wamids.clone();
            wanted.extend(
                status_wamids
                    .iter()
                    .filter(|(number, _)| erased_numbers.contains(number))
                    .map(|(number, wamid)| (number.clone(), self.eraser.tag(number, wamid))),
            );
            let known = message_status::Entity::find()
                .filter(by_pairs(
                    &wanted,
                    message_status::Column::PhoneNumberId,
                    message_status::Column::Wamid,
                ))
                .all(self.txn)
                .await?;
            self.known_statuses.extend(known.into_iter().map(|row| {
                let wamid = by_tag
                    .get(&(row.phone_number_id.clone(), row.wamid.clone()))
                    .cloned()
                    .unwrap_or(row.wamid);
                (row.phone_number_id, wamid, row.status)
            }));
        }

        let mut workspaces: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
        for (number, sender) in &senders {
            let Some(Some(channel)) = self.channels.get(number) else {
                continue;
            };
            let keys = workspaces.entry(channel.workspace_id.clone()).or_default();
            keys.0.extend(sender.user_id.clone());
            keys.1.extend(sender.phone.clone());
        }
        let mut contact_ids = Vec::new();
        for (workspace, (user_ids, phones)) in workspaces {
            let found = contact::Entity::find()
                .filter(contact::Column::WorkspaceId.eq(workspace.clone()))
                .filter(
                    sea_orm::Condition::any()
                        .add(contact::Column::UserId.is_in(user_ids.clone()))
                        .add(contact::Column::Phone.is_in(phones.clone())),
                )
                .all(self.txn)
                .await?;
            for user_id in user_ids {
                self.contacts
                    .insert((workspace.clone(), ContactKey::UserId(user_id)), None);
            }
            for phone in phones {
                self.contacts
                    .insert((workspace.clone(), ContactKey::Phone(phone)), None);
            }
            for row in found {
                contact_ids.push(row.id.clone());
                self.remember_contact(&row);
            }
        }
        if contact_ids.is_empty() {
            return Ok(());
        }
        let channel_ids: Vec<String> = channels.iter().map(|c| c.id.clone()).collect();
        let pairs: Vec<(String, String)> = channel_ids
            .iter()
            .flat_map(|channel| {
                contact_ids
                    .iter()
                    .map(|contact| (channel.clone(), contact.clone()))
            })
            .collect();
        let open = conversation::Entity::find()
            .filter(by_pairs(
                &pairs,
                conversation::Column::ChannelId,
                conversation::Column::ContactId,
            ))
            .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
            .all(self.txn)
            .await?;
        for channel_id in &channel_ids {
            for contact_id in &contact_ids {
                self.open
                    .insert((channel_id.clone(), contact_id.clone()), None);
            }
        }
        for row in open {
            self.open
                .insert((row.channel_id.clone(), row.contact_id.clone()), Some(row));
        }
        Ok(())
    }

    fn remember_contact(&mut self, row: &contact::Model) {
        if let Some(user_id) = &row.user_id {
            self.contacts.insert(
                (
                    row.workspace_id.clone(),
                    ContactKey::UserId(user_id.clone()),
                ),
                Some(row.clone()),
            );
        }
        if let Some(phone) = &row.phone {
            self.contacts.insert(
                (row.workspace_id.clone(), ContactKey::Phone(phone.clone())),
                Some(row.clone()),
            );
        }
    }

    /// The contact with `key`, from the prefetch when it covered the key.
    async fn contact_by(
        &self,
        workspace_id: &str,
        key: ContactKey,
    ) -> Result<Option<contact::Model>, DbErr> {
        if let Some(cached) = self.contacts.get(&(workspace_id.to_owned(), key.clone())) {
            return Ok(cached.clone());
        }
        let column = match &key {
            ContactKey::UserId(user_id) => contact::Column::UserId.eq(user_id.clone()),
            ContactKey::Phone(phone) => contact::Column::Phone.eq(phone.clone()),
        };
        contact::Entity::find()
            .filter(contact::Column::WorkspaceId.eq(workspace_id))
            .filter(column)
            .one(self.txn)
            .await
    }

    /// Writes each touched conversation's 24-hour window once.
    /// (One statement per few hundred conversations, a `CASE` on the id.)
    async fn flush_windows(&mut self) -> Result<(), DbErr> {
        use sea_orm::sea_query::{CaseStatement, Expr};
        let now = Utc::now();
        let windows: Vec<(String, DateTime<Utc>)> = self.windows.drain().collect();
        // Each conversation costs about 200 bytes of statement (its id three times, two times).
        for chunk in windows.chunks(STATEMENT_BYTES / 200) {
            let mut last_inbound = CaseStatement::new();
            let mut expires = CaseStatement::new();
            for (id, at) in chunk {
                last_inbound = last_inbound.case(
                    conversation::Column::Id.eq(id.clone()),
                    Expr::value(Some(*at)),
                );
                expires = expires.case(
                    conversation::Column::Id.eq(id.clone()),
                    Expr::value(Some(*at + CUSTOMER_SERVICE_WINDOW)),
                );
            }
            conversation::Entity::update_many()
                .col_expr(conversation::Column::LastInboundAt, last_inbound.into())
                .col_expr(conversation::Column::WindowExpiresAt, expires.into())
                .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
                .filter(conversation::Column::Id.is_in(chunk.iter().map(|(id, _)| id.clone())))
                .exec(self.txn)
                .await?;
        }
        Ok(())
    }

    async fn store_item(
        &mut self,
        item: &Item,
        leftover_key: &str,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        match item {
            Item::Message(message) => self.store_message(message, report).await,
            Item::Status(status) => self.store_status(status, report).await,
            Item::Undecodable {
                phone_number_id,
                reason,
                raw,
            } => {
                tracing::warn!(phone_number_id, reason, "undecodable webhook item kept raw");
                self.store_leftover(phone_number_id.clone(), reason, raw, leftover_key, report)
                    .await
            }
            Item::MetaError {
                phone_number_id,
                code,
                title,
                raw,
            } => {
                tracing::warn!(phone_number_id, code, title, "meta reported an error");
                let reason = format!(
                    "meta error {}: {}",
                    code.map_or_else(|| "?".to_owned(), |code| code.to_string()),
                    title.as_deref().unwrap_or("")
                );
                self.store_leftover(phone_number_id.clone(), &reason, raw, leftover_key, report)
                    .await
            }
        }
    }

    async fn channel(&mut self, phone_number_id: &str) -> Result<Option<channel::Model>, DbErr> {
        if let Some(cached) = self.channels.get(phone_number_id) {
            return Ok(cached.clone());
        }
        let found = channel::Entity::find()
            .filter(channel::Column::PhoneNumberId.eq(phone_number_id))
            .filter(channel::Column::Active.eq(true))
            .one(self.txn)
            .await?;
        self.channels
            .insert(phone_number_id.to_owned(), found.clone());
        Ok(found)
    }

    async fn store_unrouted(
        &self,
        phone_number_id: &str,
        kind: &str,
        item_key: String,
        raw: &Value,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let row = unrouted_item::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            phone_number_id: Set(phone_number_id.to_owned()),
            kind: Set(kind.to_owned()),
            item_key: Set(item_key),
            raw: Set(raw.clone()),
            created_at: Set(Utc::now()),
        };
        let inserted = unrouted_item::Entity::insert(row)
            .on_conflict_do_nothing_on([
                unrouted_item::Column::PhoneNumberId,
                unrouted_item::Column::Kind,
                unrouted_item::Column::ItemKey,
            ])
            .exec_without_returning(self.txn)
            .await?;
        count(inserted, &mut report.unrouted, &mut report.duplicates);
        Ok(())
    }

    async fn store_leftover(
        &self,
        phone_number_id: Option<String>,
        reason: &str,
        raw: &Value,
        key: &str,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let row = undecodable_item::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            phone_number_id: Set(phone_number_id),
            reason: Set(reason.to_owned()),
            raw: Set(serde_json::to_vec(raw).unwrap_or_default()),
            raw_sha256: Set(key.to_owned()),
            created_at: Set(Utc::now()),
        };
        let inserted = undecodable_item::Entity::insert(row)
            .on_conflict_do_nothing_on([undecodable_item::Column::RawSha256])
            .exec_without_returning(self.txn)
            .await?;
        count(inserted, &mut report.undecodable, &mut report.duplicates);
        Ok(())
    }

    async fn store_message(
        &mut self,
        inbound: &InboundMessage,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let Some(channel) = self.channel(&inbound.phone_number_id).await? else {
            return self
                .store_unrouted(
                    &inbound.phone_number_id,
                    "message",
                    inbound.wamid.clone(),
                    &inbound.raw,
                    report,
                )
                .await;
        };
        let key = (inbound.phone_number_id.clone(), inbound.wamid.clone());
        let already = match self.messages.get(&key) {
            Some(cached) => cached.is_some(),
            None => message::Entity::find()
                .filter(message::Column::PhoneNumberId.eq(&inbound.phone_number_id))
                .filter(message::Column::Wamid.eq(&inbound.wamid))
                .one(self.txn)
                .await?
                .is_some(),
        };
        if already {
            report.duplicates += 1;
            return Ok(());
        }
        let (contact, new_contact) = self.upsert_contact(&channel.workspace_id, inbound).await?;
        let (conversation, opened) = self
            .open_conversation(&channel, &contact, new_contact, inbound)
            .await?;

        let now = Utc::now();
        let message_id = MessageId::new();
        let context_wamid = inbound
            .original_wamid
            .clone()
            .or_else(|| inbound.reaction.as_ref().map(|r| r.target_wamid.clone()))
            .or_else(|| inbound.context_wamid.clone());
        let row = message::ActiveModel {
            id: Set(message_id.to_string()),
            workspace_id: Set(channel.workspace_id.clone()),
            conversation_id: Set(conversation.id.clone()),
            channel_id: Set(channel.id.clone()),
            phone_number_id: Set(inbound.phone_number_id.clone()),
            wamid: Set(Some(inbound.wamid.clone())),
            direction: Set(MessageDirection::In),
            kind: Set(inbound.kind.clone()),
            text: Set(inbound.text.clone()),
            media_id: Set(inbound.media_id.clone()),
            context_wamid: Set(context_wamid.clone()),
            reaction: Set(None),
            status: Set("received".to_owned()),
            error: Set(None),
            raw: Set(inbound.raw.clone()),
            provider_timestamp: Set(inbound.timestamp),
            created_at: Set(now),
            updated_at: Set(now),
            automated: Set(false),
            button_payload: Set(inbound.button_payload.clone()),
        };
        let stored = message::Model {
            id: message_id.to_string(),
            workspace_id: channel.workspace_id.clone(),
            conversation_id: conversation.id.clone(),
            channel_id: channel.id.clone(),
            phone_number_id: inbound.phone_number_id.clone(),
            wamid: Some(inbound.wamid.clone()),
            direction: MessageDirection::In,
            kind: inbound.kind.clone(),
            text: inbound.text.clone(),
            media_id: inbound.media_id.clone(),
            context_wamid,
            reaction: None,
            status: "received".to_owned(),
            error: None,
            raw: Value::Null,
            provider_timestamp: inbound.timestamp,
            created_at: now,
            updated_at: now,
            automated: false,
            button_payload: inbound.button_payload.clone(),
        };
        let view: crate::inbox::MessageView = stored.clone().into();
        self.messages.insert(key, Some(stored));
        // Counted now; `flush_messages` takes it back if another process stored it first.
        report.messages_stored += 1;
        if opened {
            report.conversations_opened += 1;
        }
        self.pending_by_id
            .insert(message_id.to_string(), self.pending_messages.len());
        self.pending_messages.push(Pending {
            row,
            bytes: ROW_OVERHEAD_BYTES
                + inbound.text.as_ref().map_or(0, String::len)
                + json_len(&inbound.raw),
            id: message_id.to_string(),
            submission: self.submission,
            opened,
        });
        if let Some(reaction) = &inbound.reaction {
            self.react(
                &inbound.phone_number_id,
                &reaction.target_wamid,
                &reaction.emoji,
            )
            .await?;
        }
        let snapshot = match opened {
            true => Some(Box::new(
                self.routing_snapshot(&channel, contact, new_contact, &conversation, &view)
                    .await?,
            )),
            false => None,
        };
        if let (Some(workspace_id), Some(team_id), Some(channel_id), Some(conversation_id)) = (
            WorkspaceId::parse(&channel.workspace_id),
            TeamId::parse(&conversation.team_id),
            ChannelId::parse(&channel.id),
            ConversationId::parse(&conversation.id),
        ) {
            self.events.push(InboundEvent {
                workspace_id,
                team_id,
                channel_id,
                conversation_id,
                message_id,
                opened,
                message: view,
                conversation: snapshot,
            });
        }
        Ok(())
    }

    /// A conversation this message opened, as routing needs it: from the rows at hand, plus
    /// the agent of the contact's previous conversation (a new contact has none).
    async fn routing_snapshot(
        &mut self,
        channel: &channel::Model,
        contact: contact::Model,
        new_contact: bool,
        conversation: &conversation::Model,
        message: &crate::inbox::MessageView,
    ) -> Result<crate::routing::store::StoredConversation, DbErr> {
        let team = match self.teams.get(&conversation.team_id) {
            Some(cached) => cached.clone(),
            None => {
                let found = team::Entity::find_by_id(conversation.team_id.clone())
                    .one(self.txn)
                    .await?;
                self.teams
                    .insert(conversation.team_id.clone(), found.clone());
                found
            }
        };
        let sticky = match new_contact {
            true => None,
            false => crate::routing::store::previous_agent(self.txn, conversation).await?,
        };
        crate::routing::store::StoredConversation::from_rows(
            conversation.clone(),
            Some(contact),
            team.as_ref(),
            Some(channel),
            sticky,
            Some(message.clone()),
        )
        .map(|stored| crate::routing::store::StoredConversation {
            fresh: true,
            ..stored
        })
    }

    /// Puts a reaction on the message it reacts to: in the row still to be written when that
    /// message came in this same batch, else in the stored row.
    async fn react(
        &mut self,
        phone_number_id: &str,
        target_wamid: &str,
        emoji: &Option<String>,
    ) -> Result<(), DbErr> {
        let target = self
            .messages
            .get(&(phone_number_id.to_owned(), target_wamid.to_owned()))
            .cloned()
            .flatten();
        if let Some(index) = target.and_then(|t| self.pending_by_id.get(&t.id).copied()) {
            self.pending_messages[index].row.reaction = Set(emoji.clone());
            return Ok(());
        }
        message::Entity::update_many()
            .col_expr(
                message::Column::Reaction,
                sea_orm::sea_query::Expr::value(emoji.clone()),
            )
            .filter(message::Column::PhoneNumberId.eq(phone_number_id))
            .filter(message::Column::Wamid.eq(target_wamid))
            .exec(self.txn)
            .await?;
        Ok(())
    }

    /// Inserts the batch's new messages, a few hundred rows per statement. A row another
    /// process stored first (same number and wamid) is skipped by the unique index; it is
    /// then counted as a duplicate and not handed to routing.
    async fn flush_messages(&mut self, reports: &mut [IngestReport]) -> Result<(), DbErr> {
        let pending = std::mem::take(&mut self.pending_messages);
        self.pending_by_id.clear();
        let skipped = insert_pending(
            self.txn,
            &pending,
            &[message::Column::PhoneNumberId, message::Column::Wamid],
            message::Column::Id,
        )
        .await?;
        if skipped.is_empty() {
            return Ok(());
        }
        for row in pending.iter().filter(|p| skipped.contains(&p.id)) {
            if let Some(report) = reports.get_mut(row.submission) {
                report.messages_stored = report.messages_stored.saturating_sub(1);
                report.duplicates += 1;
                if row.opened {
                    report.conversations_opened = report.conversations_opened.saturating_sub(1);
                }
            }
        }
        self.events
            .retain(|event| !skipped.contains(&event.message_id.to_string()));
        Ok(())
    }

    /// Inserts the batch's new statuses, as `flush_messages` does messages.
    async fn flush_statuses(&mut self, reports: &mut [IngestReport]) -> Result<(), DbErr> {
        let pending = std::mem::take(&mut self.pending_statuses);
        let skipped = insert_pending(
            self.txn,
            &pending,
            &[
                message_status::Column::PhoneNumberId,
                message_status::Column::Wamid,
                message_status::Column::Status,
            ],
            message_status::Column::Id,
        )
        .await?;
        for row in pending.iter().filter(|p| skipped.contains(&p.id)) {
            if let Some(report) = reports.get_mut(row.submission) {
                report.statuses_stored = report.statuses_stored.saturating_sub(1);
                report.duplicates += 1;
            }
        }
        Ok(())
    }

    /// Finds the customer by business-scoped user id and/or phone, links the two when a message
    /// carries both, and keeps the profile name current; `true` when the contact is new.
    async fn upsert_contact(
        &mut self,
        workspace_id: &str,
        inbound: &InboundMessage,
    ) -> Result<(contact::Model, bool), DbErr> {
        let (contact, created) = self.find_or_create_contact(workspace_id, inbound).await?;
        self.remember_contact(&contact);
        Ok((contact, created))
    }

    async fn find_or_create_contact(
        &self,
        workspace_id: &str,
        inbound: &InboundMessage,
    ) -> Result<(contact::Model, bool), DbErr> {
        let sender = &inbound.sender;
        let by_user_id = match &sender.user_id {
            Some(user_id) => {
                self.contact_by(workspace_id, ContactKey::UserId(user_id.clone()))
                    .await?
            }
            None => None,
        };
        let by_phone = match (&by_user_id, &sender.phone) {
            (None, Some(phone)) => {
                self.contact_by(workspace_id, ContactKey::Phone(phone.clone()))
                    .await?
            }
            _ => None,
        };
        let now = Utc::now();
        let Some(existing) = by_user_id.or(by_phone) else {
            let row = contact::ActiveModel {
                id: Set(ContactId::new().to_string()),
                workspace_id: Set(workspace_id.to_owned()),
                phone: Set(sender.phone.clone()),
                user_id: Set(sender.user_id.clone()),
                name: Set(sender.name.clone()),
                username: Set(sender.username.clone()),
                created_at: Set(now),
                updated_at: Set(now),
                restricted: Set(false),
                objected: Set(false),
                erased_at: Set(None),
            };
            return Ok((row.insert(self.txn).await?, true));
        };
        let link_phone = match (&existing.phone, &sender.phone) {
            // Only link a phone no other contact of the workspace already has.
            (None, Some(phone)) => self
                .contact_by(workspace_id, ContactKey::Phone(phone.clone()))
                .await?
                .is_none(),
            _ => false,
        };
        let link_user_id = existing.user_id.is_none() && sender.user_id.is_some();
        let rename = sender.name.is_some() && sender.name != existing.name;
        let new_username = sender.username.is_some() && sender.username != existing.username;
        if !(link_phone || link_user_id || rename || new_username) {
            return Ok((existing, false));
        }
        let mut row = existing.into_active_model();
        if link_phone {
            row.phone = Set(sender.phone.clone());
        }
        if link_user_id {
            row.user_id = Set(sender.user_id.clone());
        }
        if rename {
            row.name = Set(sender.name.clone());
        }
        if new_username {
            row.username = Set(sender.username.clone());
        }
        row.updated_at = Set(now);
        Ok((row.update(self.txn).await?, false))
    }

    /// Continues the contact's open conversation on this channel, or opens a new one; moves the
    /// 24-hour window forward to this message's time.
    async fn open_conversation(
        &mut self,
        channel: &channel::Model,
        contact: &contact::Model,
        new_contact: bool,
        inbound: &InboundMessage,
    ) -> Result<(conversation::Model, bool), DbErr> {
        let pair = (channel.id.clone(), contact.id.clone());
        let (conversation, opened) = self
            .find_or_open_conversation(channel, contact, new_contact, inbound)
            .await?;
        self.open.insert(pair, Some(conversation.clone()));
        // The window moves to the latest message's time, written once per batch.
        let latest = self
            .windows
            .get(&conversation.id)
            .copied()
            .or(conversation.last_inbound_at);
        if latest.is_none_or(|last| inbound.timestamp > last) && !opened {
            self.windows
                .insert(conversation.id.clone(), inbound.timestamp);
        }
        Ok((conversation, opened))
    }

    async fn find_or_open_conversation(
        &self,
        channel: &channel::Model,
        contact: &contact::Model,
        new_contact: bool,
        inbound: &InboundMessage,
    ) -> Result<(conversation::Model, bool), DbErr> {
        let now = Utc::now();
        let open = match self.open.get(&(channel.id.clone(), contact.id.clone())) {
            Some(cached) => cached.clone(),
            None => {
                conversation::Entity::find()
                    .filter(conversation::Column::ChannelId.eq(&channel.id))
                    .filter(conversation::Column::ContactId.eq(&contact.id))
                    .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
                    .one(self.txn)
                    .await?
            }
        };
        let Some(open) = open else {
            if let Some(reopened) = self.reopen(channel, contact, inbound).await? {
                return Ok((reopened, true));
            }
            let row = conversation::ActiveModel {
                id: Set(ConversationId::new().to_string()),
                workspace_id: Set(channel.workspace_id.clone()),
                channel_id: Set(channel.id.clone()),
                team_id: Set(channel.team_id.clone()),
                contact_id: Set(contact.id.clone()),
                status: Set(ConversationStatus::Waiting),
                assigned_agent_id: Set(None),
                priority: Set(0),
                last_inbound_at: Set(Some(inbound.timestamp)),
                window_expires_at: Set(Some(inbound.timestamp + CUSTOMER_SERVICE_WINDOW)),
                created_at: Set(now),
                updated_at: Set(now),
                resolved_at: Set(None),
                tags: Set("[]".to_owned()),
                // Its `conversation_created` rules run when its actor starts.
                automation_pending: Set(true),
                automation_fired: Set("{}".to_owned()),
                contact_is_new: Set(new_contact),
                ..crate::time::clocks::new_cycle(inbound.timestamp)
            };
            return Ok((row.insert(self.txn).await?, true));
        };
        Ok((open, false))
    }

    /// Reopens the contact's last conversation on this channel if it was resolved within the
    /// reopen window; it waits for an agent again.
    async fn reopen(
        &self,
        channel: &channel::Model,
        contact: &contact::Model,
        inbound: &InboundMessage,
    ) -> Result<Option<conversation::Model>, DbErr> {
        use sea_orm::QueryOrder;
        let now = Utc::now();
        let recent = conversation::Entity::find()
            .filter(conversation::Column::ChannelId.eq(&channel.id))
            .filter(conversation::Column::ContactId.eq(&contact.id))
            .filter(conversation::Column::Status.eq(ConversationStatus::Resolved))
            .filter(conversation::Column::ResolvedAt.gte(now - self.reopen_window))
            .order_by_desc(conversation::Column::ResolvedAt)
            .one(self.txn)
            .await?;
        let Some(recent) = recent else {
            return Ok(None);
        };
        let cycle = recent.cycle + 1;
        let mut row = recent.into_active_model();
        row.status = Set(ConversationStatus::Waiting);
        row.assigned_agent_id = Set(None);
        row.resolved_at = Set(None);
        row.last_inbound_at = Set(Some(inbound.timestamp));
        row.window_expires_at = Set(Some(inbound.timestamp + CUSTOMER_SERVICE_WINDOW));
        row.updated_at = Set(now);
        crate::time::clocks::start_cycle(&mut row, inbound.timestamp, cycle);
        // A new cycle: its timer rules may fire again.
        row.automation_fired = Set("{}".to_owned());
        let reopened = row.update(self.txn).await?;
        crate::audit::record(
            self.txn,
            crate::audit::AuditRecord {
                workspace_id: Some(reopened.workspace_id.clone()),
                conversation_id: Some(reopened.id.clone()),
                kind: crate::audit::AuditKind::Reopened,
                text: "reopened by a new customer message within the reopen window".to_owned(),
                ..Default::default()
            },
        )
        .await?;
        Ok(Some(reopened))
    }

    /// Keeps every distinct status, and moves the message's status forward only.
    async fn store_status(
        &mut self,
        status: &StatusUpdate,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        if self.channel(&status.phone_number_id).await?.is_none() {
            return self
                .store_unrouted(
                    &status.phone_number_id,
                    "status",
                    format!("{}:{}", status.wamid, status.status),
                    &status.raw,
                    report,
                )
                .await;
        }
        let key = (status.phone_number_id.clone(), status.wamid.clone());
        let target = match self.messages.get(&key) {
            Some(cached) => cached.clone(),
            None => {
                message::Entity::find()
                    .filter(message::Column::PhoneNumberId.eq(&status.phone_number_id))
                    .filter(message::Column::Wamid.eq(&status.wamid))
                    .one(self.txn)
                    .await?
            }
        };
        let status_key = (
            status.phone_number_id.clone(),
            status.wamid.clone(),
            status.status.clone(),
        );
        if !self.known_statuses.insert(status_key) {
            report.duplicates += 1;
            return Ok(());
        }
        let id = uuid::Uuid::now_v7().to_string();
        // A status of an erased message keeps nothing that names the customer: its wamid is
        // the message's tag, and its recipient and raw body are dropped.
        let erased_tag = target
            .as_ref()
            .and_then(|m| m.wamid.clone())
            .filter(|wamid| wamid.starts_with(crate::crypto::ERASED_WAMID_PREFIX));
        let erased = erased_tag.is_some();
        let row = message_status::ActiveModel {
            id: Set(id.clone()),
            phone_number_id: Set(status.phone_number_id.clone()),
            wamid: Set(erased_tag.unwrap_or_else(|| status.wamid.clone())),
            status: Set(status.status.clone()),
            provider_timestamp: Set(status.timestamp),
            recipient_id: Set(status.recipient_id.clone().filter(|_| !erased)),
            errors: Set(status.errors.clone()),
            raw: Set(if erased {
                Value::Null
            } else {
                status.raw.clone()
            }),
            message_id: Set(target.as_ref().map(|m| m.id.clone())),
            created_at: Set(Utc::now()),
        };
        self.pending_statuses.push(Pending {
            row,
            id,
            bytes: ROW_OVERHEAD_BYTES
                + json_len(&status.raw)
                + status.errors.as_ref().map_or(0, json_len),
            submission: self.submission,
            opened: false,
        });
        report.statuses_stored += 1;
        if let Some(target) = target {
            // Later statuses of the batch compare against the status written here.
            let before = target.status.clone();
            let now = match self.pending_by_id.get(&target.id).copied() {
                // The message came in this batch: its row is still to be written.
                Some(index) => {
                    let now = advanced(target, &status.status, status.errors.clone());
                    let row = &mut self.pending_messages[index].row;
                    row.status = Set(now.status.clone());
                    row.error = Set(now.error.clone());
                    now
                }
                None => {
                    apply_status(self.txn, target, &status.status, status.errors.clone()).await?
                }
            };
            if now.status != before
                && let (Some(conversation_id), Some(message_id)) = (
                    ConversationId::parse(&now.conversation_id),
                    MessageId::parse(&now.id),
                )
            {
                self.statuses.push(StatusEvent {
                    conversation_id,
                    message_id,
                    wamid: status.wamid.clone(),
                    status: now.status.clone(),
                    error: now.error.clone(),
                });
            }
            self.messages.insert(key, Some(now));
        }
        Ok(())
    }
}

fn count(result: TryInsertResult<u64>, stored: &mut u64, duplicates: &mut u64) {
    match result {
        TryInsertResult::Inserted(n) if n > 0 => *stored += 1,
        _ => *duplicates += 1,
    }
}

/// The message with its status moved forward (never back); a failure keeps Meta's errors.
fn advanced(mut target: message::Model, status: &str, errors: Option<Value>) -> message::Model {
    if status_rank(status) > status_rank(&target.status) {
        target.status = status.to_owned();
        if status == "failed" {
            target.error = errors;
        }
    }
    target
}

/// Moves a message's status forward (never back); a failure keeps Meta's errors.
async fn apply_status(
    txn: &DatabaseTransaction,
    target: message::Model,
    status: &str,
    errors: Option<Value>,
) -> Result<message::Model, DbErr> {
    let now = advanced(target.clone(), status, errors);
    if now.status == target.status {
        return Ok(target);
    }
    let mut row = target.into_active_model();
    row.status = Set(now.status);
    row.error = Set(now.error);
    row.updated_at = Set(Utc::now());
    row.update(txn).await
}

/// Matches statuses that arrived before their message was stored (Meta does not order them)
/// and applies the highest one. Called when an outbound message gets its wamid.
pub async fn reconcile_pending_statuses(
    txn: &DatabaseTransaction,
    message: message::Model,
) -> Result<(), DbErr> {
    let Some(wamid) = message.wamid.clone() else {
        return Ok(());
    };
    let pending = message_status::Entity::find()
        .filter(message_status::Column::PhoneNumberId.eq(&message.phone_number_id))
        .filter(message_status::Column::Wamid.eq(&wamid))
        .all(txn)
        .await?;
    message_status::Entity::update_many()
        .col_expr(
            message_status::Column::MessageId,
            sea_orm::sea_query::Expr::value(message.id.clone()),
        )
        .filter(message_status::Column::PhoneNumberId.eq(&message.phone_number_id))
        .filter(message_status::Column::Wamid.eq(&wamid))
        .exec(txn)
        .await?;
    if let Some(best) = pending
        .into_iter()
        .max_by_key(|status| status_rank(&status.status))
    {
        apply_status(txn, message, &best.status, best.errors).await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_their_byte_and_row_limits() {
        let half = STATEMENT_BYTES / 2;
        // Two halves fit, the third starts the next statement.
        let sizes = [half, half, half];
        assert_eq!(chunk_end(&sizes, 0), 2);
        assert_eq!(chunk_end(&sizes, 2), 3);
        // A row larger than the limit still goes, alone.
        let sizes = [STATEMENT_BYTES * 3, 10];
        assert_eq!(chunk_end(&sizes, 0), 1);
        assert_eq!(chunk_end(&sizes, 1), 2);
        // Many small rows stop at the row limit.
        let sizes = vec![1; ROWS_PER_STATEMENT * 2 + 7];
        assert_eq!(chunk_end(&sizes, 0), ROWS_PER_STATEMENT);
        assert_eq!(
            chunk_end(&sizes, ROWS_PER_STATEMENT * 2),
            ROWS_PER_STATEMENT * 2 + 7
        );
    }

    #[test]
    fn json_length_is_counted_without_building_the_text() {
        let value = serde_json::json!({"text": {"body": "héllo \"there\""}, "n": [1, 2.5, null]});
        assert_eq!(json_len(&value), value.to_string().len());
    }
}
