//! Decoding of Meta's WhatsApp Cloud API webhook envelope, one item at a time.
//!
//! A body may carry many entries, changes, messages and statuses. Each message and status is
//! decoded on its own, so that one malformed item never loses the good ones beside it: a bad item
//! becomes [`Item::Undecodable`] and keeps its raw JSON. Unknown message types are kept as
//! `unsupported`, never dropped. Nothing here touches the database or the network.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `object` of a WhatsApp Business Account webhook.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// Message types this engine understands; anything else is stored as `unsupported`.
const KNOWN_KINDS: &[&str] = &[
    "text",
    "image",
    "video",
    "document",
    "sticker",
    "audio",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "unsupported",
    "edit",
    "revoke",
    "request_welcome",
];

/// The result of decoding one signed, parseable body.
#[derive(Debug)]
pub enum Envelope {
    /// Another product on the same Meta app (for example Messenger's `page`): acknowledged, ignored.
    OtherObject { object: String },
    /// A WhatsApp envelope and what it carries.
    WhatsApp(Batch),
}

/// Everything one WhatsApp webhook body carries, in body order.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    /// `field`s present in the body that this engine does not handle (logged and counted).
    pub ignored_fields: Vec<String>,
}

/// One unit of work from a webhook body.
#[derive(Debug)]
pub enum Item {
    Message(Box<InboundMessage>),
    Status(StatusUpdate),
    /// An item that could not be decoded; kept raw for an operator.
    Undecodable {
        phone_number_id: Option<String>,
        reason: String,
        raw: Value,
    },
    /// A `value.errors[]` entry: a problem Meta reports that is not tied to one message.
    MetaError {
        phone_number_id: Option<String>,
        code: Option<i64>,
        title: Option<String>,
        raw: Value,
    },
}

/// Who wrote: a phone number (`wa_id`) and/or a business-scoped user id, either alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    pub phone: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
}

/// A change to the customer's reaction on one of our messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub target_wamid: String,
    /// `None` when the reaction was removed (empty or missing emoji).
    pub emoji: Option<String>,
}

/// A customer's message, decoded enough to store, route and show it; `raw` keeps everything.
#[derive(Clone, Debug)]
pub struct InboundMessage {
    pub phone_number_id: String,
    pub wamid: String,
    pub sender: Sender,
    pub timestamp: DateTime<Utc>,
    /// One of [`KNOWN_KINDS`]; unknown types become `unsupported`.
    pub kind: String,
    /// What an agent reads: the body, caption, title or a short summary.
    pub text: Option<String>,
    pub media_id: Option<String>,
    /// The quoted message of a reply (never set for a forwarded message).
    pub context_wamid: Option<String>,
    pub reaction: Option<Reaction>,
    /// For `edit` and `revoke`: the message it changes.
    pub original_wamid: Option<String>,
    /// The id the business gave the quick-reply button or list row the customer chose
    /// (`button.payload`, `interactive.button_reply.id`, `interactive.list_reply.id`).
    pub button_payload: Option<String>,
    pub raw: Value,
}

/// A delivery report for one of our outbound messages.
#[derive(Clone, Debug)]
pub struct StatusUpdate {
    pub phone_number_id: String,
    pub wamid: String,
    pub status: String,
    pub timestamp: DateTime<Utc>,
    pub recipient_id: Option<String>,
    pub errors: Option<Value>,
    pub raw: Value,
}

pub use crate::store::entity::message::DeliveryStatus;

/// A status never moves back to a lower rank. Unknown statuses rank with `received`, the
/// lowest, and so never overwrite a known one.
pub fn status_rank(status: &str) -> usize {
    DeliveryStatus::parse(status).map_or(0, |status| status as usize)
}

/// What stands in for a character no database column can hold.
const UNSTORABLE_REPLACEMENT: &str = "\u{FFFD}";

/// Replaces the NUL characters of every string (and key) of a parsed body by U+FFFD: JSON may
/// carry `\u0000`, Postgres text and jsonb cannot, and one such item must not fail the commit
/// of every webhook batched with it (Meta would retry them all for ever). Answers how many
/// strings it changed.
pub fn make_storable(value: &mut Value) -> usize {
    fn clean(text: &mut String) -> usize {
        if text.contains('\0') {
            *text = text.replace('\0', UNSTORABLE_REPLACEMENT);
            1
        } else {
            0
        }
    }
    match value {
        Value::String(text) => clean(text),
        Value::Array(items) => items.iter_mut().map(make_storable).sum(),
        Value::Object(map) => {
            let mut changed = 0;
            if map.keys().any(|key| key.contains('\0')) {
                let entries = std::mem::take(map);
                for (mut key, item) in entries {
                    changed += clean(&mut key);
                    map.insert(key, item);
                }
            }
            changed + map.values_mut().map(make_storable).sum::<usize>()
        }
        _ => 0,
    }
}

/// Decodes a parsed body. Never fails: problems become [`Item::Undecodable`] entries.
pub fn decode(body: &Value) -> Envelope {
    let object = body.get("object").and_then(Value::as_str).unwrap_or("");
    if object != WHATSAPP_OBJECT {
        return Envelope::OtherObject {
            object: object.to_owned(),
        };
    }
    let mut batch = Batch::default();
    let entries = body.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten() {
            let field = change.get("field").and_then(Value::as_str).unwrap_or("");
            if field != "messages" {
                batch.ignored_fields.push(field.to_owned());
                continue;
            }
            match change.get("value") {
                Some(value) => decode_value(value, &mut batch.items),
                None => batch.items.push(Item::Undecodable {
                    phone_number_id: None,
                    reason: "change without a value".to_owned(),
                    raw: change.clone(),
                }),
            }
        }
    }
    Envelope::WhatsApp(batch)
}

fn decode_value(value: &Value, items: &mut Vec<Item>) {
    let phone_number_id = value
        .pointer("/metadata/phone_number_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let contacts = value
        .get("contacts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(phone_number_id) = phone_number_id else {
        // Without the receiving number nothing can be routed; keep the whole value.
        let has_items = ["messages", "statuses", "errors"]
            .iter()
            .any(|key| value.get(key).is_some());
        if has_items {
            items.push(Item::Undecodable {
                phone_number_id: None,
                reason: "value without metadata.phone_number_id".to_owned(),
                raw: value.clone(),
            });
        }
        return;
    };
    for message in value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        items.push(match decode_message(&phone_number_id, contacts, message) {
            Ok(message) => Item::Message(Box::new(message)),
            Err(reason) => Item::Undecodable {
                phone_number_id: Some(phone_number_id.clone()),
                reason,
                raw: message.clone(),
            },
        });
    }
    for status in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        items.push(match decode_status(&phone_number_id, status) {
            Ok(status) => Item::Status(status),
            Err(reason) => Item::Undecodable {
                phone_number_id: Some(phone_number_id.clone()),
                reason,
                raw: status.clone(),
            },
        });
    }
    for error in value
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        items.push(Item::MetaError {
            phone_number_id: Some(phone_number_id.clone()),
            code: error.get("code").and_then(Value::as_i64),
            title: error
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw: error.clone(),
        });
    }
}

/// A field that must be a string when present: a number or boolean there means a bad item.
fn optional_str<'a>(object: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

fn required_str<'a>(object: &'a Value, key: &str) -> Result<&'a str, String> {
    optional_str(object, key)?.ok_or_else(|| format!("`{key}` is missing"))
}

/// Unix seconds, as Meta's string or (leniently) as a number.
fn timestamp(object: &Value) -> Result<DateTime<Utc>, String> {
    let seconds = match object.get("timestamp") {
        Some(Value::String(text)) => text.parse::<i64>().ok(),
        Some(Value::Number(number)) => number.as_i64(),
        _ => None,
    }
    .ok_or_else(|| "`timestamp` is not unix seconds".to_owned())?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| "`timestamp` is out of range".to_owned())
}

fn str_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

fn decode_sender(contacts: &[Value], message: &Value) -> Result<Sender, String> {
    let from = optional_str(message, "from")?.map(str::to_owned);
    let from_user_id = optional_str(message, "from_user_id")?.map(str::to_owned);
    let contact = contacts.iter().find(|contact| {
        let wa_id = contact.get("wa_id").and_then(Value::as_str);
        let user_id = contact.get("user_id").and_then(Value::as_str);
        (from.is_some() && wa_id == from.as_deref())
            || (from_user_id.is_some() && user_id == from_user_id.as_deref())
    });
    // A username-only customer with no `from` at all: the one contact of the value is the sender.
    let contact = contact.or(match (&from, &from_user_id, contacts) {
        (None, None, [only]) => Some(only),
        _ => None,
    });
    let sender = Sender {
        phone: from.or_else(|| contact.and_then(|c| str_at(c, "/wa_id"))),
        user_id: from_user_id.or_else(|| contact.and_then(|c| str_at(c, "/user_id"))),
        name: contact.and_then(|c| str_at(c, "/profile/name")),
        username: contact.and_then(|c| str_at(c, "/profile/username")),
    };
    if sender.phone.is_none() && sender.user_id.is_none() {
        return Err("no sender: neither `from` nor `from_user_id` nor a contact".to_owned());
    }
    Ok(sender)
}

fn decode_message(
    phone_number_id: &str,
    contacts: &[Value],
    message: &Value,
) -> Result<InboundMessage, String> {
    if !message.is_object() {
        return Err("message is not an object".to_owned());
    }
    let wamid = required_str(message, "id")?.to_owned();
    let sender = decode_sender(contacts, message)?;
    let timestamp = timestamp(message)?;
    let given_kind = required_str(message, "type")?;
    let kind = if KNOWN_KINDS.contains(&given_kind) {
        given_kind
    } else {
        "unsupported"
    };
    let content = Content::of(kind, message)?;
    let context_wamid = str_at(message, "/context/id");
    Ok(InboundMessage {
        phone_number_id: phone_number_id.to_owned(),
        wamid,
        sender,
        timestamp,
        kind: kind.to_owned(),
        text: content.text,
        media_id: content.media_id,
        context_wamid,
        reaction: content.reaction,
        original_wamid: content.original_wamid,
        button_payload: content.button_payload,
        raw: message.clone(),
    })
}

/// The readable part of a message of one kind.
#[derive(Default)]
struct Content {
    text: Option<String>,
    media_id: Option<String>,
    reaction: Option<Reaction>,
    original_wamid: Option<String>,
    button_payload: Option<String>,
}

impl Content {
    fn of(kind: &str, message: &Value) -> Result<Content, String> {
        let body = message.get(kind).unwrap_or(&Value::Null);
        let text = |text: Option<String>| Content {
            text,
            ..Content::default()
        };
        Ok(match kind {
            "text" => {
                if !body.is_object() {
                    return Err("`text` is not an object".to_owned());
                }
                text(Some(required_str(body, "body")?.to_owned()))
            }
            "image" | "video" | "document" | "sticker" | "audio" => Content {
                text: str_at(body, "/caption"),
                media_id: str_at(body, "/id"),
                ..Content::default()
            },
            "location" => text(location_text(body)),
            "contacts" => text(contacts_text(body)),
            "interactive" => Content {
                button_payload: str_at(body, "/button_reply/id")
                    .or_else(|| str_at(body, "/list_reply/id")),
                ..text(interactive_text(body))
            },
            "button" => Content {
                button_payload: str_at(body, "/payload"),
                ..text(str_at(body, "/text").or_else(|| str_at(body, "/payload")))
            },
            "reaction" => {
                let target_wamid = required_str(body, "message_id")?.to_owned();
                let emoji = str_at(body, "/emoji");
                Content {
                    text: emoji.clone(),
                    reaction: Some(Reaction {
                        target_wamid,
                        emoji,
                    }),
                    ..Content::default()
                }
            }
            "order" => text(order_text(body)),
            "system" => text(str_at(body, "/body")),
            "edit" => {
                let edited = body.get("message").unwrap_or(&Value::Null);
                let edited_kind = edited.get("type").and_then(Value::as_str).unwrap_or("");
                let inner = Content::of(edited_kind, edited).unwrap_or_default();
                Content {
                    original_wamid: Some(required_str(body, "original_message_id")?.to_owned()),
                    ..inner
                }
            }
            "revoke" => Content {
                original_wamid: Some(required_str(body, "original_message_id")?.to_owned()),
                ..Content::default()
            },
            _ => Content::default(),
        })
    }
}

fn location_text(body: &Value) -> Option<String> {
    let named = [str_at(body, "/name"), str_at(body, "/address")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    if !named.is_empty() {
        return Some(named.join(", "));
    }
    // Latitude and longitude arrive as numbers or as strings, depending on the sender.
    let coordinate = |key: &str| match body.get(key) {
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    Some(format!(
        "{},{}",
        coordinate("latitude")?,
        coordinate("longitude")?
    ))
}

fn contacts_text(body: &Value) -> Option<String> {
    let names = body
        .as_array()?
        .iter()
        .filter_map(|card| str_at(card, "/name/formatted_name"))
        .collect::<Vec<_>>();
    (!names.is_empty()).then(|| names.join(", "))
}

fn interactive_text(body: &Value) -> Option<String> {
    match body.get("type").and_then(Value::as_str)? {
        "button_reply" => str_at(body, "/button_reply/title"),
        "list_reply" => str_at(body, "/list_reply/title"),
        "nfm_reply" => str_at(body, "/nfm_reply/body").or(Some("flow response".to_owned())),
        "call_permission_reply" => str_at(body, "/call_permission_reply/response")
            .map(|response| format!("call permission: {response}")),
        _ => None,
    }
}

fn order_text(body: &Value) -> Option<String> {
    let count = body
        .get("product_items")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let summary = format!("order of {count} item(s)");
    Some(match str_at(body, "/text") {
        Some(text) => format!("{summary}: {text}"),
        None => summary,
    })
}

fn decode_status(phone_number_id: &str, status: &Value) -> Result<StatusUpdate, String> {
    if !status.is_object() {
        return Err("status is not an object".to_owned());
    }
    Ok(StatusUpdate {
        phone_number_id: phone_number_id.to_owned(),
        wamid: required_str(status, "id")?.to_owned(),
        status: required_str(status, "status")?.to_owned(),
        timestamp: timestamp(status)?,
        recipient_id: optional_str(status, "recipient_id")?.map(str::to_owned),
        errors: status.get("errors").cloned(),
        raw: status.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(value: Value) -> Value {
        json!({"object": WHATSAPP_OBJECT, "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]})
    }

    #[test]
    fn nul_characters_become_replacement_characters_everywhere() {
        let mut body: Value = serde_json::from_str(
            r#"{"a": "x\u0000y", "b": ["\u0000", 1, {"k\u0000": "fine"}], "c": "clean"}"#,
        )
        .unwrap();
        assert_eq!(make_storable(&mut body), 3);
        assert_eq!(body["a"], "x\u{FFFD}y");
        assert_eq!(body["b"][0], "\u{FFFD}");
        assert_eq!(body["b"][2]["k\u{FFFD}"], "fine");
        assert_eq!(body["c"], "clean");
        assert!(!body.to_string().contains("\\u0000"));
        assert_eq!(make_storable(&mut body), 0);
    }

    fn items(body: Value) -> Vec<Item> {
        match decode(&body) {
            Envelope::WhatsApp(batch) => batch.items,
            Envelope::OtherObject { object } => panic!("unexpected object {object}"),
        }
    }

    #[test]
    fn a_bad_message_does_not_lose_its_neighbour() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [
                {"from": 1, "id": 2, "timestamp": true, "type": "text", "text": "x"},
                {"from": "44", "id": "wamid.b", "timestamp": "1700000000", "type": "text", "text": {"body": "hi"}}
            ]
        }));
        let items = items(body);
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[0], Item::Undecodable { reason, .. } if reason.contains("not a string"))
        );
        assert!(matches!(&items[1], Item::Message(m) if m.text.as_deref() == Some("hi")));
    }

    #[test]
    fn unknown_types_are_kept_as_unsupported() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from": "44", "id": "w", "timestamp": "1", "type": "hologram", "hologram": {}}]
        }));
        let items = items(body);
        assert!(matches!(&items[0], Item::Message(m) if m.kind == "unsupported"));
    }

    #[test]
    fn username_only_sender_comes_from_the_single_contact() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "contacts": [{"profile": {"name": "Sara", "username": "sara"}, "user_id": "AE.9"}],
            "messages": [{"id": "w", "timestamp": "1", "type": "text", "text": {"body": "x"}}]
        }));
        let items = items(body);
        let Item::Message(message) = &items[0] else {
            panic!("expected a message")
        };
        assert_eq!(message.sender.phone, None);
        assert_eq!(message.sender.user_id.as_deref(), Some("AE.9"));
        assert_eq!(message.sender.username.as_deref(), Some("sara"));
    }

    #[test]
    fn removed_reaction_has_no_emoji() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from": "44", "id": "w", "timestamp": "1", "type": "reaction", "reaction": {"message_id": "t", "emoji": ""}}]
        }));
        let Item::Message(message) = &items(body)[0] else {
            panic!("expected a message")
        };
        assert_eq!(
            message.reaction,
            Some(Reaction {
                target_wamid: "t".into(),
                emoji: None
            })
        );
    }

    #[test]
    fn forwarded_context_is_not_a_reply() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from": "44", "id": "w", "timestamp": "1", "type": "video", "video": {"id": "m"}, "context": {"forwarded": true}}]
        }));
        let Item::Message(message) = &items(body)[0] else {
            panic!("expected a message")
        };
        assert_eq!(message.context_wamid, None);
        assert_eq!(message.media_id.as_deref(), Some("m"));
    }

    #[test]
    fn other_fields_and_objects_are_ignored() {
        assert!(matches!(
            decode(&json!({"object": "page"})),
            Envelope::OtherObject { .. }
        ));
        let body = json!({"object": WHATSAPP_OBJECT, "entry": [{"changes": [{"field": "calls", "value": {}}]}]});
        let Envelope::WhatsApp(batch) = decode(&body) else {
            panic!("expected whatsapp")
        };
        assert!(batch.items.is_empty());
        assert_eq!(batch.ignored_fields, vec!["calls".to_owned()]);
    }

    #[test]
    fn edits_and_revokes_name_the_original() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [
                {"from": "44", "id": "e", "timestamp": "1", "type": "edit", "edit": {"original_message_id": "o", "message": {"type": "text", "text": {"body": "fixed"}}}},
                {"from": "44", "id": "r", "timestamp": "1", "type": "revoke", "revoke": {"original_message_id": "o"}},
                {"from": "44", "id": "x", "timestamp": "1", "type": "revoke", "revoke": {}}
            ]
        }));
        let items = items(body);
        assert!(
            matches!(&items[0], Item::Message(m) if m.original_wamid.as_deref() == Some("o") && m.text.as_deref() == Some("fixed"))
        );
        assert!(
            matches!(&items[1], Item::Message(m) if m.kind == "revoke" && m.original_wamid.as_deref() == Some("o"))
        );
        assert!(matches!(&items[2], Item::Undecodable { .. }));
    }

    #[test]
    fn statuses_rank_monotonically() {
        assert!(status_rank("read") > status_rank("delivered"));
        assert!(status_rank("delivered") > status_rank("sent"));
        assert!(status_rank("failed") > status_rank("read"));
        assert_eq!(status_rank("deleted"), 0);
        assert!(status_rank("accepted") > status_rank("queued"));
        for (rank, status) in DeliveryStatus::ORDER.into_iter().enumerate() {
            assert_eq!(status_rank(status.as_str()), rank);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
    }
}

/// Arbitrary JSON shapes through the decoder (proptest): it never panics, every entry of a
/// `messages` or `statuses` array becomes exactly one item, a good message beside any junk is
/// always decoded, and the NUL replacement leaves no NUL behind.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Keys the decoder looks at, and anything else.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "type",
                "id",
                "from",
                "timestamp",
                "text",
                "body",
                "image",
                "caption",
                "context",
                "reaction",
                "message_id",
                "emoji",
                "interactive",
                "button",
                "payload",
                "status",
                "recipient_id",
                "errors",
                "contacts",
                "wa_id",
                "user_id",
                "profile",
                "name",
                "metadata",
                "phone_number_id",
                "messages",
                "statuses",
                "location",
                "edit",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            prop::sample::select(KNOWN_KINDS.to_vec()).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn good_message() -> Value {
        json!({"from": "447700900001", "id": "wamid.good", "timestamp": "1781600000",
               "type": "text", "text": {"body": "hello"}})
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn any_body_decodes_without_panicking(body in json_value()) {
            let _ = decode(&body);
            let _ = decode(&json!({"object": WHATSAPP_OBJECT, "entry": [body]}));
        }

        #[test]
        fn every_entry_is_one_item_and_junk_never_hides_a_good_message(
            junk in prop::collection::vec(json_value(), 0..6),
            statuses in prop::collection::vec(json_value(), 0..4),
            at in any::<prop::sample::Index>(),
        ) {
            let mut messages = junk.clone();
            let position = at.index(junk.len() + 1);
            messages.insert(position, good_message());
            let body = envelope(json!({
                "messaging_product": "whatsapp",
                "metadata": {"phone_number_id": "1155"},
                "messages": messages,
                "statuses": statuses,
            }));
            let Envelope::WhatsApp(batch) = decode(&body) else {
                panic!("a WhatsApp body");
            };
            prop_assert_eq!(batch.items.len(), junk.len() + 1 + statuses.len());
            // Items keep the body's order: the good message is where it was put.
            prop_assert!(matches!(&batch.items[position],
                Item::Message(m) if m.wamid == "wamid.good" && m.text.as_deref() == Some("hello")));
        }

        #[test]
        fn storable_bodies_hold_no_nul_and_cleaning_is_idempotent(mut body in json_value()) {
            make_storable(&mut body);
            prop_assert!(!holds_nul(&body));
            prop_assert_eq!(make_storable(&mut body), 0);
        }
    }

    fn envelope(value: Value) -> Value {
        json!({"object": WHATSAPP_OBJECT, "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]})
    }

    /// A NUL in any string or key (its JSON text is no guide: `"\\u0000"` is no NUL).
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(map) => map
                .iter()
                .any(|(key, item)| key.contains('\0') || holds_nul(item)),
            _ => false,
        }
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_no_nul() {
        let mut body: Value = serde_json::from_str(r#""5j4\\u0000""#).unwrap();
        assert_eq!(make_storable(&mut body), 0);
        assert!(!holds_nul(&body));
        assert_eq!(body.as_str(), Some("5j4\\u0000"));
    }
}
