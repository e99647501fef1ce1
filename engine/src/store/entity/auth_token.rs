//! The `auth_tokens` table.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    pub kind: String,
    pub agent_id: AgentId,
    pub workspace_id: WorkspaceId,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    /// A websocket ticket's: the hash of the session it was asked for.
    pub session_hash: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
