//! Canned replies: saved answers an agent inserts by shortcut (`/greeting`), for the whole
//! workspace or one team, with `{{contact.name}}`-style placeholders filled in for the
//! conversation at hand before the agent sends them (as any reply: inside the window).
//!
//! Admins manage them; members list the workspace-wide ones and those of their teams.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

use crate::admin::{find_workspace, nullable, require_admin};
use crate::auth::{Principal, Role};
use crate::automation::placeholders;
use crate::error::EngineError;
use crate::ids::{CannedReplyId, ConversationId, TeamId, WorkspaceId};
use crate::store::entity::{agent, canned_reply, team};

/// Placeholders a canned reply may use.
pub const PLACEHOLDERS: &[&str] = &["contact.name", "contact.phone", "agent.name", "team.name"];
/// Longest shortcut.
pub const MAX_SHORTCUT_CHARS: usize = 32;

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCannedReply {
    /// Lowercase letters, digits, `-` and `_` (typed after `/` in the console).
    pub shortcut: String,
    pub text: String,
    /// Only this team's agents see it; none: the whole workspace.
    pub team_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedReplyPatch {
    pub shortcut: Option<String>,
    pub text: Option<String>,
    /// `null` makes it workspace-wide.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub team_id: Option<Option<String>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CannedReplyView {
    pub id: CannedReplyId,
    pub workspace_id: WorkspaceId,
    pub shortcut: String,
    /// As written, with its placeholders.
    pub text: String,
    pub team_id: Option<TeamId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<canned_reply::Model> for CannedReplyView {
    fn from(row: canned_reply::Model) -> Self {
        CannedReplyView {
            id: row.id,
            workspace_id: row.workspace_id,
            shortcut: row.shortcut,
            text: row.text,
            team_id: row.team_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn shortcut(value: &str) -> Result<String, EngineError> {
    let value = value.trim().trim_start_matches('/').to_lowercase();
    let valid = !value.is_empty()
        && value.chars().count() <= MAX_SHORTCUT_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(EngineError::Validation(format!(
            "`shortcut` is 1 to {MAX_SHORTCUT_CHARS} lowercase letters, digits, `-` or `_`"
        )));
    }
    Ok(value)
}

async fn check_team(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: &str,
) -> Result<TeamId, EngineError> {
    let Ok(id) = id.parse::<TeamId>() else {
        return Err(EngineError::NotFound("team"));
    };
    team::Entity::find_by_id(id)
        .filter(team::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .map(|t| t.id)
        .ok_or_else(|| {
            EngineError::Validation(format!("`team_id` {id:?} names nothing in this workspace"))
        })
}

pub async fn create(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewCannedReply,
) -> Result<CannedReplyView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    placeholders::check("text", &input.text, PLACEHOLDERS)?;
    let team_id = match &input.team_id {
        Some(id) => Some(check_team(db, workspace_id, id).await?),
        None => None,
    };
    let now = Utc::now();
    let row = canned_reply::ActiveModel {
        id: Set(CannedReplyId::new()),
        workspace_id: Set(workspace_id),
        team_id: Set(team_id),
        shortcut: Set(shortcut(&input.shortcut)?),
        text: Set(input.text.trim().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    row.insert(db)
        .await
        .map(Into::into)
        .map_err(|e| EngineError::from_insert(e, "shortcut", "a canned reply with this shortcut"))
}

/// Whom a member's list is narrowed to: `None` for everyone's (admins, integrations).
fn teams_of(caller: &Principal) -> Option<Vec<String>> {
    match caller.agent() {
        Some(agent) if agent.role != Role::Admin => {
            Some(agent.team_ids.iter().map(ToString::to_string).collect())
        }
        _ => None,
    }
}

pub async fn list(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<CannedReplyView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let mut query = canned_reply::Entity::find()
        .filter(canned_reply::Column::WorkspaceId.eq(workspace_id.to_string()));
    if let Some(teams) = teams_of(caller) {
        query = query.filter(
            Condition::any()
                .add(canned_reply::Column::TeamId.is_null())
                .add(canned_reply::Column::TeamId.is_in(teams)),
        );
    }
    let rows = query
        .order_by_asc(canned_reply::Column::Shortcut)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn find(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: CannedReplyId,
) -> Result<canned_reply::Model, EngineError> {
    canned_reply::Entity::find_by_id(id)
        .filter(canned_reply::Column::WorkspaceId.eq(workspace_id.to_string()))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("canned reply"))
}

pub async fn update(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: CannedReplyId,
    patch: CannedReplyPatch,
) -> Result<CannedReplyView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let mut row = find(db, workspace_id, id).await?.into_active_model();
    if let Some(value) = patch.shortcut {
        row.shortcut = Set(shortcut(&value)?);
    }
    if let Some(text) = patch.text {
        placeholders::check("text", &text, PLACEHOLDERS)?;
        row.text = Set(text.trim().to_owned());
    }
    if let Some(team_id) = patch.team_id {
        row.team_id = Set(match team_id {
            Some(id) => Some(check_team(db, workspace_id, &id).await?),
            None => None,
        });
    }
    row.updated_at = Set(Utc::now());
    row.update(db)
        .await
        .map(Into::into)
        .map_err(|e| EngineError::from_insert(e, "shortcut", "a canned reply with this shortcut"))
}

pub async fn delete(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: CannedReplyId,
) -> Result<(), EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = find(db, workspace_id, id).await?;
    canned_reply::Entity::delete_by_id(found.id)
        .exec(db)
        .await?;
    Ok(())
}

/// A canned reply filled in for one conversation, ready to send.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FilledReply {
    pub id: CannedReplyId,
    pub shortcut: String,
    /// With the conversation's values in place of the placeholders.
    pub text: String,
}

/// The canned replies the caller may use in this conversation (workspace-wide and its team's),
/// whose shortcut starts with `prefix`, filled in for it.
pub async fn for_conversation(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
    prefix: Option<&str>,
) -> Result<Vec<FilledReply>, EngineError> {
    let conversation = crate::inbox::get_conversation(db, caller, id).await?;
    let prefix = prefix.map(|p| p.trim().trim_start_matches('/').to_lowercase());
    let rows = canned_reply::Entity::find()
        .filter(canned_reply::Column::WorkspaceId.eq(conversation.workspace_id))
        .filter(
            Condition::any()
                .add(canned_reply::Column::TeamId.is_null())
                .add(canned_reply::Column::TeamId.eq(conversation.team_id)),
        )
        .order_by_asc(canned_reply::Column::Shortcut)
        .all(db)
        .await?;
    let team_name = team::Entity::find_by_id(conversation.team_id)
        .one(db)
        .await?
        .map(|t| t.name);
    let agent_name = match caller.agent() {
        Some(me) => agent::Entity::find_by_id(me.agent_id)
            .one(db)
            .await?
            .map(|a| a.name),
        None => None,
    };
    let contact = conversation.contact.as_ref();
    Ok(rows
        .into_iter()
        .filter(|row| {
            prefix
                .as_deref()
                .is_none_or(|p| row.shortcut.starts_with(p))
        })
        .map(|row| FilledReply {
            text: placeholders::render(&row.text, |name| match name {
                "contact.name" => contact.and_then(|c| c.name.clone()),
                "contact.phone" => contact.and_then(|c| c.phone.clone()),
                "agent.name" => agent_name.clone(),
                "team.name" => team_name.clone(),
                _ => None,
            }),
            id: row.id,
            shortcut: row.shortcut,
        })
        .collect())
}
