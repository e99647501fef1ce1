//! Agents' replies: stored with an outbox row in one transaction, then delivered to Meta by the
//! sender (`waos-workers`). Nothing here talks to the network.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr};
use serde_json::{Value, json};

use crate::ids::{ChannelId, ConversationId, MessageId, WorkspaceId};
use crate::inbox::{ContactView, MessageView};
use crate::store::entity::message::{DeliveryStatus, MessageDirection};
use crate::store::entity::outbox::{OutboxKind, OutboxStatus};
use crate::store::entity::{message, outbox};

/// Meta's limit on a text message's body.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Who a reply goes to: a phone number (`to`) or, for username-only customers, a business-scoped
/// user id (`recipient`).
pub fn recipient(contact: &ContactView) -> Option<(&'static str, String)> {
    contact
        .phone
        .clone()
        .map(|phone| ("to", phone))
        .or_else(|| {
            contact
                .user_id
                .clone()
                .map(|user_id| ("recipient", user_id))
        })
}

/// The Graph API body of a text reply.
pub fn text_body(contact: &ContactView, text: &str) -> Option<Value> {
    let (field, address) = recipient(contact)?;
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "text",
        "text": {"preview_url": false, "body": text},
    });
    body[field] = Value::String(address);
    Some(body)
}

/// Kinds of media an agent can send.
pub const MEDIA_KINDS: [&str; 5] = ["image", "video", "audio", "document", "sticker"];

/// Meta's limit on a media caption.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// A media reply in Meta's shape: a public `link`, or the `id` of media uploaded to Meta.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRequest {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl MediaRequest {
    /// Parses and checks the shape; the error says what is wrong.
    pub fn parse(value: Value) -> Result<Self, String> {
        let request: MediaRequest = serde_json::from_value(value)
            .map_err(|e| format!("media is {{kind, link or id, caption?, filename?}}: {e}"))?;
        if !MEDIA_KINDS.contains(&request.kind.as_str()) {
            return Err(format!("media `kind` is one of {}", MEDIA_KINDS.join(", ")));
        }
        match (&request.link, &request.id) {
            (Some(link), None) => {
                if !(link.starts_with("https://") || link.starts_with("http://"))
                    || link.len() > 2048
                {
                    return Err("a media `link` is an http(s) URL Meta can fetch".into());
                }
            }
            (None, Some(id)) if !id.is_empty() && id.len() <= 128 => {}
            _ => return Err("send exactly one of `link` or `id`".into()),
        }
        if let Some(caption) = &request.caption {
            if !["image", "video", "document"].contains(&request.kind.as_str()) {
                return Err(format!("a {} cannot have a caption", request.kind));
            }
            if caption.chars().count() > MAX_CAPTION_CHARS {
                return Err(format!(
                    "a caption is at most {MAX_CAPTION_CHARS} characters"
                ));
            }
        }
        if request.filename.is_some() && request.kind != "document" {
            return Err("only a document has a `filename`".into());
        }
        Ok(request)
    }
}

/// The Graph API body of a media reply.
pub fn media_body(contact: &ContactView, media: &MediaRequest) -> Option<Value> {
    let (field, address) = recipient(contact)?;
    let mut object = serde_json::Map::new();
    for (key, value) in [
        ("link", &media.link),
        ("id", &media.id),
        ("caption", &media.caption),
        ("filename", &media.filename),
    ] {
        if let Some(value) = value {
            object.insert(key.to_owned(), Value::String(value.clone()));
        }
    }
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": media.kind,
    });
    body[media.kind.as_str()] = Value::Object(object);
    body[field] = Value::String(address);
    Some(body)
}

/// What a reply needs to know about its conversation.
pub struct ReplyTarget<'a> {
    pub conversation_id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub channel_id: ChannelId,
    pub phone_number_id: &'a str,
    /// Sent by WaOS itself (out-of-hours reply, automation), not an agent's words.
    pub automated: bool,
}

/// Stores the reply and its outbox row together; the sender picks the row up.
pub async fn queue_reply(
    db: &DatabaseConnection,
    target: ReplyTarget<'_>,
    kind: &str,
    text: Option<String>,
    body: Value,
) -> Result<MessageView, DbErr> {
    let now = Utc::now();
    let message_id = MessageId::new();
    let txn = crate::store::begin_write(db).await?;
    let row = message::ActiveModel {
        id: Set(message_id),
        workspace_id: Set(target.workspace_id),
        conversation_id: Set(target.conversation_id),
        channel_id: Set(target.channel_id),
        phone_number_id: Set(target.phone_number_id.to_owned()),
        wamid: Set(None),
        direction: Set(MessageDirection::Out),
        kind: Set(kind.to_owned()),
        text: Set(text),
        media_id: Set(None),
        context_wamid: Set(None),
        reaction: Set(None),
        status: Set(DeliveryStatus::Queued),
        error: Set(None),
        raw: Set(body.clone()),
        provider_timestamp: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        automated: Set(target.automated),
        button_payload: Set(None),
    }
    .insert(&txn)
    .await?;
    outbox::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        message_id: Set(message_id),
        channel_id: Set(target.channel_id),
        status: Set(OutboxStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_by: Set(None),
        claimed_until: Set(None),
        recipient: Set(body
            .get("to")
            .or_else(|| body.get("recipient"))
            .and_then(Value::as_str)
            .map(str::to_owned)),
        kind: Set(OutboxKind::Reply),
        body: Set(body),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

/// The agent opened the conversation: its unread inbound messages become `read`, and one read
/// receipt for the latest of them is queued for Meta (which marks the earlier ones read too).
/// Answers whether there was anything to mark.
pub async fn queue_read_receipt(
    db: &DatabaseConnection,
    conversation_id: ConversationId,
) -> Result<bool, DbErr> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

    let unread = || {
        message::Entity::find()
            .filter(message::Column::ConversationId.eq(conversation_id.to_string()))
            .filter(message::Column::Direction.eq(MessageDirection::In))
            .filter(message::Column::Status.eq(DeliveryStatus::Received))
    };
    let Some(latest) = unread()
        .filter(message::Column::Wamid.is_not_null())
        .order_by_desc(message::Column::Id)
        .one(db)
        .await?
    else {
        return Ok(false);
    };
    let Some(wamid) = latest.wamid.clone() else {
        return Ok(false);
    };
    let now = Utc::now();
    let txn = crate::store::begin_write(db).await?;
    let marked = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::value(DeliveryStatus::Read))
        .col_expr(message::Column::UpdatedAt, Expr::value(now))
        .filter(message::Column::ConversationId.eq(conversation_id.to_string()))
        .filter(message::Column::Direction.eq(MessageDirection::In))
        .filter(message::Column::Status.eq(DeliveryStatus::Received))
        .filter(message::Column::Id.lte(latest.id))
        .exec(&txn)
        .await?;
    // Another tab marked them first: nothing more to tell Meta.
    if marked.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    outbox::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        message_id: Set(latest.id),
        channel_id: Set(latest.channel_id),
        status: Set(OutboxStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_by: Set(None),
        claimed_until: Set(None),
        recipient: Set(None),
        kind: Set(OutboxKind::Read),
        body: Set(json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid})),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(phone: Option<&str>, user_id: Option<&str>) -> ContactView {
        ContactView {
            id: crate::ids::ContactId::new(),
            phone: phone.map(Into::into),
            user_id: user_id.map(Into::into),
            name: None,
            username: None,
        }
    }

    #[test]
    fn replies_go_to_the_phone_or_else_the_business_scoped_id() {
        let body = text_body(&contact(Some("447700900101"), Some("GB.1")), "hi").unwrap();
        assert_eq!(body["to"], "447700900101");
        assert!(body.get("recipient").is_none());
        assert_eq!(body["text"]["body"], "hi");
        let body = text_body(&contact(None, Some("AE.9")), "hi").unwrap();
        assert_eq!(body["recipient"], "AE.9");
        assert!(text_body(&contact(None, None), "hi").is_none());
    }

    #[test]
    fn media_replies_are_checked_and_shaped_like_meta() {
        let media = MediaRequest::parse(json!({"kind": "image", "link": "https://cdn.example/a.jpg", "caption": "Your receipt"})).unwrap();
        let body = media_body(&contact(Some("447700900101"), None), &media).unwrap();
        assert_eq!(body["type"], "image");
        assert_eq!(
            body["image"],
            json!({"link": "https://cdn.example/a.jpg", "caption": "Your receipt"})
        );
        assert!(MediaRequest::parse(json!({"kind": "image"})).is_err());
        assert!(MediaRequest::parse(json!({"kind": "image", "link": "ftp://x", })).is_err());
        assert!(MediaRequest::parse(json!({"kind": "gif", "id": "1"})).is_err());
        assert!(MediaRequest::parse(json!({"kind": "audio", "id": "1", "caption": "x"})).is_err());
        assert!(MediaRequest::parse(json!({"kind": "image", "id": "1", "filename": "x"})).is_err());
        assert!(
            MediaRequest::parse(json!({"kind": "document", "id": "1", "filename": "x.pdf"}))
                .is_ok()
        );
    }
}
