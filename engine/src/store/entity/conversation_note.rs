//! The `conversation_notes` table: agents' internal notes, never sent to the customer.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, ConversationId, NoteId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_notes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: NoteId,
    pub workspace_id: WorkspaceId,
    pub conversation_id: ConversationId,
    pub author_id: Option<AgentId>,
    pub text: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
