//! The `daily_rollups` table: one metric's facts of one day (in the workspace's zone) and one
//! scope (the workspace, a team, an agent, a channel, an agent within a team or a channel).

use sea_orm::entity::prelude::*;

use crate::reports::FactMetric;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "daily_rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: FactMetric,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    pub count: i64,
    pub sum: i64,
    pub business_sum: i64,
    /// Seconds, `[[value, count], ...]`.
    pub histogram: String,
    pub business_histogram: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
