//! The `conversation_facts` table: what a conversation cycle measured, one row per cycle and
//! metric (unique, so a retried write adds nothing), rolled into `rollups`.

use sea_orm::entity::prelude::*;

use crate::reports::FactMetric;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_facts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub conversation_id: String,
    pub cycle: i32,
    pub cycle_started_at: DateTimeUtc,
    pub metric: FactMetric,
    pub workspace_id: String,
    pub team_id: String,
    pub agent_id: Option<String>,
    pub channel_id: String,
    pub ended_at: DateTimeUtc,
    pub value: i64,
    pub business_value: i64,
    /// Counted in the rollups already.
    pub rolled: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
