//! The `automations` table: a workspace's rules (their JSON checked by
//! [`crate::automation::rules`] before it is stored).

use sea_orm::entity::prelude::*;

use crate::ids::{AutomationId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "automations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AutomationId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub active: bool,
    pub position: i32,
    pub trigger: String,
    pub conditions: String,
    pub actions: String,
    pub stop_after: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
