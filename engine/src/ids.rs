//! Newtype ids, so that an agent id can never be passed where a conversation id is expected.
//!
//! Every id is a UUID (v7, so ids sort by creation time) stored as text in both databases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
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
);
