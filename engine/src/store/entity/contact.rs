//! The `contacts` table.

use sea_orm::entity::prelude::*;

use crate::ids::{ContactId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ContactId,
    pub workspace_id: WorkspaceId,
    pub phone: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Kept but not worked on (a restriction request): no replies go out.
    pub restricted: bool,
    /// Objected to marketing: no marketing templates go out.
    pub objected: bool,
    /// When an erasure request removed this contact's personal data.
    pub erased_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
