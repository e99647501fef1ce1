//! A contact's rights over their personal data (the product's privacy notice): finding a
//! contact, and data requests carried out at once where they can be: access and export (the
//! whole record, as JSON or a readable page), correction, restriction (kept, not worked on: no
//! replies), objection (no marketing templates), erasure (the contact's personal data removed
//! from every conversation, message, status, note, outbox row and media file). Retention by
//! workspace is [`apply_retention`]. Every request is audited without the data itself.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{self, AuditKind, AuditRecord};
use crate::auth::Principal;
use crate::authz::Action;
use crate::error::EngineError;
use crate::html::escape;
use crate::ids::{ContactId, DataRequestId, WorkspaceId};
use crate::inbox::{ConversationView, MessageView, Page, PageRequest, conversation_view};
use crate::store::entity::message::MessageDirection;
use crate::store::entity::outbox::OutboxStatus;
use crate::store::entity::{
    audit_event, channel, contact, conversation, conversation_note, data_request, media_file,
    message, message_status, outbox, workspace,
};

/// What may be asked.
pub const KINDS: [&str; 6] = [
    "access",
    "export",
    "correction",
    "restriction",
    "objection",
    "erasure",
];

/// A month, the legal deadline for an answer.
const DUE_DAYS: i64 = 30;

/// A contact as an administrator sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ContactRecord {
    pub id: ContactId,
    pub workspace_id: WorkspaceId,
    pub phone: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub restricted: bool,
    pub objected: bool,
    pub erased_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<contact::Model> for ContactRecord {
    fn from(row: contact::Model) -> Self {
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            phone: row.phone,
            user_id: row.user_id,
            name: row.name,
            username: row.username,
            restricted: row.restricted,
            objected: row.objected,
            erased_at: row.erased_at,
            created_at: row.created_at,
        }
    }
}

/// Supervisors and admins look contacts up (agents see them through their conversations).
fn contact_scope(caller: &Principal) -> Result<Option<WorkspaceId>, EngineError> {
    caller.require(Action::LookUpContacts)?;
    Ok(caller.workspace())
}

/// Contacts by phone number (digits; a leading `+` and spaces are ignored).
pub async fn find_contacts(
    db: &DatabaseConnection,
    caller: &Principal,
    phone: &str,
) -> Result<Vec<ContactRecord>, EngineError> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(EngineError::Validation(
            "`phone` is the contact's number, digits with country code".into(),
        ));
    }
    let mut query = contact::Entity::find().filter(contact::Column::Phone.eq(digits));
    if let Some(workspace) = contact_scope(caller)? {
        query = query.filter(contact::Column::WorkspaceId.eq(workspace.to_string()));
    }
    Ok(query
        .order_by_asc(contact::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDataRequest {
    pub contact_id: String,
    /// `access`, `export`, `correction`, `restriction`, `objection` or `erasure`.
    pub kind: String,
    /// For a correction: `{name?, username?}`.
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Value>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DataRequestView {
    pub id: DataRequestId,
    pub contact_id: ContactId,
    pub kind: String,
    /// `completed`, or `pending` when someone must act.
    pub status: String,
    pub due_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<data_request::Model> for DataRequestView {
    fn from(row: data_request::Model) -> Self {
        Self {
            id: row.id,
            contact_id: row.contact_id,
            kind: row.kind,
            status: row.status,
            due_at: row.due_at,
            completed_at: row.completed_at,
            created_at: row.created_at,
        }
    }
}

/// What a request did, for the caller to finish (media files to delete from disk).
pub struct Carried {
    pub request: DataRequestView,
    /// Media files (relative to the media folder) an erasure removed from the database.
    pub media_to_delete: Vec<String>,
}

async fn admin_contact(
    db: &DatabaseConnection,
    caller: &Principal,
    contact_id: &str,
) -> Result<contact::Model, EngineError> {
    let Ok(contact_id) = contact_id.parse::<ContactId>() else {
        return Err(EngineError::NotFound("contact"));
    };
    let found = contact::Entity::find_by_id(contact_id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("contact"))?;
    if !caller.is_member_of(found.workspace_id) {
        return Err(EngineError::NotFound("contact"));
    }
    caller.require(Action::ManageDataRequests)?;
    Ok(found)
}

fn requester(caller: &Principal) -> Option<String> {
    caller.agent().map(|agent| agent.agent_id.to_string())
}

/// Records a request and carries it out at once.
pub async fn create_request(
    db: &DatabaseConnection,
    caller: &Principal,
    eraser: &crate::crypto::WamidEraser,
    input: NewDataRequest,
) -> Result<Carried, EngineError> {
    if !KINDS.contains(&input.kind.as_str()) {
        return Err(EngineError::Validation(format!(
            "`kind` is one of {}",
            KINDS.join(", ")
        )));
    }
    let found = admin_contact(db, caller, &input.contact_id).await?;
    let correction = match (input.kind.as_str(), &input.changes) {
        ("correction", Some(Value::Object(changes))) => {
            if changes.is_empty() || changes.keys().any(|k| k != "name" && k != "username") {
                return Err(EngineError::Validation(
                    "a correction changes `name` and/or `username` (the number is the contact's identity: erase and let them write again)".into(),
                ));
            }
            if changes.values().any(|v| !(v.is_string() || v.is_null())) {
                return Err(EngineError::Validation(
                    "corrected values are strings, or null to clear".into(),
                ));
            }
            Some(changes.clone())
        }
        ("correction", _) => {
            return Err(EngineError::Validation(
                "a correction needs `changes`: {name?, username?}".into(),
            ));
        }
        (_, Some(_)) => {
            return Err(EngineError::Validation(
                "only a correction takes `changes`".into(),
            ));
        }
        _ => None,
    };
    if found.erased_at.is_some() && input.kind != "access" && input.kind != "export" {
        return Err(EngineError::Conflict(
            "this contact's personal data was erased".into(),
        ));
    }
    let now = Utc::now();
    let txn = crate::store::begin_write(db).await?;
    let mut media_to_delete = Vec::new();
    let mut contact_row = found.clone().into_active_model();
    match input.kind.as_str() {
        "correction" => {
            if let Some(changes) = &correction {
                let text = |key: &str| changes.get(key).and_then(Value::as_str).map(str::to_owned);
                if changes.contains_key("name") {
                    contact_row.name = Set(text("name"));
                }
                if changes.contains_key("username") {
                    contact_row.username = Set(text("username"));
                }
            }
        }
        "restriction" => contact_row.restricted = Set(true),
        "objection" => contact_row.objected = Set(true),
        "erasure" => {
            media_to_delete = erase(&txn, eraser, found.id).await?;
            contact_row.phone = Set(None);
            contact_row.user_id = Set(None);
            contact_row.name = Set(None);
            contact_row.username = Set(None);
            contact_row.erased_at = Set(Some(now));
        }
        _ => {}
    }
    contact_row.updated_at = Set(now);
    contact_row.update(&txn).await?;
    let row = data_request::ActiveModel {
        id: Set(DataRequestId::new()),
        workspace_id: Set(found.workspace_id),
        contact_id: Set(found.id),
        kind: Set(input.kind.clone()),
        status: Set("completed".into()),
        // What was changed is named, never its values.
        changes: Set(correction.map(|c| json!(c.keys().collect::<Vec<_>>()))),
        requested_by: Set(requester(caller)),
        created_at: Set(now),
        due_at: Set(now + chrono::Duration::days(DUE_DAYS)),
        completed_at: Set(Some(now)),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        AuditRecord {
            workspace_id: Some(found.workspace_id),
            conversation_id: None,
            agent_id: caller.agent().map(|agent| agent.agent_id),
            kind: AuditKind::DataRequest(
                KINDS
                    .into_iter()
                    .find(|kind| *kind == input.kind)
                    .unwrap_or("unknown"),
            ),
            reason: Some(json!({"data_request_id": row.id, "contact_id": found.id})),
            text: format!("{} request carried out for a contact", input.kind),
            at: None,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(Carried {
        request: row.into(),
        media_to_delete,
    })
}

/// Removes a contact's personal data from everything that holds it; answers the media files to
/// delete from disk once committed.
async fn erase(
    txn: &impl ConnectionTrait,
    eraser: &crate::crypto::WamidEraser,
    contact_id: ContactId,
) -> Result<Vec<String>, EngineError> {
    let conversations: Vec<String> = conversation::Entity::find()
        .filter(conversation::Column::ContactId.eq(contact_id))
        .select_only()
        .column(conversation::Column::Id)
        .into_tuple()
        .all(txn)
        .await?;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = message::Entity::find()
        .filter(message::Column::ConversationId.is_in(conversations.clone()))
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::PhoneNumberId)
        .column(message::Column::Wamid)
        .column(message::Column::ContextWamid)
        .into_tuple()
        .all(txn)
        .await?;
    // Meta's wamids encode the customer's number: each becomes its keyed tag, which ingest
    // still recognises (a retry of an erased message stays a duplicate).
    let tag = |number: &str, wamid: &Option<String>| {
        wamid
            .as_deref()
            .filter(|w| !w.starts_with(crate::crypto::ERASED_WAMID_PREFIX))
            .map(|w| eraser.tag(number, w))
    };
    for (id, number, wamid, context) in &rows {
        let (wamid_tag, context_tag) = (tag(number, wamid), tag(number, context));
        if wamid_tag.is_none() && context_tag.is_none() {
            continue;
        }
        let mut update = message::Entity::update_many();
        if let Some(wamid_tag) = &wamid_tag {
            update = update.col_expr(message::Column::Wamid, Expr::value(wamid_tag.clone()));
        }
        if let Some(context_tag) = context_tag {
            update = update.col_expr(message::Column::ContextWamid, Expr::value(context_tag));
        }
        update
            .filter(message::Column::Id.eq(id.clone()))
            .exec(txn)
            .await?;
        if let Some(wamid_tag) = wamid_tag {
            message_status::Entity::update_many()
                .col_expr(message_status::Column::Wamid, Expr::value(wamid_tag))
                .filter(message_status::Column::MessageId.eq(id.clone()))
                .exec(txn)
                .await?;
        }
    }
    // Their channels' ingest looks wamids up by tag too from now on.
    let mut numbers: Vec<String> = rows.iter().map(|(_, number, ..)| number.clone()).collect();
    numbers.sort();
    numbers.dedup();
    if !numbers.is_empty() {
        channel::Entity::update_many()
            .col_expr(channel::Column::HasErasedMessages, Expr::value(true))
            .filter(channel::Column::PhoneNumberId.is_in(numbers))
            .exec(txn)
            .await?;
    }
    let messages: Vec<String> = rows.into_iter().map(|(id, ..)| id).collect();
    message::Entity::update_many()
        .col_expr(message::Column::Text, Expr::value(Option::<String>::None))
        .col_expr(
            message::Column::MediaId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            message::Column::Reaction,
            Expr::value(Option::<String>::None),
        )
        .col_expr(message::Column::Raw, Expr::value(Value::Null))
        .filter(message::Column::ConversationId.is_in(conversations.clone()))
        .exec(txn)
        .await?;
    message_status::Entity::update_many()
        .col_expr(
            message_status::Column::RecipientId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(message_status::Column::Raw, Expr::value(Value::Null))
        .filter(message_status::Column::MessageId.is_in(messages.clone()))
        .exec(txn)
        .await?;
    // Nothing queued for them goes out any more, and the queued bodies lose their words.
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Body, Expr::value(json!({})))
        .col_expr(
            outbox::Column::Recipient,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            outbox::Column::Status,
            Expr::case(
                outbox::Column::Status.eq(OutboxStatus::Pending),
                OutboxStatus::Failed,
            )
            .finally(Expr::col(outbox::Column::Status))
            .into(),
        )
        .filter(outbox::Column::MessageId.is_in(messages))
        .exec(txn)
        .await?;
    conversation_note::Entity::delete_many()
        .filter(conversation_note::Column::ConversationId.is_in(conversations.clone()))
        .exec(txn)
        .await?;
    conversation::Entity::update_many()
        .col_expr(conversation::Column::Tags, Expr::value("[]"))
        .filter(conversation::Column::Id.is_in(conversations.clone()))
        .exec(txn)
        .await?;
    let files: Vec<Option<String>> = media_file::Entity::find()
        .filter(media_file::Column::ConversationId.is_in(conversations.clone()))
        .select_only()
        .column(media_file::Column::Path)
        .into_tuple()
        .all(txn)
        .await?;
    media_file::Entity::delete_many()
        .filter(media_file::Column::ConversationId.is_in(conversations))
        .exec(txn)
        .await?;
    Ok(files.into_iter().flatten().collect())
}

async fn visible_request(
    db: &DatabaseConnection,
    caller: &Principal,
    id: DataRequestId,
) -> Result<data_request::Model, EngineError> {
    let row = data_request::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("data request"))?;
    if !caller.is_member_of(row.workspace_id) {
        return Err(EngineError::NotFound("data request"));
    }
    caller.require(Action::ManageDataRequests)?;
    Ok(row)
}

pub async fn get_request(
    db: &DatabaseConnection,
    caller: &Principal,
    id: DataRequestId,
) -> Result<DataRequestView, EngineError> {
    Ok(visible_request(db, caller, id).await?.into())
}

/// The caller's workspace's requests, oldest first (the installation token sees all).
pub async fn list_requests(
    db: &DatabaseConnection,
    caller: &Principal,
    page: &PageRequest,
) -> Result<Page<DataRequestView>, EngineError> {
    let limit = page.limit()?;
    let mut query = data_request::Entity::find();
    caller.require(Action::ManageDataRequests)?;
    if let Some(workspace) = caller.workspace() {
        query = query.filter(data_request::Column::WorkspaceId.eq(workspace.to_string()));
    }
    if let Some(cursor) = &page.cursor {
        query = query.filter(data_request::Column::Id.gt(cursor.clone()));
    }
    let mut rows = query
        .order_by_asc(data_request::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = crate::inbox::next_cursor(&mut rows, limit, |r| r.id.to_string());
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
}

/// Everything held about the contact of an access or export request.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Export {
    pub request: DataRequestView,
    pub contact: ContactRecord,
    pub conversations: Vec<ExportedConversation>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedConversation {
    pub conversation: ConversationView,
    pub messages: Vec<MessageView>,
    pub notes: Vec<ExportedNote>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedNote {
    pub text: String,
    pub created_at: DateTime<Utc>,
}

pub async fn export(
    db: &DatabaseConnection,
    caller: &Principal,
    id: DataRequestId,
) -> Result<Export, EngineError> {
    let request = visible_request(db, caller, id).await?;
    if request.kind != "access" && request.kind != "export" {
        return Err(EngineError::Validation(
            "only an access or export request has an export".into(),
        ));
    }
    let found = contact::Entity::find_by_id(request.contact_id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("contact"))?;
    let rows = conversation::Entity::find()
        .filter(conversation::Column::ContactId.eq(found.id))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    let mut conversations = Vec::with_capacity(rows.len());
    for row in rows {
        let messages = message::Entity::find()
            .filter(message::Column::ConversationId.eq(row.id))
            .order_by_asc(message::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        let notes = conversation_note::Entity::find()
            .filter(conversation_note::Column::ConversationId.eq(row.id))
            .order_by_asc(conversation_note::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(|n| ExportedNote {
                text: n.text,
                created_at: n.created_at,
            })
            .collect();
        conversations.push(ExportedConversation {
            conversation: conversation_view(row, Some(found.clone())),
            messages,
            notes,
        });
    }
    Ok(Export {
        request: request.into(),
        contact: found.into(),
        conversations,
        generated_at: Utc::now(),
    })
}

/// The export as a page a person can read (every value escaped).
pub fn export_html(export: &Export) -> String {
    let contact = &export.contact;
    let field = |label: &str, value: Option<&str>| {
        format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(value.unwrap_or("—"))
        )
    };
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Your data</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         th{{text-align:left;padding-right:1rem;color:#555}}.in{{color:#0b5}}.out{{color:#05b}}li{{margin:.3rem 0}}</style>\
         <h1>The data we hold about you</h1><p>Generated {}.</p><table>{}{}{}{}</table>",
        export.generated_at.to_rfc3339(),
        field("Name", contact.name.as_deref()),
        field("Phone", contact.phone.as_deref()),
        field("WhatsApp user id", contact.user_id.as_deref()),
        field("Username", contact.username.as_deref()),
    );
    for exported in &export.conversations {
        page.push_str(&format!(
            "<h2>Conversation of {}</h2><ul>",
            escape(&exported.conversation.created_at.to_rfc3339())
        ));
        for message in &exported.messages {
            let who = if message.direction == MessageDirection::In {
                "You"
            } else {
                "Us"
            };
            page.push_str(&format!(
                "<li class=\"{}\"><b>{who}</b> · {} · {}: {}</li>",
                message.direction.as_str(),
                escape(&message.timestamp.to_rfc3339()),
                escape(&message.kind),
                escape(message.text.as_deref().unwrap_or(""))
            ));
        }
        page.push_str("</ul>");
        if !exported.notes.is_empty() {
            page.push_str("<h3>Notes our agents kept</h3><ul>");
            for note in &exported.notes {
                page.push_str(&format!("<li>{}</li>", escape(&note.text)));
            }
            page.push_str("</ul>");
        }
    }
    page.push_str("</html>");
    page
}

/// Refuses a reply the contact's requests forbid: any reply to a restricted contact, a
/// marketing template to one who objected.
pub async fn check_may_contact(
    db: &impl ConnectionTrait,
    contact_id: ContactId,
    marketing: bool,
) -> Result<(), EngineError> {
    let Some(found) = contact::Entity::find_by_id(contact_id).one(db).await? else {
        return Ok(());
    };
    // The phone number and user id are gone, but a running conversation may still hold them:
    // nothing goes to an erased contact.
    if found.erased_at.is_some() {
        return Err(EngineError::Validation(
            "the customer's personal data was erased: nothing can be sent to them".into(),
        ));
    }
    if found.restricted {
        return Err(EngineError::Validation(
            "the customer restricted the processing of their data: no replies can be sent".into(),
        ));
    }
    if marketing && found.objected {
        return Err(EngineError::Validation(
            "the customer objected to marketing: send a utility template or a reply instead".into(),
        ));
    }
    Ok(())
}

/// What one retention pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub messages: u64,
    pub audit_events: u64,
    /// Media files (relative to the media folder) to delete from disk.
    pub media_to_delete: Vec<String>,
}

/// Removes, per workspace, what is older than its retention: messages (with their statuses),
/// media, audit events. Workspaces without a retention keep everything.
pub async fn apply_retention(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<RetentionReport, EngineError> {
    let mut report = RetentionReport::default();
    for workspace in workspace::Entity::find().all(db).await? {
        let before = |days: i32| now - chrono::Duration::days(i64::from(days));
        if let Some(days) = workspace.retention_media_days {
            let old = media_file::Entity::find()
                .filter(media_file::Column::WorkspaceId.eq(workspace.id))
                .filter(media_file::Column::CreatedAt.lt(before(days)))
                .all(db)
                .await?;
            media_file::Entity::delete_many()
                .filter(media_file::Column::MessageId.is_in(old.iter().map(|m| m.message_id)))
                .exec(db)
                .await?;
            report
                .media_to_delete
                .extend(old.into_iter().filter_map(|m| m.path));
        }
        if let Some(days) = workspace.retention_message_days {
            let old: Vec<String> = message::Entity::find()
                .filter(message::Column::WorkspaceId.eq(workspace.id))
                .filter(message::Column::CreatedAt.lt(before(days)))
                .select_only()
                .column(message::Column::Id)
                .into_tuple()
                .all(db)
                .await?;
            for chunk in old.chunks(500) {
                message_status::Entity::delete_many()
                    .filter(message_status::Column::MessageId.is_in(chunk.to_vec()))
                    .exec(db)
                    .await?;
                let files: Vec<Option<String>> = media_file::Entity::find()
                    .filter(media_file::Column::MessageId.is_in(chunk.to_vec()))
                    .select_only()
                    .column(media_file::Column::Path)
                    .into_tuple()
                    .all(db)
                    .await?;
                report.media_to_delete.extend(files.into_iter().flatten());
                media_file::Entity::delete_many()
                    .filter(media_file::Column::MessageId.is_in(chunk.to_vec()))
                    .exec(db)
                    .await?;
                // Sent or failed outbox rows go with their message; pending ones stay sendable.
                outbox::Entity::delete_many()
                    .filter(outbox::Column::MessageId.is_in(chunk.to_vec()))
                    .filter(outbox::Column::Status.ne(OutboxStatus::Pending))
                    .exec(db)
                    .await?;
                let deleted = message::Entity::delete_many()
                    .filter(message::Column::Id.is_in(chunk.to_vec()))
                    .exec(db)
                    .await?;
                report.messages += deleted.rows_affected;
            }
        }
        if let Some(days) = workspace.retention_audit_days {
            let deleted = audit_event::Entity::delete_many()
                .filter(audit_event::Column::WorkspaceId.eq(workspace.id))
                .filter(audit_event::Column::CreatedAt.lt(before(days)))
                .exec(db)
                .await?;
            report.audit_events += deleted.rows_affected;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readable_export_escapes_what_customers_wrote() {
        let now = Utc::now();
        let export = Export {
            request: DataRequestView {
                id: DataRequestId::new(),
                contact_id: ContactId::new(),
                kind: "export".into(),
                status: "completed".into(),
                due_at: now,
                completed_at: Some(now),
                created_at: now,
            },
            contact: ContactRecord {
                id: ContactId::new(),
                workspace_id: WorkspaceId::new(),
                phone: Some("447700900001".into()),
                user_id: None,
                name: Some("<script>alert(1)</script>".into()),
                username: None,
                restricted: false,
                objected: false,
                erased_at: None,
                created_at: now,
            },
            conversations: vec![],
            generated_at: now,
        };
        let page = export_html(&export);
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("447700900001"));
    }
}
