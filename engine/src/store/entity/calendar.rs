//! The `calendars` table: business hours, kept in the API's normalised form.

use sea_orm::entity::prelude::*;

use crate::ids::{CalendarId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "calendars")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CalendarId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub time_zone: String,
    /// JSON: `mon`..`sun` to `["HH:MM","HH:MM"]` pairs.
    pub weekly: String,
    /// JSON: `[{date, intervals, label?}]`.
    pub overrides: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
