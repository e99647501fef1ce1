//! The outbound rules of an agent's reply, apart from the actor that applies them: free text and
//! media only inside the 24-hour customer-service window, approved templates at any time,
//! nothing to a contact who restricted processing or was erased, no marketing template to one
//! who objected; then Meta's body, queued for the sender.

use sea_orm::DatabaseConnection;

use crate::error::EngineError;
use crate::ids::{ChannelId, ConversationId, WorkspaceId};
use crate::inbox::{ContactView, MessageView};
use crate::outbound::{MAX_TEXT_CHARS, MEDIA_KINDS, MediaRequest, ReplyTarget};
use crate::routing::RoutingError;
use crate::templates::TemplateRequest;

/// What an agent sends: free text (inside the 24-hour window) or a template (any time).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Text(String),
    Template(TemplateRequest),
    /// An image, video, audio, document or sticker (inside the window, like text).
    Media(MediaRequest),
}

/// The rules that need no database, applied before anything is stored or sent (outside the
/// window Meta would answer 131047). Text is trimmed.
pub(crate) fn check(reply: Reply, window_open: bool) -> Result<Reply, RoutingError> {
    match reply {
        Reply::Text(text) => {
            let text = text.trim().to_owned();
            if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return Err(RoutingError::Invalid(format!(
                    "a reply is 1 to {MAX_TEXT_CHARS} characters"
                )));
            }
            if !window_open {
                return Err(RoutingError::WindowClosed);
            }
            Ok(Reply::Text(text))
        }
        Reply::Media(_) if !window_open => Err(RoutingError::WindowClosed),
        other => Ok(other),
    }
}

/// Where a reply goes.
pub(crate) struct Destination {
    pub conversation_id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub channel_id: ChannelId,
    /// The business number it is sent from.
    pub phone_number_id: String,
    pub contact: ContactView,
    /// Sent by WaOS itself, not by an agent.
    pub automated: bool,
}

/// Checks consent (and the template against the channel's approved ones), builds Meta's body
/// and queues it for the sender; answers the stored message.
pub(crate) async fn queue(
    db: DatabaseConnection,
    to: Destination,
    reply: Reply,
) -> Result<MessageView, RoutingError> {
    let refusal = |error| match error {
        EngineError::Validation(why) => RoutingError::Invalid(why),
        _ => RoutingError::Unavailable,
    };
    let contact = &to.contact;
    if !matches!(reply, Reply::Template(_)) {
        crate::privacy::check_may_contact(&db, contact.id, false)
            .await
            .map_err(refusal)?;
    }
    let (kind, text, body) = match reply {
        Reply::Text(text) => {
            let body = crate::outbound::text_body(contact, &text);
            ("text", Some(text), body)
        }
        Reply::Media(media) => {
            let body = crate::outbound::media_body(contact, &media);
            let kind = MEDIA_KINDS
                .into_iter()
                .find(|k| *k == media.kind)
                .unwrap_or("document");
            (kind, media.caption.clone(), body)
        }
        Reply::Template(request) => {
            let (preview, marketing) = crate::templates::check(&db, to.channel_id, &request)
                .await
                .map_err(refusal)?;
            crate::privacy::check_may_contact(&db, contact.id, marketing)
                .await
                .map_err(refusal)?;
            let body = crate::templates::template_body(contact, &request);
            ("template", Some(preview), body)
        }
    };
    let body = body.ok_or_else(|| {
        RoutingError::Invalid("the customer has no phone number or user id".into())
    })?;
    let target = ReplyTarget {
        conversation_id: to.conversation_id,
        workspace_id: to.workspace_id,
        channel_id: to.channel_id,
        phone_number_id: &to.phone_number_id,
        automated: to.automated,
    };
    crate::outbound::queue_reply(&db, target, kind, text, body)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "reply not stored");
            RoutingError::Unavailable
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media() -> Reply {
        Reply::Media(
            MediaRequest::parse(
                serde_json::json!({"kind": "image", "link": "https://example.com/a.png"}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn free_text_and_media_only_inside_the_window_templates_always() {
        assert!(matches!(
            check(Reply::Text("  hello  ".into()), true),
            Ok(Reply::Text(text)) if text == "hello"
        ));
        assert_eq!(
            check(Reply::Text("hello".into()), false).unwrap_err(),
            RoutingError::WindowClosed
        );
        assert!(matches!(check(media(), true), Ok(Reply::Media(_))));
        assert_eq!(
            check(media(), false).unwrap_err(),
            RoutingError::WindowClosed
        );
        let template = TemplateRequest::parse(
            serde_json::json!({"name": "order_update", "language": {"code": "en"}}),
        )
        .unwrap();
        assert!(matches!(
            check(Reply::Template(template), false),
            Ok(Reply::Template(_))
        ));
    }

    #[test]
    fn empty_or_overlong_text_is_refused_whatever_the_window() {
        for window_open in [true, false] {
            assert!(matches!(
                check(Reply::Text("   ".into()), window_open),
                Err(RoutingError::Invalid(_))
            ));
            let long = "x".repeat(MAX_TEXT_CHARS + 1);
            assert!(matches!(
                check(Reply::Text(long), window_open),
                Err(RoutingError::Invalid(_))
            ));
        }
    }
}
