//! The `conversations` table.

use sea_orm::entity::prelude::*;

use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, SlaPolicyId, TeamId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub channel_id: ChannelId,
    pub team_id: TeamId,
    pub contact_id: ContactId,
    pub status: ConversationStatus,
    pub assigned_agent_id: Option<AgentId>,
    pub priority: i32,
    pub last_inbound_at: Option<DateTimeUtc>,
    pub window_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    /// A JSON array of tag strings.
    pub tags: String,
    /// The customer message that opened or reopened the current cycle.
    pub cycle_started_at: Option<DateTimeUtc>,
    /// 1 for the first cycle, one more for each reopen.
    pub cycle: i32,
    /// The SLA policy applied to the current cycle.
    pub sla_policy_id: Option<SlaPolicyId>,
    pub first_response_due_at: Option<DateTimeUtc>,
    pub next_response_due_at: Option<DateTimeUtc>,
    pub resolution_due_at: Option<DateTimeUtc>,
    /// JSON arrays of metric names (`first_response`, ...) for the current cycle.
    pub sla_breached: String,
    pub sla_met: String,
    pub sla_warned: String,
    /// The oldest customer message an agent has not answered yet.
    pub awaiting_reply_since: Option<DateTimeUtc>,
    pub first_replied_at: Option<DateTimeUtc>,
    pub last_agent_reply_at: Option<DateTimeUtc>,
    pub out_of_hours_replied_at: Option<DateTimeUtc>,
    /// Offers of this cycle that ended unanswered (declined, timed out, withdrawn) before
    /// its first assignment.
    pub cycle_missed_offers: i32,
    /// The cycle's first assignment (its queue wait ends there).
    pub cycle_assigned_at: Option<DateTimeUtc>,
    /// Its `conversation_created` rules have not run yet.
    pub automation_pending: bool,
    /// Timer rules that fired: `{"<automation id>": "<start of the silence>"}`.
    pub automation_fired: String,
    /// Its contact was first seen with this conversation.
    pub contact_is_new: bool,
    /// The lease epoch its routing state was last written under (0: one node, or never).
    pub owner_epoch: i64,
}

/// Where a conversation stands in routing; stored as its name (a text column: no migration).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// In its team's queue.
    #[sea_orm(string_value = "waiting")]
    Waiting,
    /// Offered to one agent, who has not answered yet.
    #[sea_orm(string_value = "offered")]
    Offered,
    /// Held by one agent.
    #[sea_orm(string_value = "assigned")]
    Assigned,
    /// Closed; a customer message within the reopen window reopens it.
    #[sea_orm(string_value = "resolved")]
    Resolved,
}

impl ConversationStatus {
    /// The stored and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Waiting => "waiting",
            ConversationStatus::Offered => "offered",
            ConversationStatus::Assigned => "assigned",
            ConversationStatus::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for ConversationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::ConversationStatus;

    /// The stored name, the JSON name and `as_str` are one mapping.
    #[test]
    fn every_status_has_one_name() {
        for status in ConversationStatus::iter() {
            assert_eq!(status.to_value(), status.as_str());
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
            assert_eq!(
                ConversationStatus::try_from_value(&status.as_str().to_owned()).unwrap(),
                status
            );
        }
    }
}
