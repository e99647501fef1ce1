//! The append-only audit trail. The application only ever inserts here; retention and erasure
//! (workers) are the only writers that may remove or rewrite, and they record that they did.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use serde::Serialize;
use serde_json::Value;

use crate::ids::{AgentId, ConversationId, WorkspaceId};
use crate::store::entity::audit_event;

/// What an audit event records; stored as its name (`offered`, `security.login_failed`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditKind {
    /// Routing: a conversation joined its team's queue.
    #[default]
    Queued,
    Offered,
    Accepted,
    Declined,
    TimedOut,
    Withdrawn,
    Assigned,
    Resolved,
    Requeued,
    Transferred,
    Reopened,
    /// An agent's presence or capacity changed (what `waos replay` replays).
    Presence,
    /// Time: an SLA policy applied to a cycle, a deadline warned of, breached or met.
    SlaApplied,
    SlaWarned,
    SlaBreached,
    SlaMet,
    /// Resolved because the customer went quiet after an agent's reply.
    AutoResolved,
    /// The team's out-of-hours reply went to the customer.
    OutOfHoursReplied,
    /// An automation rule matched and ran its actions; one of them failed.
    AutomationRan,
    AutomationFailed,
    /// An agent took a waiting conversation from the queue.
    Picked,
    TagsChanged,
    NoteAdded,
    /// A data request was carried out; its kind (`erasure`, ...) is part of the name.
    DataRequest(&'static str),
    WebhookSignature,
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    /// An agent changed its own password.
    PasswordChanged,
    ApiTokenCreated,
    ApiTokenRevoked,
}

impl AuditKind {
    /// The stored name.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::Borrowed;
        match self {
            AuditKind::Queued => Borrowed("queued"),
            AuditKind::Offered => Borrowed("offered"),
            AuditKind::Accepted => Borrowed("accepted"),
            AuditKind::Declined => Borrowed("declined"),
            AuditKind::TimedOut => Borrowed("timed_out"),
            AuditKind::Withdrawn => Borrowed("withdrawn"),
            AuditKind::Assigned => Borrowed("assigned"),
            AuditKind::Resolved => Borrowed("resolved"),
            AuditKind::Requeued => Borrowed("requeued"),
            AuditKind::Transferred => Borrowed("transferred"),
            AuditKind::Reopened => Borrowed("reopened"),
            AuditKind::Presence => Borrowed("presence"),
            AuditKind::SlaApplied => Borrowed("sla_applied"),
            AuditKind::SlaWarned => Borrowed("sla_warned"),
            AuditKind::SlaBreached => Borrowed("sla_breached"),
            AuditKind::SlaMet => Borrowed("sla_met"),
            AuditKind::AutoResolved => Borrowed("auto_resolved"),
            AuditKind::OutOfHoursReplied => Borrowed("out_of_hours_replied"),
            AuditKind::AutomationRan => Borrowed("automation_ran"),
            AuditKind::AutomationFailed => Borrowed("automation_failed"),
            AuditKind::Picked => Borrowed("picked"),
            AuditKind::TagsChanged => Borrowed("tags_changed"),
            AuditKind::NoteAdded => Borrowed("note_added"),
            AuditKind::DataRequest(kind) => format!("data_request.{kind}").into(),
            AuditKind::WebhookSignature => Borrowed("security.webhook_signature"),
            AuditKind::LoginSucceeded => Borrowed("security.login_succeeded"),
            AuditKind::LoginFailed => Borrowed("security.login_failed"),
            AuditKind::LoginThrottled => Borrowed("security.login_throttled"),
            AuditKind::PasswordChanged => Borrowed("security.password_changed"),
            AuditKind::ApiTokenCreated => Borrowed("security.api_token_created"),
            AuditKind::ApiTokenRevoked => Borrowed("security.api_token_revoked"),
        }
    }
}

/// One event to append.
#[derive(Clone, Debug, Default)]
pub struct AuditRecord {
    pub workspace_id: Option<WorkspaceId>,
    pub conversation_id: Option<ConversationId>,
    pub agent_id: Option<AgentId>,
    pub kind: AuditKind,
    /// Structured reason (rule, candidates, inputs), rendered into `text`.
    pub reason: Option<Value>,
    pub text: String,
    /// When it happened. Unset, it is stamped when handed to the writer: a row's time is the
    /// event's, never the time its batch was written.
    pub at: Option<DateTime<Utc>>,
}

/// A stored event as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub kind: String,
    pub agent_id: Option<AgentId>,
    #[schema(value_type = Option<Object>)]
    pub reason: Option<Value>,
    pub text: String,
    pub at: chrono::DateTime<Utc>,
}

impl From<audit_event::Model> for AuditView {
    fn from(event: audit_event::Model) -> Self {
        Self {
            id: event.id,
            kind: event.kind,
            agent_id: event.agent_id,
            reason: event.reason,
            text: event.text,
            at: event.created_at,
        }
    }
}

impl AuditRecord {
    fn into_row(self) -> audit_event::ActiveModel {
        audit_event::ActiveModel {
            workspace_id: Set(self.workspace_id),
            conversation_id: Set(self.conversation_id),
            agent_id: Set(self.agent_id),
            kind: Set(self.kind.name().into_owned()),
            reason: Set(self.reason),
            text: Set(self.text),
            created_at: Set(self.at.unwrap_or_else(Utc::now)),
            ..Default::default()
        }
    }
}

/// Appends one event.
pub async fn record(db: &impl ConnectionTrait, event: AuditRecord) -> Result<(), DbErr> {
    event.into_row().insert(db).await.map(|_| ())
}

/// Most events written in one statement.
const AUDIT_BATCH: usize = 500;

/// Events waiting to be written, at most. Beyond it an event waits for room in a task of its
/// own (counted in `waos_audit_queue_full`): nothing is dropped, and the count says that the
/// database is not keeping up.
const AUDIT_QUEUE: usize = 65_536;

enum Entry {
    Event(AuditRecord),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The batched audit writer: actors hand it events without waiting; one task appends them in
/// the order they were handed over, many per statement.
#[derive(Clone)]
pub struct AuditWriter {
    entries: tokio::sync::mpsc::Sender<Entry>,
    /// Times an event found the queue full.
    pub queue_full: prometheus_client::metrics::counter::Counter,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime; it ends when every handle is dropped.
    pub fn spawn(db: sea_orm::DatabaseConnection) -> Self {
        let (entries, mut queue) = tokio::sync::mpsc::channel::<Entry>(AUDIT_QUEUE);
        tokio::spawn(async move {
            let mut received = Vec::with_capacity(AUDIT_BATCH);
            while queue.recv_many(&mut received, AUDIT_BATCH).await > 0 {
                let mut rows = Vec::with_capacity(received.len());
                for entry in received.drain(..) {
                    match entry {
                        Entry::Event(event) => rows.push(event.into_row()),
                        Entry::Flush(done) => {
                            write_until_stored(&db, std::mem::take(&mut rows)).await;
                            let _ = done.send(());
                        }
                    }
                }
                write_until_stored(&db, rows).await;
            }
        });
        Self {
            entries,
            queue_full: Default::default(),
        }
    }

    pub fn record(&self, mut event: AuditRecord) {
        event.at.get_or_insert_with(Utc::now);
        match self.entries.try_send(Entry::Event(event)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(entry)) => {
                self.queue_full.inc();
                tracing::warn!("audit queue full; the event waits for room");
                let entries = self.entries.clone();
                tokio::spawn(async move {
                    if entries.send(entry).await.is_err() {
                        tracing::error!("audit writer stopped; event lost");
                    }
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("audit writer stopped; event lost");
            }
        }
    }

    /// Waits until every event handed over before this call is written (at shutdown).
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.entries.send(Entry::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Writes one batch, trying again until it lands: the audit must not silently lose events.
async fn write_until_stored(db: &sea_orm::DatabaseConnection, rows: Vec<audit_event::ActiveModel>) {
    use sea_orm::EntityTrait;
    if rows.is_empty() {
        return;
    }
    let mut delay = std::time::Duration::from_millis(50);
    while let Err(error) = audit_event::Entity::insert_many(rows.clone())
        .exec_without_returning(db)
        .await
    {
        tracing::warn!(%error, "audit batch not written; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}
