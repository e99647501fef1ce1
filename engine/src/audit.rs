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

/// Appends one event.
pub async fn record(db: &impl ConnectionTrait, event: AuditRecord) -> Result<(), DbErr> {
    audit_event::ActiveModel {
        workspace_id: Set(event.workspace_id),
        conversation_id: Set(event.conversation_id),
        agent_id: Set(event.agent_id),
        kind: Set(event.kind),
        reason: Set(event.reason),
        text: Set(event.text),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}
