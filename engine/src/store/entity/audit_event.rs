//! The `audit_events` table.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, ConversationId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workspace_id: Option<WorkspaceId>,
    pub conversation_id: Option<ConversationId>,
    pub agent_id: Option<AgentId>,
    pub kind: String,
    pub reason: Option<Json>,
    pub text: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
