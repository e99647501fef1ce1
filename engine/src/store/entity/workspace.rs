//! The `workspaces` table.

use sea_orm::entity::prelude::*;

use crate::ids::WorkspaceId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workspaces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: WorkspaceId,
    pub name: String,
    pub retention_message_days: Option<i32>,
    pub retention_media_days: Option<i32>,
    pub retention_audit_days: Option<i32>,
    /// IANA zone whose days the reports count in.
    pub time_zone: String,
    pub created_at: DateTimeUtc,
    /// The epoch of the lease this workspace was last taken over under (several nodes): a
    /// routing write under an older one is refused. 0 on one node.
    pub owner_epoch: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
