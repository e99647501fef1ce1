//! The `outbox` table.

use sea_orm::entity::prelude::*;

use crate::ids::{ChannelId, MessageId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
    pub body: Json,
    pub last_error: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The customer's phone or user id, to keep each customer's messages in order.
    pub recipient: Option<String>,
    pub kind: OutboxKind,
}

/// Where a row of the outbox stands; stored as its name (a text column: no migration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum OutboxStatus {
    /// Waiting for the sender (maybe for its next attempt).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Meta took it.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up on (Meta refused it, attempts ran out, or its customer was erased).
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// What a row of the outbox carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum OutboxKind {
    /// A message to deliver (its row in `messages` follows its fate).
    #[sea_orm(string_value = "reply")]
    Reply,
    /// A read receipt for a customer's message.
    #[sea_orm(string_value = "read")]
    Read,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
