//! The `data_requests` table: a contact's requests about their personal data.

use sea_orm::entity::prelude::*;

use crate::ids::{ContactId, DataRequestId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "data_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DataRequestId,
    pub workspace_id: WorkspaceId,
    pub contact_id: ContactId,
    /// `access`, `export`, `correction`, `restriction`, `objection` or `erasure`.
    pub kind: String,
    /// `completed` (carried out at once) or `pending`.
    pub status: String,
    pub changes: Option<Json>,
    pub requested_by: Option<String>,
    pub created_at: DateTimeUtc,
    /// The legal deadline (a month after the request).
    pub due_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
