//! The `conversation_facts` table: what a conversation cycle measured, one row per cycle and
//! metric (unique, so a retried write adds nothing), rolled into `rollups`.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, ChannelId, ConversationId, FactId, TeamId, WorkspaceId};

use crate::reports::FactMetric;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_facts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: FactId,
    pub conversation_id: ConversationId,
    pub cycle: i32,
    pub cycle_started_at: DateTimeUtc,
    pub metric: FactMetric,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub agent_id: Option<AgentId>,
    pub channel_id: ChannelId,
    pub ended_at: DateTimeUtc,
    pub value: i64,
    pub business_value: i64,
    /// Counted in the rollups already.
    pub rolled: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
