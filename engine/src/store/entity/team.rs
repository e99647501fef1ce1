//! The `teams` table.

use sea_orm::entity::prelude::*;

use crate::ids::{CalendarId, SlaPolicyId, TeamId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "teams")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TeamId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub offer_timeout_secs: i32,
    pub auto_accept: bool,
    pub active: bool,
    pub created_at: DateTimeUtc,
    /// Business hours; none: always open.
    pub calendar_id: Option<CalendarId>,
    /// Sent once per conversation cycle when a customer writes while the team is closed.
    pub out_of_hours_reply: Option<String>,
    /// Online agents are offered work after hours too (otherwise it waits for opening).
    pub offer_outside_hours: bool,
    pub sla_policy_id: Option<SlaPolicyId>,
    /// Resolve an assigned conversation whose customer has been silent this long after a reply.
    pub auto_resolve_after_secs: Option<i32>,
    pub auto_resolve_message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
