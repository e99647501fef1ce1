//! The `sla_policies` table: response and resolution targets a team promises.

use sea_orm::entity::prelude::*;

use crate::ids::{SlaPolicyId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sla_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SlaPolicyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub first_response_secs: Option<i32>,
    pub next_response_secs: Option<i32>,
    pub resolution_secs: Option<i32>,
    pub business_hours: bool,
    pub warn_before_secs: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
