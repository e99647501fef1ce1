//! The `messages` table.

use sea_orm::entity::prelude::*;

use crate::ids::{ChannelId, ConversationId, MessageId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub workspace_id: WorkspaceId,
    pub conversation_id: ConversationId,
    pub channel_id: ChannelId,
    pub phone_number_id: String,
    pub wamid: Option<String>,
    pub direction: MessageDirection,
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub context_wamid: Option<String>,
    pub reaction: Option<String>,
    pub status: DeliveryStatus,
    pub error: Option<Json>,
    pub raw: Json,
    pub provider_timestamp: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Sent by WaOS itself (an out-of-hours reply, an automation), not by an agent.
    pub automated: bool,
    /// The id of the quick-reply button or list row the customer chose.
    pub button_payload: Option<String>,
}

/// Where a message stands, in the one order statuses move in: ours from `queued` (in our
/// outbox) through Meta's `accepted`, `sent`, `delivered`, `read`, `played` (voice); a customer's
/// is `received`. `failed` is terminal. The console takes this order from the `hello` frame.
/// Stored as its name (a text column: no migration); the variants' order is the rank.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "received")]
    Received,
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "accepted")]
    Accepted,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "read")]
    Read,
    #[sea_orm(string_value = "played")]
    Played,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl DeliveryStatus {
    /// Every status, lowest first.
    pub const ORDER: [DeliveryStatus; 8] = [
        DeliveryStatus::Received,
        DeliveryStatus::Queued,
        DeliveryStatus::Accepted,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Played,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Received => "received",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Played => "played",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// `None` for a status Meta may add that we do not know.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ORDER
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// Who wrote a message; stored as `in` or `out` (a text column: no migration).
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
pub enum MessageDirection {
    /// From the customer.
    #[sea_orm(string_value = "in")]
    #[serde(rename = "in")]
    In,
    /// From an agent (or an automated reply).
    #[sea_orm(string_value = "out")]
    #[serde(rename = "out")]
    Out,
}

impl MessageDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageDirection::In => "in",
            MessageDirection::Out => "out",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
