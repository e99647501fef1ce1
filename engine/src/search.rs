//! Finding people and words, scoped exactly like conversations ([`crate::inbox`]): contacts by
//! the start of a name or number, a contact with the conversations the caller may see (newest
//! first), and messages by their words: Postgres full text (`to_tsvector('simple', text)`, GIN
//! indexed) or SQLite FTS5, per the database in use.
//!
//! A member who is not an admin finds a contact only through a conversation of theirs; an
//! admin (and an integration) finds every contact of the workspace.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::auth::{Principal, Role};
use crate::authz::Action;
use crate::error::EngineError;
use crate::inbox::{ContactView, ConversationView, PageRequest, conversation_view, scope};
use crate::store::entity::message::MessageDirection;
use crate::store::entity::{contact, conversation, message};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most conversations a contact's page lists.
pub const MAX_CONTACT_CONVERSATIONS: u64 = 100;

fn query_text(q: &str) -> Result<String, EngineError> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS || q.contains('\0') {
        return Err(EngineError::Validation(format!(
            "`q` needs 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(q.to_owned())
}

/// `text` as a LIKE pattern matching what starts with it.
fn prefix_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Whether the caller sees every contact of its workspace (else only through conversations).
fn sees_all_contacts(caller: &Principal) -> bool {
    caller.agent().is_none_or(|agent| agent.role == Role::Admin)
}

/// Contacts the caller may see.
fn contact_scope(caller: &Principal) -> Condition {
    let mut visible = Condition::all();
    if let Some(workspace) = caller.workspace() {
        visible = visible.add(contact::Column::WorkspaceId.eq(workspace.to_string()));
    }
    if !sees_all_contacts(caller) {
        visible = visible.add(
            contact::Column::Id.in_subquery(
                Query::select()
                    .column(conversation::Column::ContactId)
                    .from(conversation::Entity)
                    .cond_where(scope(caller))
                    .to_owned(),
            ),
        );
    }
    visible
}

/// Contacts whose name or phone number starts with `q` (names ignoring case; a number with or
/// without its `+`).
pub async fn find_contacts(
    db: &DatabaseConnection,
    caller: &Principal,
    q: &str,
    page: &PageRequest,
) -> Result<Vec<crate::privacy::ContactRecord>, EngineError> {
    caller.require(Action::ReadConversations)?;
    let q = query_text(q)?;
    let limit = page.limit()?;
    let mut matches = Condition::any().add(
        Expr::expr(Func::lower(Expr::col(contact::Column::Name)))
            .like(LikeExpr::new(prefix_pattern(&q.to_lowercase())).escape('\\')),
    );
    let digits = q.trim_start_matches('+').replace([' ', '-'], "");
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        matches = matches
            .add(contact::Column::Phone.like(LikeExpr::new(prefix_pattern(&digits)).escape('\\')));
    }
    let rows = contact::Entity::find()
        .filter(contact_scope(caller))
        .filter(matches)
        .order_by_asc(contact::Column::Name)
        .order_by_asc(contact::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A contact and its conversations the caller may see, newest first.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ContactDetail {
    pub contact: ContactView,
    pub conversations: Vec<ConversationView>,
}

pub async fn get_contact(
    db: &DatabaseConnection,
    caller: &Principal,
    id: &str,
) -> Result<ContactDetail, EngineError> {
    caller.require(Action::ReadConversations)?;
    let Ok(id) = id.parse::<crate::ids::ContactId>() else {
        return Err(EngineError::NotFound("contact"));
    };
    let row = contact::Entity::find_by_id(id)
        .filter(contact_scope(caller))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("contact"))?;
    let conversations = conversation::Entity::find()
        .filter(scope(caller))
        .filter(conversation::Column::ContactId.eq(row.id))
        .order_by_desc(conversation::Column::CreatedAt)
        .limit(MAX_CONTACT_CONVERSATIONS)
        .all(db)
        .await?;
    let mut conversations: Vec<ConversationView> = conversations
        .into_iter()
        .map(|c| conversation_view(c, Some(row.clone())))
        .collect();
    crate::time::settings::mark_within_hours(db, &mut conversations, Utc::now()).await?;
    Ok(ContactDetail {
        contact: row.into(),
        conversations,
    })
}

/// A message found by its words.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub conversation_id: crate::ids::ConversationId,
    pub message_id: crate::ids::MessageId,
    pub text: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub direction: MessageDirection,
}

/// FTS5's query for these words: each a quoted string (so no word is read as an operator),
/// all of them required.
fn fts5_query(q: &str) -> String {
    q.split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Messages of conversations the caller may see holding every word of `q`, newest first.
pub async fn search_messages(
    db: &DatabaseConnection,
    caller: &Principal,
    q: &str,
    page: &PageRequest,
) -> Result<Vec<SearchHit>, EngineError> {
    caller.require(Action::ReadConversations)?;
    let q = query_text(q)?;
    let limit = page.limit()?;
    let words = match db.get_database_backend() {
        DatabaseBackend::Sqlite => Expr::cust_with_values(
            "\"messages\".\"rowid\" IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)",
            [fts5_query(&q)],
        ),
        _ => Expr::cust_with_values(
            "to_tsvector('simple', coalesce(\"messages\".\"text\", '')) @@ plainto_tsquery('simple', $1)",
            [q],
        ),
    };
    let rows = message::Entity::find()
        .filter(words)
        .filter(
            message::Column::ConversationId.in_subquery(
                Query::select()
                    .column(conversation::Column::Id)
                    .from(conversation::Entity)
                    .cond_where(scope(caller))
                    .to_owned(),
            ),
        )
        .order_by_desc(message::Column::ProviderTimestamp)
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| SearchHit {
            conversation_id: m.conversation_id,
            message_id: m.id,
            text: m.text,
            timestamp: m.provider_timestamp,
            direction: m.direction,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_words_never_become_query_syntax() {
        assert_eq!(
            fts5_query(r#"refund "now" OR"#),
            r#""refund" """now""" "OR""#
        );
        assert_eq!(prefix_pattern("50%_off"), r"50\%\_off%");
        assert!(query_text("   ").is_err());
        assert!(query_text(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }
}
