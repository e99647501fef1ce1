//! The agent websocket's frames (shared/CONTRACT.md): one JSON object per text frame, by `type`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inbox::{ContactView, ConversationView, MessageView};
use crate::routing::policy::Presence;

/// An offer as the agent sees it.
#[derive(Clone, Debug, Serialize)]
pub struct OfferView {
    pub conversation_id: String,
    pub expires_at: DateTime<Utc>,
    /// Its place in its team's queue when it was offered (1: the first).
    pub position: usize,
    pub contact: Option<ContactView>,
    pub last_message: Option<MessageView>,
}

/// Where an SLA deadline stands, in the `sla` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaState {
    Warning,
    Breached,
}

/// Server to agent.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        agent_id: String,
        presence: Presence,
        conversations: Vec<ConversationView>,
        offers: Vec<OfferView>,
        /// Every delivery status, lowest first: the one order statuses move in, so the console
        /// never lets a late answer move a tick backwards (and keeps no copy of its own).
        delivery_statuses: [crate::meta::DeliveryStatus; 8],
    },
    Offer(OfferView),
    OfferWithdrawn {
        conversation_id: String,
        reason: String,
    },
    Assigned {
        conversation_id: String,
        reason: String,
        conversation: ConversationView,
    },
    Unassigned {
        conversation_id: String,
        reason: String,
    },
    Message {
        conversation_id: String,
        message: MessageView,
    },
    Presence {
        status: Presence,
    },
    /// A held conversation's SLA changed (a clock started, was met, warned of or breached): its
    /// whole `sla` as the REST API shows it.
    SlaUpdate {
        conversation_id: String,
        sla: Option<crate::time::clocks::SlaView>,
    },
    /// An SLA deadline of a held conversation is near (`warning`) or passed (`breached`).
    Sla {
        conversation_id: String,
        metric: crate::time::clocks::Metric,
        state: SlaState,
        due_at: chrono::DateTime<chrono::Utc>,
    },
    /// A delivery status of one of the agent's replies (never moves backwards).
    Status {
        conversation_id: String,
        message_id: String,
        wamid: String,
        status: crate::meta::DeliveryStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    /// The reply is stored and queued for Meta.
    Sent {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        message_id: String,
    },
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
}

impl ServerFrame {
    pub fn error(code: crate::error::ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            code: code.as_str().to_owned(),
            message: message.into(),
            client_id: None,
            conversation_id: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"error","code":"{}","message":"frame not serialisable"}}"#,
                crate::error::ErrorCode::Internal.as_str()
            )
        })
    }
}

/// Where a transfer goes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransferTarget {
    pub conversation_id: String,
    pub to_agent_id: Option<String>,
    pub to_team_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConversationRef {
    pub conversation_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PresenceChoice {
    Online,
    Away,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceFrame {
    pub status: PresenceChoice,
}

/// Agent to server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Accept(ConversationRef),
    Decline(ConversationRef),
    Resolve(ConversationRef),
    Open(ConversationRef),
    /// Take a waiting conversation of one of the agent's teams from the queue.
    Pick(ConversationRef),
    Transfer(TransferTarget),
    Presence(PresenceFrame),
    Send {
        conversation_id: String,
        client_id: Option<String>,
        text: String,
    },
    SendTemplate {
        conversation_id: String,
        client_id: Option<String>,
        template: Value,
    },
    /// `media`: `{kind, link | id, caption?, filename?}` (an `id` from the upload endpoint).
    SendMedia {
        conversation_id: String,
        client_id: Option<String>,
        media: Value,
    },
}

impl ClientFrame {
    /// The conversation a frame is about, and the client's id for its answer.
    pub fn conversation(&self) -> Option<(&str, Option<&str>)> {
        match self {
            ClientFrame::Accept(target)
            | ClientFrame::Decline(target)
            | ClientFrame::Resolve(target)
            | ClientFrame::Open(target) => Some((&target.conversation_id, None)),
            ClientFrame::Transfer(target) => Some((&target.conversation_id, None)),
            // Not one the agent is offered or holds yet: the supervisor checks it.
            ClientFrame::Presence(_) | ClientFrame::Pick(_) => None,
            ClientFrame::Send {
                conversation_id,
                client_id,
                ..
            }
            | ClientFrame::SendTemplate {
                conversation_id,
                client_id,
                ..
            }
            | ClientFrame::SendMedia {
                conversation_id,
                client_id,
                ..
            } => Some((conversation_id, client_id.as_deref())),
        }
    }
}

/// Parses a client frame; the error says what is wrong, for an `error` frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a frame needs a string `type`")?
        .to_owned();
    serde_json::from_value(value).map_err(|e| format!("bad `{kind}` frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_errors_say_why() {
        assert_eq!(
            parse_client_frame(r#"{"type":"accept","conversation_id":"c"}"#).unwrap(),
            ClientFrame::Accept(ConversationRef {
                conversation_id: "c".into()
            })
        );
        assert!(matches!(
            parse_client_frame(r#"{"type":"presence","status":"away"}"#).unwrap(),
            ClientFrame::Presence(PresenceFrame {
                status: PresenceChoice::Away
            })
        ));
        assert!(parse_client_frame("nope").unwrap_err().contains("not JSON"));
        assert!(parse_client_frame("{}").unwrap_err().contains("type"));
        assert!(
            parse_client_frame(r#"{"type":"fly"}"#)
                .unwrap_err()
                .contains("fly")
        );
        assert!(
            parse_client_frame(r#"{"type":"accept"}"#)
                .unwrap_err()
                .contains("conversation_id")
        );
    }

    #[test]
    fn server_frames_carry_their_type() {
        let frame = ServerFrame::OfferWithdrawn {
            conversation_id: "c".into(),
            reason: "timed out".into(),
        };
        let json: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(json["type"], "offer_withdrawn");
        assert_eq!(json["reason"], "timed out");
    }
}
