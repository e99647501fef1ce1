//! Conversations, their messages and their audit, as each caller may see them.
//!
//! Scope: an agent sees the conversations it holds and the waiting ones of its teams; a
//! supervisor its teams'; an admin (and the installation token) its workspace's. Anything
//! outside the scope is `NotFound`, so that ids of other teams and tenants stay invisible.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditView;
use crate::auth::{Principal, Role};
use crate::authz::Action;
use crate::error::EngineError;
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, MessageId, TeamId, WorkspaceId};
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::message::MessageDirection;
use crate::store::entity::{audit_event, contact, conversation, message};

/// Most items one page may hold.
pub const MAX_PAGE: u64 = 500;
/// Items per page when the caller names no limit.
pub const DEFAULT_PAGE: u64 = 50;

/// A page of a list, with the cursor for the next one (`None` at the end).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `?limit=&cursor=`, validated.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub(crate) fn limit(&self) -> Result<u64, EngineError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
            Some(_) => Err(EngineError::Validation(format!(
                "`limit` must be between 1 and {MAX_PAGE}"
            ))),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    pub id: ContactId,
    pub phone: Option<String>,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
}

impl From<contact::Model> for ContactView {
    fn from(row: contact::Model) -> Self {
        Self {
            id: row.id,
            phone: row.phone,
            user_id: row.user_id,
            name: row.name,
            username: row.username,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    pub id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub status: ConversationStatus,
    pub team_id: TeamId,
    pub channel_id: ChannelId,
    pub assigned_agent_id: Option<AgentId>,
    pub contact: Option<ContactView>,
    pub priority: i32,
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// When free-form replies stop being allowed (24 h after the customer's last message).
    pub window_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Labels agents put on the conversation (`vip`, `billing`, ...).
    pub tags: Vec<String>,
    /// Whether its team's calendar is open now (a team without one is always open).
    pub within_hours: bool,
    /// The SLA of the current cycle; null when its team has no policy.
    pub sla: Option<crate::time::clocks::SlaView>,
}

pub fn conversation_view(
    row: conversation::Model,
    contact: Option<contact::Model>,
) -> ConversationView {
    let sla = crate::time::clocks::Clocks::from_row(&row).view();
    ConversationView {
        id: row.id,
        workspace_id: row.workspace_id,
        status: row.status,
        team_id: row.team_id,
        channel_id: row.channel_id,
        assigned_agent_id: row.assigned_agent_id,
        contact: contact.map(Into::into),
        priority: row.priority,
        last_inbound_at: row.last_inbound_at,
        window_expires_at: row.window_expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
        resolved_at: row.resolved_at,
        tags: serde_json::from_str(&row.tags).unwrap_or_default(),
        within_hours: true,
        sla,
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub wamid: Option<String>,
    pub direction: MessageDirection,
    /// Meta's message type (`text`, `image`, ...); unknown types are `unsupported`.
    pub kind: String,
    pub text: Option<String>,
    /// Meta's time for the message.
    pub timestamp: DateTime<Utc>,
    pub status: crate::meta::DeliveryStatus,
    pub media_id: Option<String>,
    /// The quoted, reacted-to, edited or revoked message.
    pub context_wamid: Option<String>,
    /// The customer's current reaction to this message.
    pub reaction: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Sent by WaOS itself (an out-of-hours reply, an automation), not by an agent.
    pub automated: bool,
    /// The id of the quick-reply button or list row the customer chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button_payload: Option<String>,
}

impl From<message::Model> for MessageView {
    fn from(row: message::Model) -> Self {
        Self {
            id: row.id,
            wamid: row.wamid,
            direction: row.direction,
            kind: row.kind,
            text: row.text,
            timestamp: row.provider_timestamp,
            status: row.status,
            media_id: row.media_id,
            context_wamid: row.context_wamid,
            reaction: row.reaction,
            error: row.error,
            automated: row.automated,
            button_payload: row.button_payload,
        }
    }
}

/// The conversations `caller` may see, as a query condition.
pub(crate) fn scope(caller: &Principal) -> Condition {
    let agent = match caller {
        Principal::Installation => return Condition::all(),
        // An integration acts for its whole workspace.
        Principal::Token(token) => {
            return Condition::all()
                .add(conversation::Column::WorkspaceId.eq(token.workspace_id.to_string()));
        }
        Principal::Agent(agent) => agent,
    };
    let workspace = conversation::Column::WorkspaceId.eq(agent.workspace_id.to_string());
    let teams: Vec<String> = agent.team_ids.iter().map(ToString::to_string).collect();
    match agent.role {
        Role::Admin => Condition::all().add(workspace),
        Role::Supervisor => Condition::all()
            .add(workspace)
            .add(conversation::Column::TeamId.is_in(teams)),
        Role::Agent => Condition::all().add(workspace).add(
            Condition::any()
                .add(conversation::Column::AssignedAgentId.eq(agent.agent_id.to_string()))
                .add(
                    Condition::all()
                        .add(conversation::Column::Status.eq(ConversationStatus::Waiting))
                        .add(conversation::Column::TeamId.is_in(teams)),
                ),
        ),
    }
}

fn scoped(caller: &Principal) -> Select<conversation::Entity> {
    conversation::Entity::find().filter(scope(caller))
}

pub async fn list_conversations(
    db: &DatabaseConnection,
    caller: &Principal,
    status: Option<ConversationStatus>,
    page: &PageRequest,
) -> Result<Page<ConversationView>, EngineError> {
    caller.require(Action::ReadConversations)?;
    let limit = page.limit()?;
    let mut query = scoped(caller);
    if let Some(status) = status {
        query = query.filter(conversation::Column::Status.eq(status));
    }
    if let Some(cursor) = &page.cursor {
        query = query.filter(conversation::Column::Id.gt(cursor.clone()));
    }
    let mut rows = query
        .order_by_asc(conversation::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |row| row.id.to_string());
    let contacts = contact::Entity::find()
        .filter(contact::Column::Id.is_in(rows.iter().map(|row| row.contact_id)))
        .all(db)
        .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let contact = contacts.iter().find(|c| c.id == row.contact_id).cloned();
            conversation_view(row, contact)
        })
        .collect::<Vec<_>>();
    let mut items = items;
    crate::time::settings::mark_within_hours(db, &mut items, Utc::now()).await?;
    Ok(Page { items, next_cursor })
}

pub(crate) fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: u64,
    key: impl Fn(&T) -> String,
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    }
}

pub(crate) async fn find_conversation(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
) -> Result<conversation::Model, EngineError> {
    caller.require(Action::ReadConversations)?;
    scoped(caller)
        .filter(conversation::Column::Id.eq(id.to_string()))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("conversation"))
}

pub async fn get_conversation(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
) -> Result<ConversationView, EngineError> {
    let row = find_conversation(db, caller, id).await?;
    let contact = contact::Entity::find_by_id(row.contact_id).one(db).await?;
    let mut view = [conversation_view(row, contact)];
    crate::time::settings::mark_within_hours(db, &mut view, Utc::now()).await?;
    let [view] = view;
    Ok(view)
}

pub async fn list_messages(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
    page: &PageRequest,
) -> Result<Page<MessageView>, EngineError> {
    let limit = page.limit()?;
    let conversation = find_conversation(db, caller, id).await?;
    let mut query =
        message::Entity::find().filter(message::Column::ConversationId.eq(conversation.id));
    if let Some(cursor) = &page.cursor {
        query = query.filter(message::Column::Id.gt(cursor.clone()));
    }
    let mut rows = query
        .order_by_asc(message::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |row| row.id.to_string());
    Ok(Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
}

pub async fn conversation_audit(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
) -> Result<Vec<AuditView>, EngineError> {
    let conversation = find_conversation(db, caller, id).await?;
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::ConversationId.eq(conversation.id))
        .order_by_asc(audit_event::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
