//! The `rollups` table: one metric's facts of one day or one month (in the workspace's zone)
//! and one scope (the workspace, a team, an agent, a channel, an agent within a team or a
//! channel).

use sea_orm::entity::prelude::*;

use crate::reports::FactMetric;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// `day` or `month`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub span: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope_id: String,
    /// YYYY-MM-DD for a day, YYYY-MM for a month.
    #[sea_orm(primary_key, auto_increment = false)]
    pub period: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: FactMetric,
    pub count: i64,
    pub sum: i64,
    pub business_sum: i64,
    /// Whole seconds, an HDR histogram's V2 encoding.
    pub histogram: Vec<u8>,
    pub business_histogram: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
