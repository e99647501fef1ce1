//! What the routing actors read from and write to the database: their state is a cache of it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::ids::{AgentId, ChannelId, ConversationId, TeamId, WorkspaceId};
use crate::inbox::{ContactView, ConversationView, MessageView};
use crate::routing::policy::{Candidate, Presence};
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::{
    agent, agent_team, channel, contact, conversation, message, team, workspace,
};
use crate::time::clocks::{Clocks, SlaView};

/// A conversation's routing inputs, as stored.
#[derive(Clone, Debug)]
pub struct StoredConversation {
    pub id: ConversationId,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub channel_id: ChannelId,
    /// The business number replies are sent from.
    pub phone_number_id: String,
    pub status: ConversationStatus,
    pub assigned_agent_id: Option<AgentId>,
    pub priority: i32,
    pub contact: Option<ContactView>,
    pub window_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub required_skills: Vec<String>,
    pub offer_timeout_secs: i32,
    pub auto_accept: bool,
    /// The agent of this contact's previous conversation on this channel.
    pub sticky: Option<AgentId>,
    pub last_message: Option<MessageView>,
    /// Built from the rows ingest has just written for a new or reopened conversation (its
    /// last message is the one that opened it and has not been through the rules), not read
    /// back from the database.
    pub fresh: bool,
    pub raw: conversation::Model,
}

impl StoredConversation {
    pub fn view(
        &self,
        status: ConversationStatus,
        assigned: Option<AgentId>,
        team_id: TeamId,
        within_hours: bool,
        sla: Option<SlaView>,
    ) -> ConversationView {
        ConversationView {
            id: self.id,
            workspace_id: self.workspace_id,
            status,
            team_id,
            channel_id: self.channel_id,
            assigned_agent_id: assigned,
            contact: self.contact.clone(),
            priority: self.priority,
            last_inbound_at: self.raw.last_inbound_at,
            window_expires_at: self.window_expires_at,
            created_at: self.created_at,
            updated_at: Utc::now(),
            resolved_at: None,
            tags: serde_json::from_str(&self.raw.tags).unwrap_or_default(),
            within_hours,
            sla,
        }
    }
}

/// Loads one open conversation with everything routing needs; `None` when resolved or absent.
pub async fn load_open_conversation(
    db: &DatabaseConnection,
    id: ConversationId,
) -> Result<Option<StoredConversation>, DbErr> {
    let Some(row) = conversation::Entity::find_by_id(id)
        .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let contact = contact::Entity::find_by_id(row.contact_id).one(db).await?;
    let team = team::Entity::find_by_id(row.team_id).one(db).await?;
    let channel = channel::Entity::find_by_id(row.channel_id).one(db).await?;
    let sticky = previous_agent(db, &row).await?;
    let last_message = message::Entity::find()
        .filter(message::Column::ConversationId.eq(row.id))
        .order_by_desc(message::Column::Id)
        .one(db)
        .await?;
    StoredConversation::from_rows(
        row,
        contact,
        team.as_ref(),
        channel.as_ref(),
        sticky,
        last_message.map(Into::into),
    )
    .map(Some)
}

/// The agent of the contact's latest earlier conversation on the same channel, if any.
pub async fn previous_agent<C: ConnectionTrait>(
    db: &C,
    row: &conversation::Model,
) -> Result<Option<AgentId>, DbErr> {
    let previous = conversation::Entity::find()
        .filter(conversation::Column::ChannelId.eq(row.channel_id))
        .filter(conversation::Column::ContactId.eq(row.contact_id))
        .filter(conversation::Column::Id.ne(row.id))
        .filter(conversation::Column::AssignedAgentId.is_not_null())
        .order_by_desc(conversation::Column::Id)
        .one(db)
        .await?;
    Ok(previous.and_then(|p| p.assigned_agent_id))
}

impl StoredConversation {
    /// A conversation's routing inputs from its rows: read back by
    /// [`load_open_conversation`], or the rows ingest has just written when it opens one (so
    /// a new conversation costs the engine no query before it queues).
    pub fn from_rows(
        row: conversation::Model,
        contact: Option<contact::Model>,
        team: Option<&team::Model>,
        channel: Option<&channel::Model>,
        sticky: Option<AgentId>,
        last_message: Option<MessageView>,
    ) -> Result<StoredConversation, DbErr> {
        Ok(StoredConversation {
            id: row.id,
            workspace_id: row.workspace_id,
            team_id: row.team_id,
            channel_id: row.channel_id,
            phone_number_id: channel
                .map(|c| c.phone_number_id.clone())
                .unwrap_or_default(),
            status: row.status,
            assigned_agent_id: row.assigned_agent_id,
            priority: row.priority,
            contact: contact.map(Into::into),
            window_expires_at: row.window_expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            required_skills: channel
                .map(|c| serde_json::from_value(c.required_skills.clone()).unwrap_or_default())
                .unwrap_or_default(),
            offer_timeout_secs: team.map_or(30, |t| t.offer_timeout_secs),
            auto_accept: team.is_some_and(|t| t.auto_accept),
            sticky,
            last_message,
            fresh: false,
            raw: row,
        })
    }
}

/// A conversation's routing state, as its actor writes it (all of it, every time).
pub struct RoutingState<'a> {
    pub status: ConversationStatus,
    pub assigned: Option<AgentId>,
    pub team_id: TeamId,
    pub clocks: &'a Clocks,
    pub marks: &'a crate::automation::marks::Marks,
    /// The lease epoch of the node writing it (several nodes); `None` on one node.
    pub epoch: Option<u64>,
}

/// Why a state write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Database(#[from] DbErr),
    /// The conversation was written under a newer lease than this write's: another node owns
    /// its workspace now, and this one must stop routing it.
    #[error("fenced: the conversation was written under a newer lease than epoch {0}")]
    Fenced(u64),
}

/// Records a conversation's routing state and its clocks, with the facts the change settles.
pub async fn save_state(
    db: &DatabaseConnection,
    id: ConversationId,
    state: &RoutingState<'_>,
    facts: &[crate::reports::Fact],
) -> Result<(), SaveError> {
    if facts.is_empty() {
        return write_state(db, id, state).await;
    }
    // The facts a change settles are stored with it, or neither is.
    let txn = crate::store::begin_write(db).await?;
    write_state(&txn, id, state).await?;
    crate::reports::record(&txn, facts).await?;
    Ok(txn.commit().await?)
}

async fn write_state(
    db: &impl ConnectionTrait,
    id: ConversationId,
    state: &RoutingState<'_>,
) -> Result<(), SaveError> {
    let RoutingState {
        status,
        assigned,
        team_id,
        clocks,
        marks,
        epoch,
    } = *state;
    use sea_orm::ActiveValue::Set;
    let now = Utc::now();
    let mut row = conversation::ActiveModel {
        status: Set(status),
        assigned_agent_id: Set(assigned),
        team_id: Set(team_id),
        updated_at: Set(now),
        ..Default::default()
    };
    if status == ConversationStatus::Resolved {
        row.resolved_at = Set(Some(now));
    }
    clocks.write(&mut row);
    marks.write(&mut row);
    if let Some(epoch) = epoch {
        // Written under the lease's epoch, and only over a state written under this lease or
        // an older one (Kleppmann's fencing token): a paused node that lost the lease since
        // changes nothing.
        row.owner_epoch = Set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }
    let written = fenced_update(id, epoch).set(row).exec(db).await?;
    if written.rows_affected == 0
        && let Some(epoch) = epoch
    {
        return Err(SaveError::Fenced(epoch));
    }
    Ok(())
}

/// An update of conversation `id` that leaves it alone if it was written under a newer lease
/// than `epoch`, or if its workspace was taken over under one since (one node: no epoch,
/// nothing fenced), as every routing write is. The workspace's epoch covers what its own
/// cannot: a conversation opened after the takeover, which the new owner has not written yet.
fn fenced_update(
    id: ConversationId,
    epoch: Option<u64>,
) -> sea_orm::UpdateMany<conversation::Entity> {
    let update = conversation::Entity::update_many().filter(conversation::Column::Id.eq(id));
    let Some(epoch) = epoch else {
        return update;
    };
    let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
    update
        .filter(conversation::Column::OwnerEpoch.lte(epoch))
        .filter(Expr::exists(taken_over_since(epoch)).not())
}

/// The conversation's workspace, if it was taken over under a newer epoch than `epoch` (a
/// subquery of an update of `conversations`).
fn taken_over_since(epoch: i64) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .expr(Expr::value(1))
        .from(workspace::Entity)
        .and_where(
            Expr::col((workspace::Entity, workspace::Column::Id))
                .equals((conversation::Entity, conversation::Column::WorkspaceId)),
        )
        .and_where(Expr::col((workspace::Entity, workspace::Column::OwnerEpoch)).gt(epoch))
        .to_owned()
}

/// The epoch `workspace_id` was last taken over under (`None`: no such workspace).
async fn taken_over_under(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
) -> Result<Option<i64>, DbErr> {
    workspace::Entity::find_by_id(workspace_id)
        .select_only()
        .column(workspace::Column::OwnerEpoch)
        .into_tuple()
        .one(db)
        .await
}

/// What an operator runs once the lease bucket was deleted and made again (its revisions
/// restarted below the stored epochs), for the workspaces to be written again.
const CLEAR_EPOCHS: &str =
    "UPDATE workspaces SET owner_epoch = 0; UPDATE conversations SET owner_epoch = 0";

/// Adds `added` to a conversation's tags, as an automation does: merged with the tags stored
/// now, and written only over the very tags it merged with (else merged again), so that an
/// agent's edit through the API meanwhile is kept, and only under the lease's `epoch`. Answers
/// the tags before and after (equal when there was nothing to add); `Err` says why not.
pub async fn add_tags(
    db: &DatabaseConnection,
    id: ConversationId,
    added: &[String],
    epoch: Option<u64>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let failed = |error: DbErr| format!("the database failed: {error}");
    loop {
        let stored: Option<(String, i64, WorkspaceId)> = conversation::Entity::find_by_id(id)
            .select_only()
            .column(conversation::Column::Tags)
            .column(conversation::Column::OwnerEpoch)
            .column(conversation::Column::WorkspaceId)
            .into_tuple()
            .one(db)
            .await
            .map_err(failed)?;
        let Some((stored, written_under, workspace_id)) = stored else {
            return Err("the conversation no longer exists".into());
        };
        let taken_over_under = match epoch {
            Some(_) => taken_over_under(db, workspace_id)
                .await
                .map_err(failed)?
                .unwrap_or_default(),
            None => 0,
        };
        // (Else the fenced write below would change nothing, and be tried again for ever.)
        if let Some(epoch) = epoch
            && Ord::max(written_under, taken_over_under) > i64::try_from(epoch).unwrap_or(i64::MAX)
        {
            return Err(SaveError::Fenced(epoch).to_string());
        }
        let before: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
        let merged = crate::annotations::normalise_tags(
            &before.iter().chain(added).cloned().collect::<Vec<_>>(),
        )
        .map_err(|error| error.to_string())?;
        if merged == before {
            return Ok((before, merged));
        }
        let text = serde_json::to_string(&merged).map_err(|error| error.to_string())?;
        let written = fenced_update(id, epoch)
            .col_expr(conversation::Column::Tags, Expr::value(text))
            .filter(conversation::Column::Tags.eq(stored))
            .exec(db)
            .await
            .map_err(failed)?;
        if written.rows_affected == 1 {
            return Ok((before, merged));
        }
    }
}

/// Records a conversation's priority, as an automation set it (under the lease's `epoch`).
pub async fn save_priority(
    db: &DatabaseConnection,
    id: ConversationId,
    priority: i32,
    epoch: Option<u64>,
) -> Result<(), SaveError> {
    let written = fenced_update(id, epoch)
        .col_expr(conversation::Column::Priority, Expr::value(priority))
        .exec(db)
        .await?;
    match epoch {
        Some(epoch) if written.rows_affected == 0 => Err(SaveError::Fenced(epoch)),
        _ => Ok(()),
    }
}

/// Records the clocks of a cycle whose policy was just applied, unless a later state write
/// (which always carries the policy) got there first: so this write need not hold the
/// conversation's mailbox, and routing does not wait for it.
pub async fn save_applied_clocks(
    db: &DatabaseConnection,
    id: ConversationId,
    clocks: &Clocks,
    epoch: Option<u64>,
) -> Result<(), DbErr> {
    let mut row = conversation::ActiveModel::default();
    clocks.write(&mut row);
    fenced_update(id, epoch)
        .set(row)
        .filter(conversation::Column::SlaPolicyId.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The latest messages of a conversation, oldest first, for an agent who just got it.
pub async fn recent_messages(
    db: &DatabaseConnection,
    id: ConversationId,
    limit: u64,
) -> Result<Vec<MessageView>, DbErr> {
    let mut rows = message::Entity::find()
        .filter(message::Column::ConversationId.eq(id))
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Every active agent of a workspace as a routing candidate (offline until it connects), with
/// its load from the conversations it holds.
pub async fn load_roster(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
) -> Result<Vec<Candidate>, DbErr> {
    let agents = agent::Entity::find()
        .filter(agent::Column::WorkspaceId.eq(workspace_id.to_string()))
        .filter(agent::Column::Active.eq(true))
        .all(db)
        .await?;
    let mut roster = Vec::with_capacity(agents.len());
    for row in agents {
        roster.push(candidate_of(db, row).await?);
    }
    Ok(roster)
}

/// One agent as a routing candidate; `None` when absent or inactive.
pub async fn load_candidate(
    db: &DatabaseConnection,
    id: AgentId,
) -> Result<Option<Candidate>, DbErr> {
    match agent::Entity::find_by_id(id)
        .filter(agent::Column::Active.eq(true))
        .one(db)
        .await?
    {
        Some(row) => Ok(Some(candidate_of(db, row).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn candidate_of(
    db: &DatabaseConnection,
    row: agent::Model,
) -> Result<Candidate, DbErr> {
    let teams = agent_team::Entity::find()
        .filter(agent_team::Column::AgentId.eq(row.id))
        .all(db)
        .await?
        .iter()
        .map(|m| m.team_id)
        .collect();
    let load = conversation::Entity::find()
        .filter(conversation::Column::AssignedAgentId.eq(row.id))
        .filter(conversation::Column::Status.eq(ConversationStatus::Assigned))
        .count(db)
        .await?;
    Ok(Candidate {
        agent_id: row.id,
        name: row.name,
        teams,
        skills: serde_json::from_value(row.skills).unwrap_or_default(),
        presence: Presence::Offline,
        load: u32::try_from(load).unwrap_or(u32::MAX),
        capacity: u32::try_from(row.capacity).unwrap_or(0),
        last_assigned: None,
        last_released: None,
    })
}

/// Every conversation not resolved, oldest first: what a restart routes again.
pub async fn open_conversations(
    db: &DatabaseConnection,
) -> Result<Vec<(ConversationId, WorkspaceId)>, DbErr> {
    let rows = conversation::Entity::find()
        .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    Ok(rows.iter().map(|row| (row.id, row.workspace_id)).collect())
}

/// A workspace's routing taken over under the lease `epoch` (several nodes): its open
/// conversations are fenced at once, so that a paused former owner can change none of them,
/// its offers end as on a restart, and it answers them (oldest first) to be routed again.
pub async fn claim_workspace(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    epoch: u64,
) -> Result<Vec<ConversationId>, DbErr> {
    let stored = i64::try_from(epoch).unwrap_or(i64::MAX);
    // First the workspace: from now on no write under an older lease goes through, whichever
    // conversation it is for.
    workspace::Entity::update_many()
        .col_expr(workspace::Column::OwnerEpoch, Expr::value(stored))
        .filter(workspace::Column::Id.eq(workspace_id))
        .filter(workspace::Column::OwnerEpoch.lt(stored))
        .exec(db)
        .await?;
    let taken_over_under = taken_over_under(db, workspace_id).await?;
    if taken_over_under.is_some_and(|newer| newer > stored) {
        // Taken over since under a newer lease (this claim came late: the node lost the
        // lease meanwhile), or the lease bucket was made again (its revisions restarted):
        // this claim changes nothing, not even the new owner's offers.
        tracing::error!(%workspace_id, epoch, ?taken_over_under, "the workspace was taken over under a newer epoch than this lease: if no other node holds it, was the lease bucket deleted and made again? Its conversations cannot be written until that is cleared ({CLEAR_EPOCHS})");
        return Ok(Vec::new());
    }
    let open = || {
        conversation::Entity::find()
            .filter(conversation::Column::WorkspaceId.eq(workspace_id))
            .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
    };
    conversation::Entity::update_many()
        .col_expr(conversation::Column::OwnerEpoch, Expr::value(stored))
        .filter(conversation::Column::WorkspaceId.eq(workspace_id))
        .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
        .filter(conversation::Column::OwnerEpoch.lte(stored))
        .exec(db)
        .await?;
    // Rows written under a newer epoch than any lease can have: the lease bucket was made
    // again (its revisions restarted), and every write of this node would now be refused.
    let ahead = open()
        .filter(conversation::Column::OwnerEpoch.gt(stored))
        .count(db)
        .await?;
    if ahead > 0 {
        tracing::error!(%workspace_id, epoch, conversations = ahead, "conversations were written under a newer epoch than this lease: was the lease bucket deleted and made again? Their state cannot be written until it is cleared ({CLEAR_EPOCHS})");
    }
    reset_offers_where(db, Some(workspace_id)).await?;
    let rows: Vec<ConversationId> = open()
        .select_only()
        .column(conversation::Column::Id)
        .order_by_asc(conversation::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows)
}

/// Offers do not survive a restart: offered conversations wait again.
pub async fn reset_offers(db: &DatabaseConnection) -> Result<(), DbErr> {
    reset_offers_where(db, None).await
}

async fn reset_offers_where(
    db: &DatabaseConnection,
    workspace_id: Option<WorkspaceId>,
) -> Result<(), DbErr> {
    let mut update = conversation::Entity::update_many();
    if let Some(workspace_id) = workspace_id {
        update = update.filter(conversation::Column::WorkspaceId.eq(workspace_id));
    }
    update
        .col_expr(
            conversation::Column::Status,
            Expr::value(ConversationStatus::Waiting),
        )
        .col_expr(
            conversation::Column::AssignedAgentId,
            Expr::value(Option::<String>::None),
        )
        .filter(conversation::Column::Status.eq(ConversationStatus::Offered))
        .exec(db)
        .await?;
    Ok(())
}

/// The conversations an agent holds, as the database has them.
pub async fn held_by(
    db: &DatabaseConnection,
    agent_id: AgentId,
) -> Result<Vec<ConversationView>, DbErr> {
    let rows = conversation::Entity::find()
        .filter(conversation::Column::AssignedAgentId.eq(agent_id))
        .filter(conversation::Column::Status.eq(ConversationStatus::Assigned))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    let contacts = contact::Entity::find()
        .filter(contact::Column::Id.is_in(rows.iter().map(|row| row.contact_id)))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let contact = contacts.iter().find(|c| c.id == row.contact_id).cloned();
            crate::inbox::conversation_view(row, contact)
        })
        .collect())
}
