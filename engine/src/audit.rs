//! The append-only audit trail. The application only ever inserts here; retention and erasure
//! (workers) are the only writers that may remove or rewrite, and they record that they did.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbErr};
use serde::Serialize;
use serde_json::Value;

use crate::store::entity::audit_event;

/// One event to append.
#[derive(Clone, Debug, Default)]
pub struct AuditRecord {
    pub workspace_id: Option<String>,
    pub conversation_id: Option<String>,
    pub agent_id: Option<String>,
    /// What happened: `security.bad_signature`, `security.login_failed`, `offered`, ...
    pub kind: String,
    /// Structured reason (rule, candidates, inputs), rendered into `text`.
    pub reason: Option<Value>,
    pub text: String,
}

/// A stored event as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub kind: String,
    pub agent_id: Option<String>,
    #[schema(value_type = Object)]
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
            kind: Set(self.kind),
            reason: Set(self.reason),
            text: Set(self.text),
            created_at: Set(Utc::now()),
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

/// The batched audit writer: actors hand it events without waiting; one task appends them in
/// the order they were handed over, many per statement.
#[derive(Clone)]
pub struct AuditWriter {
    events: tokio::sync::mpsc::UnboundedSender<AuditRecord>,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime; it ends when every handle is dropped.
    pub fn spawn(db: sea_orm::DatabaseConnection) -> Self {
        let (events, mut queue) = tokio::sync::mpsc::unbounded_channel::<AuditRecord>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(AUDIT_BATCH);
            while queue.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
                let rows: Vec<audit_event::ActiveModel> =
                    batch.drain(..).map(AuditRecord::into_row).collect();
                // The audit must not silently lose events: retry a failed batch until it lands.
                let mut delay = std::time::Duration::from_millis(50);
                loop {
                    use sea_orm::EntityTrait;
                    match audit_event::Entity::insert_many(rows.clone())
                        .exec_without_returning(&db)
                        .await
                    {
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "audit batch not written; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        }
                    }
                }
            }
        });
        Self { events }
    }

    pub fn record(&self, event: AuditRecord) {
        if self.events.send(event).is_err() {
            tracing::error!("audit writer stopped; event lost");
        }
    }
}
