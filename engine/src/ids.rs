//! Newtype ids, so that an agent id can never be passed where a conversation id is expected.
//!
//! Every id is a UUID (v7, so ids sort by creation time) stored as text in both databases. The
//! entities' id columns are these types (sea-orm's `DeriveValueType` over the text form), so a
//! row's ids are checked once, when it is read, and never compared as text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema, sea_orm::DeriveValueType,
        )]
        #[sea_orm(value_type = "String")]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the stored or user-supplied form; `None` when it is not a UUID.
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::from_str(text).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(text).map(Self)
            }
        }

        impl From<&$name> for sea_orm::Value {
            fn from(id: &$name) -> sea_orm::Value {
                sea_orm::Value::from(*id)
            }
        }

        /// Ids are never numbers: a primary key of this type has no `u64` form.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }
    )+};
}

id_type!(
    /// A tenant: every other row belongs to exactly one workspace.
    WorkspaceId,
    /// A team of agents with its own queue.
    TeamId,
    /// A WhatsApp business number connected to a workspace.
    ChannelId,
    /// A human agent (also supervisors and admins).
    AgentId,
    /// A customer, known by phone number and/or business-scoped user id.
    ContactId,
    /// A conversation between one contact and one channel.
    ConversationId,
    /// A stored message, inbound or outbound.
    MessageId,
    /// An integration's API token (the id, not the secret).
    ApiTokenId,
    /// A business-hours calendar.
    CalendarId,
    /// An SLA policy (response and resolution targets).
    SlaPolicyId,
    /// An automation rule.
    AutomationId,
    /// An internal note on a conversation.
    NoteId,
    /// A data subject's request (access, export, correction, erasure...).
    DataRequestId,
    /// A saved reply agents insert with `/shortcut`.
    CannedReplyId,
    /// One measured fact of a conversation cycle.
    FactId,
);
