//! Meta's message templates: what the sync stored, which may be sent, and how a template reply
//! is checked and previewed before it is queued. Syncing itself (HTTP) is the workers' job.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sea_orm::{QueryOrder, TransactionTrait};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::EngineError;
use crate::ids::ConversationId;
use crate::inbox::{ContactView, find_conversation};
use crate::store::entity::{channel, message_template};

/// A template as Meta lists it (`GET /{waba_id}/message_templates`) and as the console shows it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub category: String,
    pub status: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

impl From<message_template::Model> for TemplateView {
    fn from(row: message_template::Model) -> Self {
        Self {
            name: row.name,
            language: row.language,
            category: row.category,
            status: row.status,
            components: match row.components {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
        }
    }
}

/// A template reply as the console and the API send it (Meta's shape).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TemplateRequest {
    pub name: String,
    pub language: LanguageCode,
    #[serde(default)]
    pub components: Vec<Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct LanguageCode {
    pub code: String,
}

impl TemplateRequest {
    /// Parses and checks the shape; the error says what is wrong.
    pub fn parse(value: Value) -> Result<Self, String> {
        let request: TemplateRequest = serde_json::from_value(value)
            .map_err(|e| format!("a template is {{name, language:{{code}}, components}}: {e}"))?;
        let valid_name = !request.name.is_empty()
            && request.name.len() <= 512
            && request
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            return Err("a template name is lowercase letters, digits and underscores".into());
        }
        if request.language.code.is_empty() || request.language.code.len() > 16 {
            return Err("a template needs its `language.code` (like `en_US`)".into());
        }
        if request.components.iter().any(|c| !c.is_object()) {
            return Err("each template component is an object".into());
        }
        Ok(request)
    }

    /// The texts of the body's parameters, in order.
    fn body_parameters(&self) -> Vec<String> {
        self.components
            .iter()
            .filter(|c| {
                c.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("body"))
            })
            .flat_map(|c| {
                c.get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

/// The body text of a stored template (`{{1}}` placeholders and all).
fn body_text(template: &TemplateView) -> Option<&str> {
    template
        .components
        .iter()
        .find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("body"))
        })
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
}

/// How many distinct `{{n}}` placeholders a body has.
pub fn placeholder_count(text: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inside = after[..end].trim();
        if !inside.is_empty() {
            seen.insert(inside.to_owned());
        }
        rest = &after[end + 2..];
    }
    seen.len()
}

/// The body with its placeholders filled, for the agent's own view of what was sent.
pub fn preview(template: &TemplateView, request: &TemplateRequest) -> String {
    let Some(body) = body_text(template) else {
        return format!("[template {}]", template.name);
    };
    let mut text = body.to_owned();
    for (index, value) in request.body_parameters().iter().enumerate() {
        text = text.replace(&format!("{{{{{}}}}}", index + 1), value);
    }
    text
}

/// The Graph API body of a template message.
pub fn template_body(contact: &ContactView, request: &TemplateRequest) -> Option<Value> {
    let (field, address) = crate::outbound::recipient(contact)?;
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "template",
        "template": request,
    });
    body[field] = Value::String(address);
    Some(body)
}

/// Checks a template reply against what the sync stored for the channel's account, and answers
/// the text to show for it and whether it is marketing. Accounts never synced (no templates
/// stored) are left to Meta.
pub async fn check(
    db: &DatabaseConnection,
    channel_id: crate::ids::ChannelId,
    request: &TemplateRequest,
) -> Result<(String, bool), EngineError> {
    let waba_id = channel::Entity::find_by_id(channel_id)
        .one(db)
        .await?
        .and_then(|c| c.waba_id);
    let Some(waba_id) = waba_id else {
        return Ok((format!("[template {}]", request.name), false));
    };
    let known = message_template::Entity::find()
        .filter(message_template::Column::WabaId.eq(waba_id))
        .all(db)
        .await?;
    if known.is_empty() {
        return Ok((format!("[template {}]", request.name), false));
    }
    let Some(template) = known
        .into_iter()
        .map(TemplateView::from)
        .find(|t| t.name == request.name && t.language == request.language.code)
    else {
        return Err(EngineError::Validation(format!(
            "no template `{}` in `{}` on this number's account; sync the templates or check the name",
            request.name, request.language.code
        )));
    };
    if template.status != "APPROVED" {
        return Err(EngineError::Validation(format!(
            "template `{}` is {}; only approved templates can be sent",
            template.name, template.status
        )));
    }
    let expected = body_text(&template).map_or(0, placeholder_count);
    let given = request.body_parameters().len();
    if expected != given {
        return Err(EngineError::Validation(format!(
            "template `{}` takes {expected} body parameter(s), {given} given",
            template.name
        )));
    }
    Ok((
        preview(&template, request),
        template.category.eq_ignore_ascii_case("MARKETING"),
    ))
}

/// The approved templates a conversation's number may send, for the console's picker.
pub async fn for_conversation(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
) -> Result<Vec<TemplateView>, EngineError> {
    let conversation = find_conversation(db, caller, id).await?;
    let waba_id = channel::Entity::find_by_id(conversation.channel_id)
        .one(db)
        .await?
        .and_then(|c| c.waba_id);
    let Some(waba_id) = waba_id else {
        return Ok(Vec::new());
    };
    Ok(message_template::Entity::find()
        .filter(message_template::Column::WabaId.eq(waba_id))
        .filter(message_template::Column::Status.eq("APPROVED"))
        .order_by_asc(message_template::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Replaces an account's stored templates with what Meta listed.
pub async fn replace_synced(
    db: &DatabaseConnection,
    waba_id: &str,
    templates: Vec<TemplateView>,
) -> Result<usize, EngineError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    message_template::Entity::delete_many()
        .filter(message_template::Column::WabaId.eq(waba_id))
        .exec(&txn)
        .await?;
    let mut rows: Vec<message_template::ActiveModel> = Vec::new();
    for template in templates {
        // Meta lists one entry per (name, language); keep the first if it ever repeats one.
        if rows
            .iter()
            .any(|r| r.name.as_ref() == &template.name && r.language.as_ref() == &template.language)
        {
            continue;
        }
        rows.push(message_template::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            waba_id: Set(waba_id.to_owned()),
            name: Set(template.name),
            language: Set(template.language),
            category: Set(template.category),
            status: Set(template.status),
            components: Set(Value::Array(template.components)),
            synced_at: Set(now),
        });
    }
    let count = rows.len();
    if !rows.is_empty() {
        message_template::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting() -> TemplateView {
        TemplateView {
            name: "order_update".into(),
            language: "en_US".into(),
            category: "UTILITY".into(),
            status: "APPROVED".into(),
            components: vec![json!({"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{1}}"})],
        }
    }

    #[test]
    fn requests_are_checked_and_previewed() {
        assert!(
            TemplateRequest::parse(json!({"name": "Bad Name", "language": {"code": "en"}}))
                .is_err()
        );
        assert!(TemplateRequest::parse(json!({"name": "ok"})).is_err());
        let request = TemplateRequest::parse(json!({
            "name": "order_update", "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "text": "Ana"}, {"type": "text", "text": "#42"}]}]
        }))
        .unwrap();
        assert_eq!(placeholder_count("Hi {{1}}, order {{2}} ships {{1}}"), 2);
        assert_eq!(
            preview(&greeting(), &request),
            "Hi Ana, order #42 ships Ana"
        );
        let contact = ContactView {
            id: crate::ids::ContactId::new(),
            phone: Some("447700900101".into()),
            user_id: None,
            name: None,
            username: None,
        };
        let body = template_body(&contact, &request).unwrap();
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(body["to"], "447700900101");
    }
}
