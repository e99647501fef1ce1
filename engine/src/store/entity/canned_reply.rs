//! The `canned_replies` table: saved answers an agent inserts by shortcut.

use sea_orm::entity::prelude::*;

use crate::ids::{CannedReplyId, TeamId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "canned_replies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CannedReplyId,
    pub workspace_id: WorkspaceId,
    /// `None`: for every team of the workspace.
    pub team_id: Option<TeamId>,
    pub shortcut: String,
    pub text: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
