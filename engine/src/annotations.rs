//! Tags and internal notes on conversations, and the workspace directory the console names
//! people and teams with. Scoped like every conversation query ([`crate::inbox`]); every change
//! is audited.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait};
use sea_orm::{QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditKind, AuditRecord};
use crate::auth::Principal;
use crate::authz::Action;
use crate::error::EngineError;
use crate::ids::{AgentId, ConversationId, NoteId, TeamId, WorkspaceId};
use crate::inbox::{Page, PageRequest, find_conversation};
use crate::store::entity::{agent, agent_team, conversation, conversation_note, team};

/// Most tags on one conversation.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 32;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// Trims, drops duplicates (ignoring case, keeping the first spelling) and checks each tag.
pub fn normalise_tags(tags: &[String]) -> Result<Vec<String>, EngineError> {
    let mut kept: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim();
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            return Err(EngineError::Validation(format!(
                "each tag must have 1 to {MAX_TAG_CHARS} characters"
            )));
        }
        if tag.chars().any(char::is_control) {
            return Err(EngineError::Validation(
                "tags cannot hold control characters".into(),
            ));
        }
        if !kept.iter().any(|k| k.eq_ignore_ascii_case(tag)) {
            kept.push(tag.to_owned());
        }
    }
    if kept.len() > MAX_TAGS {
        return Err(EngineError::Validation(format!(
            "a conversation holds at most {MAX_TAGS} tags"
        )));
    }
    Ok(kept)
}

fn author(caller: &Principal) -> Option<AgentId> {
    caller.agent().map(|agent| agent.agent_id)
}

async fn author_name(db: &DatabaseConnection, caller: &Principal) -> Result<String, EngineError> {
    let Some(id) = author(caller) else {
        return Ok(caller.describe());
    };
    Ok(agent::Entity::find_by_id(id)
        .one(db)
        .await?
        .map_or_else(|| "an agent".to_owned(), |a| a.name))
}

/// Replaces the conversation's tags; answers the tags as stored.
pub async fn set_tags(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
    tags: &[String],
) -> Result<Vec<String>, EngineError> {
    let tags = normalise_tags(tags)?;
    let row = find_conversation(db, caller, id).await?;
    caller.require(Action::Annotate)?;
    let before: Vec<String> = serde_json::from_str(&row.tags).unwrap_or_default();
    if before == tags {
        return Ok(tags);
    }
    let stored = serde_json::to_string(&tags).map_err(|e| EngineError::Internal(e.to_string()))?;
    conversation::Entity::update_many()
        .col_expr(conversation::Column::Tags, Expr::value(stored))
        .filter(conversation::Column::Id.eq(row.id))
        .exec(db)
        .await?;
    let added: Vec<&String> = tags.iter().filter(|t| !before.contains(t)).collect();
    let removed: Vec<&String> = before.iter().filter(|t| !tags.contains(t)).collect();
    let who = author_name(db, caller).await?;
    let mut text = format!("{who} changed the tags");
    if !added.is_empty() {
        text.push_str(&format!("; added {}", join(&added)));
    }
    if !removed.is_empty() {
        text.push_str(&format!("; removed {}", join(&removed)));
    }
    audit::record(
        db,
        AuditRecord {
            workspace_id: Some(row.workspace_id),
            conversation_id: Some(row.id),
            agent_id: author(caller),
            kind: AuditKind::TagsChanged,
            reason: Some(json!({"added": added, "removed": removed, "tags": tags})),
            text,
            at: None,
        },
    )
    .await?;
    Ok(tags)
}

fn join(tags: &[&String]) -> String {
    tags.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An internal note as the console shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NoteView {
    pub id: NoteId,
    pub conversation_id: ConversationId,
    pub author_id: Option<AgentId>,
    pub author_name: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// Adds a note (never sent to the customer).
pub async fn add_note(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
    text: &str,
) -> Result<NoteView, EngineError> {
    caller.require(Action::Annotate)?;
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(EngineError::Validation(format!(
            "a note needs 1 to {MAX_NOTE_CHARS} characters of `text`"
        )));
    }
    let row = find_conversation(db, caller, id).await?;
    let note = conversation_note::ActiveModel {
        id: Set(NoteId::new()),
        workspace_id: Set(row.workspace_id),
        conversation_id: Set(row.id),
        author_id: Set(author(caller)),
        text: Set(text.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    let name = author_name(db, caller).await?;
    // The audit says that a note was added and by whom; the note's words stay in the note.
    audit::record(
        db,
        AuditRecord {
            workspace_id: Some(row.workspace_id),
            conversation_id: Some(row.id),
            agent_id: author(caller),
            kind: AuditKind::NoteAdded,
            reason: Some(json!({"note_id": note.id})),
            text: format!("{name} added an internal note"),
            at: None,
        },
    )
    .await?;
    Ok(NoteView {
        id: note.id,
        conversation_id: note.conversation_id,
        author_id: note.author_id,
        author_name: name,
        text: note.text,
        created_at: note.created_at,
    })
}

/// The conversation's notes, oldest first.
pub async fn list_notes(
    db: &DatabaseConnection,
    caller: &Principal,
    id: ConversationId,
    page: &PageRequest,
) -> Result<Page<NoteView>, EngineError> {
    let limit = page.limit()?;
    let row = find_conversation(db, caller, id).await?;
    let mut query = conversation_note::Entity::find()
        .filter(conversation_note::Column::ConversationId.eq(row.id));
    if let Some(cursor) = &page.cursor {
        query = query.filter(conversation_note::Column::Id.gt(cursor.clone()));
    }
    let mut notes = query
        .order_by_asc(conversation_note::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = crate::inbox::next_cursor(&mut notes, limit, |n| n.id.to_string());
    let authors = agent::Entity::find()
        .filter(agent::Column::Id.is_in(notes.iter().filter_map(|n| n.author_id)))
        .all(db)
        .await?;
    let items = notes
        .into_iter()
        .map(|note| {
            let author_name = note
                .author_id
                .as_ref()
                .and_then(|id| authors.iter().find(|a| a.id == *id))
                .map_or_else(|| "the installation admin".to_owned(), |a| a.name.clone());
            NoteView {
                id: note.id,
                conversation_id: note.conversation_id,
                author_id: note.author_id,
                author_name,
                text: note.text,
                created_at: note.created_at,
            }
        })
        .collect();
    Ok(Page { items, next_cursor })
}

/// A team as the console names it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DirectoryTeam {
    pub id: TeamId,
    pub name: String,
}

/// A colleague as the console names them (no e-mail: agents need names, not addresses).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DirectoryAgent {
    pub id: AgentId,
    pub name: String,
    pub role: String,
    pub team_ids: Vec<TeamId>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Directory {
    pub workspace_id: String,
    pub teams: Vec<DirectoryTeam>,
    pub agents: Vec<DirectoryAgent>,
}

/// The caller's workspace: its active teams and agents, by name.
pub async fn directory(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
) -> Result<Directory, EngineError> {
    let workspace_id = workspace_id.to_string();
    let teams = team::Entity::find()
        .filter(team::Column::WorkspaceId.eq(workspace_id.clone()))
        .filter(team::Column::Active.eq(true))
        .order_by_asc(team::Column::Name)
        .all(db)
        .await?;
    let agents = agent::Entity::find()
        .filter(agent::Column::WorkspaceId.eq(workspace_id.clone()))
        .filter(agent::Column::Active.eq(true))
        .order_by_asc(agent::Column::Name)
        .all(db)
        .await?;
    let memberships = agent_team::Entity::find()
        .filter(agent_team::Column::AgentId.is_in(agents.iter().map(|a| a.id)))
        .all(db)
        .await?;
    Ok(Directory {
        workspace_id,
        teams: teams
            .into_iter()
            .map(|t| DirectoryTeam {
                id: t.id,
                name: t.name,
            })
            .collect(),
        agents: agents
            .into_iter()
            .map(|a| DirectoryAgent {
                team_ids: memberships
                    .iter()
                    .filter(|m| m.agent_id == a.id)
                    .map(|m| m.team_id)
                    .collect(),
                id: a.id,
                name: a.name,
                role: a.role,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let tags = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            normalise_tags(&tags(&[" vip ", "VIP", "billing"])).unwrap(),
            vec!["vip", "billing"]
        );
        assert!(normalise_tags(&tags(&[""])).is_err());
        assert!(normalise_tags(&tags(&["a\u{7}"])).is_err());
        assert!(normalise_tags(&tags(&[&"x".repeat(MAX_TAG_CHARS + 1)])).is_err());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(normalise_tags(&many).is_err());
    }
}
