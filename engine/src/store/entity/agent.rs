//! The `agents` table.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AgentId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub capacity: i32,
    pub skills: Json,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
