//! Workspace administration: workspaces, teams, channels (WhatsApp numbers) and agents.
//!
//! Every function takes the caller's [`Principal`] and checks it first; anything of another
//! workspace answers `NotFound`, never `Forbidden`, so that ids of other tenants stay invisible.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Principal, Role};
use crate::authz::Action;
use crate::crypto::{PasswordHashing, Sealer};
use crate::error::EngineError;
use crate::ids::{AgentId, CalendarId, ChannelId, SlaPolicyId, TeamId, WorkspaceId};
use crate::store::entity::{agent, agent_team, channel, team, workspace};

/// A team's offer timeout when none is given.
pub const DEFAULT_OFFER_TIMEOUT_SECS: i32 = 30;
/// An agent's capacity when none is given.
pub const DEFAULT_CAPACITY: i32 = 4;

// ---------- workspaces ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    pub name: String,
    /// IANA zone whose days the reports count in; UTC by default.
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days to keep messages; null keeps them.
    pub message_days: Option<i32>,
    pub media_days: Option<i32>,
    pub audit_days: Option<i32>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePatch {
    pub name: Option<String>,
    pub retention: Option<Retention>,
    /// Changing it recounts the reports' days from the recorded facts.
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    pub id: WorkspaceId,
    pub name: String,
    pub retention: Retention,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

impl From<workspace::Model> for WorkspaceView {
    fn from(row: workspace::Model) -> Self {
        Self {
            id: row.id,
            name: row.name,
            retention: Retention {
                message_days: row.retention_message_days,
                media_days: row.retention_media_days,
                audit_days: row.retention_audit_days,
            },
            time_zone: row.time_zone,
            created_at: row.created_at,
        }
    }
}

pub(crate) fn non_empty(field: &str, value: &str) -> Result<String, EngineError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > 200 {
        return Err(EngineError::Validation(format!(
            "`{field}` must be 1 to 200 characters"
        )));
    }
    // Postgres cannot store it, and no name needs it: refused the same on every database.
    if trimmed.contains('\0') {
        return Err(EngineError::Validation(format!(
            "`{field}` may not contain NUL characters"
        )));
    }
    Ok(trimmed.to_owned())
}

pub async fn create_workspace(
    db: &DatabaseConnection,
    caller: &Principal,
    input: NewWorkspace,
) -> Result<WorkspaceView, EngineError> {
    caller.require(Action::CreateWorkspace)?;
    let row = workspace_row(WorkspaceId::new(), &input)?
        .insert(db)
        .await?;
    Ok(row.into())
}

/// A new workspace's row, its name checked.
fn workspace_row(
    id: WorkspaceId,
    input: &NewWorkspace,
) -> Result<workspace::ActiveModel, EngineError> {
    Ok(workspace::ActiveModel {
        id: Set(id),
        name: Set(non_empty("name", &input.name)?),
        retention_message_days: Set(None),
        retention_media_days: Set(None),
        retention_audit_days: Set(None),
        time_zone: Set(match &input.time_zone {
            Some(zone) => time_zone(zone)?,
            None => "UTC".to_owned(),
        }),
        created_at: Set(Utc::now()),
        owner_epoch: Set(0),
    })
}

/// An IANA zone name, checked.
fn time_zone(text: &str) -> Result<String, EngineError> {
    text.trim()
        .parse::<chrono_tz::Tz>()
        .map(|zone| zone.name().to_owned())
        .map_err(|_| {
            EngineError::Validation(format!(
                "`time_zone` {text:?} is not an IANA time zone name (like \"Europe/London\" or \"Asia/Dubai\")"
            ))
        })
}

/// First run: a workspace and its first admin at once (`POST /setup`, the bootstrap token).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub workspace: NewWorkspace,
    pub admin: FirstAdmin,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstAdmin {
    pub name: String,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SetupView {
    pub workspace: WorkspaceView,
    pub admin: AgentView,
}

/// Whether the installation has no workspace yet: `/admin` then asks for the bootstrap token.
pub async fn needs_setup(db: &DatabaseConnection) -> Result<bool, EngineError> {
    use sea_orm::PaginatorTrait;
    Ok(workspace::Entity::find().count(db).await? == 0)
}

/// Creates a workspace and its first admin in one transaction: a refused admin (a bad or taken
/// email) leaves no workspace behind. Refusals name the field as `workspace.name`,
/// `admin.email`, ...
pub async fn setup(
    db: &DatabaseConnection,
    hashing: &PasswordHashing,
    caller: &Principal,
    input: Setup,
) -> Result<SetupView, EngineError> {
    caller.require(Action::CreateWorkspace)?;
    let Setup { workspace, admin } = input;
    let workspace_id = WorkspaceId::new();
    let workspace = workspace_row(workspace_id, &workspace).map_err(|e| within("workspace", e))?;
    let FirstAdmin {
        name,
        email,
        password,
    } = admin;
    let first_admin = NewAgent {
        name,
        email,
        password,
        role: Role::Admin,
        capacity: None,
        team_ids: Vec::new(),
        skills: Vec::new(),
        active: None,
    };
    let admin = agent_row(hashing, workspace_id, first_admin)
        .await
        .map_err(|e| within("admin", e))?;
    let txn = crate::store::begin_write(db).await?;
    let workspace = workspace.insert(&txn).await?;
    let admin = admin.insert(&txn).await.map_err(|error| {
        EngineError::from_insert(error, "admin.email", "an agent with this email")
    })?;
    txn.commit().await?;
    Ok(SetupView {
        workspace: workspace.into(),
        admin: agent_view(admin, Vec::new()),
    })
}

/// A refusal about a field of a nested object names it by its path: `` `email` `` of the
/// admin becomes `` `admin.email` ``.
fn within(prefix: &str, error: EngineError) -> EngineError {
    match error {
        EngineError::Validation(message) => match message.strip_prefix('`') {
            Some(rest) => EngineError::Validation(format!("`{prefix}.{rest}")),
            None => EngineError::Validation(message),
        },
        other => other,
    }
}

pub(crate) async fn find_workspace(
    db: &DatabaseConnection,
    caller: &Principal,
    id: WorkspaceId,
) -> Result<workspace::Model, EngineError> {
    if !caller.is_member_of(id) {
        return Err(EngineError::NotFound("workspace"));
    }
    caller.require(Action::ReadConfiguration)?;
    workspace::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("workspace"))
}

pub async fn get_workspace(
    db: &DatabaseConnection,
    caller: &Principal,
    id: WorkspaceId,
) -> Result<WorkspaceView, EngineError> {
    find_workspace(db, caller, id).await.map(Into::into)
}

pub async fn update_workspace(
    db: &DatabaseConnection,
    caller: &Principal,
    id: WorkspaceId,
    patch: WorkspacePatch,
) -> Result<WorkspaceView, EngineError> {
    let found = find_workspace(db, caller, id).await?;
    require_admin(caller, id)?;
    let old_zone = found.time_zone.clone();
    let mut row = found.into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    if let Some(retention) = patch.retention {
        for days in [
            retention.message_days,
            retention.media_days,
            retention.audit_days,
        ]
        .into_iter()
        .flatten()
        {
            if !(1..=36_500).contains(&days) {
                return Err(EngineError::Validation(
                    "retention days must be between 1 and 36500, or null to keep".into(),
                ));
            }
        }
        row.retention_message_days = Set(retention.message_days);
        row.retention_media_days = Set(retention.media_days);
        row.retention_audit_days = Set(retention.audit_days);
    }
    let Some(zone) = patch.time_zone else {
        return Ok(row.update(db).await?.into());
    };
    let zone = time_zone(&zone)?;
    let moved = old_zone != zone;
    row.time_zone = Set(zone);
    // The reports' days move with the zone: they are counted again from the facts.
    let txn = crate::store::begin_write(db).await?;
    let updated = row.update(&txn).await?;
    if moved {
        crate::reports::rollup::forget(&txn, Some(&id.to_string())).await?;
    }
    txn.commit().await?;
    Ok(updated.into())
}

pub(crate) fn require_admin(
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<(), EngineError> {
    require_in(caller, workspace_id, Action::Administer)
}

/// Tenancy, then the table: another workspace is `not_found`; within it, `forbidden` unless
/// the caller may do `action`.
pub(crate) fn require_in(
    caller: &Principal,
    workspace_id: WorkspaceId,
    action: Action,
) -> Result<(), EngineError> {
    if !caller.is_member_of(workspace_id) {
        return Err(EngineError::NotFound("workspace"));
    }
    caller.require(action)
}

// ---------- teams ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    pub name: String,
    pub offer_timeout_secs: Option<i32>,
    pub auto_accept: Option<bool>,
    /// Business hours (null: always open).
    pub calendar_id: Option<String>,
    /// Sent once per conversation cycle when a customer writes while the team is closed.
    pub out_of_hours_reply: Option<String>,
    /// `false`: after hours, conversations wait for opening instead of being offered.
    pub offer_outside_hours: Option<bool>,
    pub sla_policy_id: Option<String>,
    /// Resolve an assigned conversation whose customer has not written for this long after
    /// an agent's reply (null: never).
    pub auto_resolve_after_secs: Option<i32>,
    /// Sent (inside the 24-hour window) when a conversation is resolved for inactivity.
    pub auto_resolve_message: Option<String>,
}

/// `Some(None)` for a field given as null, `None` for a field left out: a patch clears a
/// nullable setting with an explicit null.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamPatch {
    pub name: Option<String>,
    pub offer_timeout_secs: Option<i32>,
    pub auto_accept: Option<bool>,
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub calendar_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub out_of_hours_reply: Option<Option<String>>,
    pub offer_outside_hours: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub sla_policy_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub auto_resolve_after_secs: Option<Option<i32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub auto_resolve_message: Option<Option<String>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TeamView {
    pub id: TeamId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub offer_timeout_secs: i32,
    pub auto_accept: bool,
    pub active: bool,
    pub calendar_id: Option<CalendarId>,
    pub out_of_hours_reply: Option<String>,
    pub offer_outside_hours: bool,
    pub sla_policy_id: Option<SlaPolicyId>,
    pub auto_resolve_after_secs: Option<i32>,
    pub auto_resolve_message: Option<String>,
}

impl From<team::Model> for TeamView {
    fn from(row: team::Model) -> Self {
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            name: row.name,
            offer_timeout_secs: row.offer_timeout_secs,
            auto_accept: row.auto_accept,
            active: row.active,
            calendar_id: row.calendar_id,
            out_of_hours_reply: row.out_of_hours_reply,
            offer_outside_hours: row.offer_outside_hours,
            sla_policy_id: row.sla_policy_id,
            auto_resolve_after_secs: row.auto_resolve_after_secs,
            auto_resolve_message: row.auto_resolve_message,
        }
    }
}

/// A message WaOS sends for the team: 1 to 4,096 characters (WhatsApp's text limit).
fn team_message(field: &str, text: Option<String>) -> Result<Option<String>, EngineError> {
    let Some(text) = text else { return Ok(None) };
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > crate::outbound::MAX_TEXT_CHARS {
        return Err(EngineError::Validation(format!(
            "`{field}` must be 1 to {} characters, or null",
            crate::outbound::MAX_TEXT_CHARS
        )));
    }
    if trimmed.contains('\0') {
        return Err(EngineError::Validation(format!(
            "`{field}` may not contain NUL characters"
        )));
    }
    Ok(Some(trimmed.to_owned()))
}

/// A team's `calendar_id` as the request names it, checked.
async fn team_calendar(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: Option<String>,
) -> Result<Option<CalendarId>, EngineError> {
    Ok(match id {
        Some(id) => Some(crate::time::settings::check_calendar(db, workspace_id, &id).await?),
        None => None,
    })
}

/// A team's `sla_policy_id` as the request names it, checked.
async fn team_sla_policy(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: Option<String>,
) -> Result<Option<SlaPolicyId>, EngineError> {
    Ok(match id {
        Some(id) => Some(crate::time::settings::check_sla_policy(db, workspace_id, &id).await?),
        None => None,
    })
}

fn offer_timeout(secs: i32) -> Result<i32, EngineError> {
    if (1..=3600).contains(&secs) {
        Ok(secs)
    } else {
        Err(EngineError::Validation(
            "`offer_timeout_secs` must be between 1 and 3600".into(),
        ))
    }
}

pub async fn create_team(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewTeam,
) -> Result<TeamView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let row = team::ActiveModel {
        id: Set(TeamId::new()),
        workspace_id: Set(workspace_id),
        name: Set(non_empty("name", &input.name)?),
        offer_timeout_secs: Set(offer_timeout(
            input
                .offer_timeout_secs
                .unwrap_or(DEFAULT_OFFER_TIMEOUT_SECS),
        )?),
        auto_accept: Set(input.auto_accept.unwrap_or(false)),
        active: Set(true),
        created_at: Set(Utc::now()),
        calendar_id: Set(team_calendar(db, workspace_id, input.calendar_id).await?),
        out_of_hours_reply: Set(team_message(
            "out_of_hours_reply",
            input.out_of_hours_reply,
        )?),
        offer_outside_hours: Set(input.offer_outside_hours.unwrap_or(true)),
        sla_policy_id: Set(team_sla_policy(db, workspace_id, input.sla_policy_id).await?),
        auto_resolve_after_secs: Set(crate::time::settings::seconds(
            "auto_resolve_after_secs",
            input.auto_resolve_after_secs,
        )?),
        auto_resolve_message: Set(team_message(
            "auto_resolve_message",
            input.auto_resolve_message,
        )?),
    }
    .insert(db)
    .await?;
    Ok(row.into())
}

pub async fn list_teams(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<TeamView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let rows = team::Entity::find()
        .filter(team::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(team::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn find_team(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: &str,
) -> Result<team::Model, EngineError> {
    let Ok(id) = id.parse::<TeamId>() else {
        return Err(EngineError::NotFound("team"));
    };
    team::Entity::find_by_id(id)
        .filter(team::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("team"))
}

pub async fn update_team(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: TeamId,
    patch: TeamPatch,
) -> Result<TeamView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let mut row = find_team(db, workspace_id, &id.to_string())
        .await?
        .into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    if let Some(secs) = patch.offer_timeout_secs {
        row.offer_timeout_secs = Set(offer_timeout(secs)?);
    }
    if let Some(auto_accept) = patch.auto_accept {
        row.auto_accept = Set(auto_accept);
    }
    if let Some(active) = patch.active {
        row.active = Set(active);
    }
    if let Some(id) = patch.calendar_id {
        row.calendar_id = Set(team_calendar(db, workspace_id, id).await?);
    }
    if let Some(text) = patch.out_of_hours_reply {
        row.out_of_hours_reply = Set(team_message("out_of_hours_reply", text)?);
    }
    if let Some(offer) = patch.offer_outside_hours {
        row.offer_outside_hours = Set(offer);
    }
    if let Some(id) = patch.sla_policy_id {
        row.sla_policy_id = Set(team_sla_policy(db, workspace_id, id).await?);
    }
    if let Some(secs) = patch.auto_resolve_after_secs {
        row.auto_resolve_after_secs = Set(crate::time::settings::seconds(
            "auto_resolve_after_secs",
            secs,
        )?);
    }
    if let Some(text) = patch.auto_resolve_message {
        row.auto_resolve_message = Set(team_message("auto_resolve_message", text)?);
    }
    Ok(row.update(db).await?.into())
}

// ---------- channels ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub waba_id: Option<String>,
    /// The Graph API token for this number; write-only, stored sealed.
    #[schema(value_type = String, format = Password)]
    pub access_token: SecretString,
    pub team_id: String,
    /// Skills an agent needs to take this number's conversations.
    #[serde(default)]
    pub required_skills: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub display_phone_number: Option<String>,
    pub waba_id: Option<String>,
    /// Rotates the Graph token.
    #[schema(value_type = Option<String>, format = Password)]
    pub access_token: Option<SecretString>,
    pub team_id: Option<String>,
    pub required_skills: Option<Vec<String>>,
    /// `false` resumes a channel paused by an operator or by an expired token.
    pub paused: Option<bool>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: ChannelId,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub waba_id: Option<String>,
    pub required_skills: Vec<String>,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub active: bool,
}

impl From<channel::Model> for ChannelView {
    fn from(row: channel::Model) -> Self {
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            team_id: row.team_id,
            phone_number_id: row.phone_number_id,
            display_phone_number: row.display_phone_number,
            waba_id: row.waba_id,
            required_skills: serde_json::from_value(row.required_skills).unwrap_or_default(),
            paused: row.paused,
            pause_reason: row.pause_reason,
            active: row.active,
        }
    }
}

fn digits(field: &str, value: &str) -> Result<String, EngineError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > 32 || !trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(EngineError::Validation(format!(
            "`{field}` must be 1 to 32 digits"
        )));
    }
    Ok(trimmed.to_owned())
}

fn skills(list: Vec<String>) -> Result<serde_json::Value, EngineError> {
    let mut cleaned = Vec::with_capacity(list.len());
    for skill in list {
        cleaned.push(non_empty("skills", &skill)?.to_lowercase());
    }
    cleaned.sort();
    cleaned.dedup();
    Ok(json!(cleaned))
}

pub async fn create_channel(
    db: &DatabaseConnection,
    sealer: &Sealer,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewChannel,
) -> Result<ChannelView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let team = find_team(db, workspace_id, &input.team_id).await?;
    let now = Utc::now();
    let row = channel::ActiveModel {
        id: Set(ChannelId::new()),
        workspace_id: Set(workspace_id),
        team_id: Set(team.id),
        phone_number_id: Set(digits("phone_number_id", &input.phone_number_id)?),
        display_phone_number: Set(non_empty(
            "display_phone_number",
            &input.display_phone_number,
        )?),
        waba_id: Set(input
            .waba_id
            .map(|waba| digits("waba_id", &waba))
            .transpose()?),
        access_token_sealed: Set(sealer.seal(&input.access_token)?),
        required_skills: Set(skills(input.required_skills)?),
        paused: Set(false),
        pause_reason: Set(None),
        active: Set(true),
        has_erased_messages: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let row = row.insert(db).await.map_err(|error| {
        EngineError::from_insert(error, "phone_number_id", "a channel with this number")
    })?;
    Ok(row.into())
}

pub async fn list_channels(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<ChannelView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let rows = channel::Entity::find()
        .filter(channel::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(channel::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn update_channel(
    db: &DatabaseConnection,
    sealer: &Sealer,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: ChannelId,
    patch: ChannelPatch,
) -> Result<ChannelView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = channel::Entity::find_by_id(id)
        .filter(channel::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("channel"))?;
    let mut row = found.into_active_model();
    if let Some(display) = patch.display_phone_number {
        row.display_phone_number = Set(non_empty("display_phone_number", &display)?);
    }
    if let Some(waba_id) = patch.waba_id {
        row.waba_id = Set(Some(digits("waba_id", &waba_id)?));
    }
    if let Some(token) = patch.access_token {
        row.access_token_sealed = Set(sealer.seal(&token)?);
    }
    if let Some(team_id) = patch.team_id {
        row.team_id = Set(find_team(db, workspace_id, &team_id).await?.id);
    }
    if let Some(list) = patch.required_skills {
        row.required_skills = Set(skills(list)?);
    }
    if let Some(paused) = patch.paused {
        row.paused = Set(paused);
        row.pause_reason = Set(paused.then(|| "paused by an administrator".to_owned()));
    }
    if let Some(active) = patch.active {
        row.active = Set(active);
    }
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?.into())
}

// ---------- agents ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: String,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub role: Role,
    pub capacity: Option<i32>,
    #[serde(default)]
    pub team_ids: Vec<String>,
    #[serde(default)]
    pub skills: Vec<String>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    pub role: Option<Role>,
    pub capacity: Option<i32>,
    pub team_ids: Option<Vec<String>>,
    pub skills: Option<Vec<String>>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AgentView {
    pub id: AgentId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub email: String,
    pub role: String,
    pub capacity: i32,
    pub team_ids: Vec<TeamId>,
    pub skills: Vec<String>,
    pub active: bool,
}

fn agent_view(row: agent::Model, team_ids: Vec<TeamId>) -> AgentView {
    AgentView {
        id: row.id,
        workspace_id: row.workspace_id,
        name: row.name,
        email: row.email,
        role: row.role,
        capacity: row.capacity,
        team_ids,
        skills: serde_json::from_value(row.skills).unwrap_or_default(),
        active: row.active,
    }
}

/// Minimum password length: long passphrases beat composition rules.
const MIN_PASSWORD_CHARS: usize = 10;

fn email(value: &str) -> Result<String, EngineError> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && value
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if valid {
        Ok(value)
    } else {
        Err(EngineError::Validation(
            "`email` is not an email address".into(),
        ))
    }
}

fn capacity(value: i32) -> Result<i32, EngineError> {
    if (0..=1000).contains(&value) {
        Ok(value)
    } else {
        Err(EngineError::Validation(
            "`capacity` must be between 0 and 1000".into(),
        ))
    }
}

async fn password(hashing: &PasswordHashing, secret: &SecretString) -> Result<String, EngineError> {
    hash_password(hashing, "password", secret).await
}

/// A password's hash, once it is long enough; `field` names it in the refusal.
pub(crate) async fn hash_password(
    hashing: &PasswordHashing,
    field: &str,
    secret: &SecretString,
) -> Result<String, EngineError> {
    use secrecy::ExposeSecret;
    if secret.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
        return Err(EngineError::Validation(format!(
            "`{field}` must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    hashing.hash(secret).await
}

async fn team_ids_in_workspace(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    ids: &[String],
) -> Result<Vec<TeamId>, EngineError> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.push(find_team(db, workspace_id, id).await?.id);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

pub async fn create_agent(
    db: &DatabaseConnection,
    hashing: &PasswordHashing,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewAgent,
) -> Result<AgentView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let team_ids = team_ids_in_workspace(db, workspace_id, &input.team_ids).await?;
    let row = agent_row(hashing, workspace_id, input).await?;
    let txn = crate::store::begin_write(db).await?;
    let row = row
        .insert(&txn)
        .await
        .map_err(|error| EngineError::from_insert(error, "email", "an agent with this email"))?;
    set_teams(&txn, row.id, &team_ids).await?;
    txn.commit().await?;
    Ok(agent_view(row, team_ids))
}

/// A new agent's row, every field checked and its password hashed (its teams are set apart).
async fn agent_row(
    hashing: &PasswordHashing,
    workspace_id: WorkspaceId,
    input: NewAgent,
) -> Result<agent::ActiveModel, EngineError> {
    let now = Utc::now();
    Ok(agent::ActiveModel {
        id: Set(AgentId::new()),
        workspace_id: Set(workspace_id),
        name: Set(non_empty("name", &input.name)?),
        email: Set(email(&input.email)?),
        password_hash: Set(password(hashing, &input.password).await?),
        role: Set(input.role.as_str().to_owned()),
        capacity: Set(capacity(input.capacity.unwrap_or(DEFAULT_CAPACITY))?),
        skills: Set(skills(input.skills)?),
        active: Set(input.active.unwrap_or(true)),
        created_at: Set(now),
        updated_at: Set(now),
    })
}

async fn set_teams(
    txn: &sea_orm::DatabaseTransaction,
    agent_id: AgentId,
    team_ids: &[TeamId],
) -> Result<(), EngineError> {
    agent_team::Entity::delete_many()
        .filter(agent_team::Column::AgentId.eq(agent_id))
        .exec(txn)
        .await?;
    if team_ids.is_empty() {
        return Ok(());
    }
    agent_team::Entity::insert_many(team_ids.iter().map(|team_id| agent_team::ActiveModel {
        agent_id: Set(agent_id),
        team_id: Set(*team_id),
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub async fn list_agents(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<AgentView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let agents = agent::Entity::find()
        .filter(agent::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(agent::Column::Id)
        .all(db)
        .await?;
    let memberships = agent_team::Entity::find()
        .filter(agent_team::Column::AgentId.is_in(agents.iter().map(|a| a.id)))
        .all(db)
        .await?;
    Ok(agents
        .into_iter()
        .map(|row| {
            let teams = memberships
                .iter()
                .filter(|m| m.agent_id == row.id)
                .map(|m| m.team_id)
                .collect();
            agent_view(row, teams)
        })
        .collect())
}

pub async fn update_agent(
    db: &DatabaseConnection,
    hashing: &PasswordHashing,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: AgentId,
    patch: AgentPatch,
) -> Result<AgentView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = agent::Entity::find_by_id(id)
        .filter(agent::Column::WorkspaceId.eq(workspace_id))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("agent"))?;
    let agent_id = found.id;
    // Demoting or deactivating an active admin must leave the workspace another one.
    let leaves_admins = found.active
        && found.role == Role::Admin.as_str()
        && (patch.active == Some(false) || patch.role.is_some_and(|role| role != Role::Admin));
    let mut row = found.into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    if let Some(address) = patch.email {
        row.email = Set(email(&address)?);
    }
    // A new password ends every session the old one opened (its sockets close in routing).
    let password_changed = patch.password.is_some();
    if let Some(secret) = patch.password {
        row.password_hash = Set(password(hashing, &secret).await?);
    }
    if let Some(role) = patch.role {
        row.role = Set(role.as_str().to_owned());
    }
    if let Some(value) = patch.capacity {
        row.capacity = Set(capacity(value)?);
    }
    if let Some(list) = patch.skills {
        row.skills = Set(skills(list)?);
    }
    let deactivated = patch.active == Some(false);
    if let Some(active) = patch.active {
        row.active = Set(active);
    }
    let team_ids = match patch.team_ids {
        Some(ids) => Some(team_ids_in_workspace(db, workspace_id, &ids).await?),
        None => None,
    };
    row.updated_at = Set(Utc::now());
    let txn = crate::store::begin_write(db).await?;
    if leaves_admins {
        use sea_orm::{ConnectionTrait, QuerySelect};
        let mut admins = agent::Entity::find()
            .filter(agent::Column::WorkspaceId.eq(workspace_id.to_string()))
            .filter(agent::Column::Role.eq(Role::Admin.as_str()))
            .filter(agent::Column::Active.eq(true));
        // Two admins stepping down at once must not both pass: on Postgres the second waits on
        // the first's row locks and then reads what it committed (SQLite's `BEGIN IMMEDIATE`
        // already lets one writer in at a time).
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            admins = admins.lock_exclusive();
        }
        let others = admins
            .all(&txn)
            .await?
            .iter()
            .filter(|admin| admin.id != agent_id)
            .count();
        if others == 0 {
            let field = if deactivated { "active" } else { "role" };
            return Err(EngineError::Conflict(format!(
                "`{field}`: this is the workspace's last active admin; make another admin first"
            )));
        }
    }
    let row = row
        .update(&txn)
        .await
        .map_err(|error| EngineError::from_insert(error, "email", "an agent with this email"))?;
    if let Some(team_ids) = &team_ids {
        set_teams(&txn, agent_id, team_ids).await?;
    }
    if deactivated || password_changed {
        // A deactivated agent's sessions end at once, and so do a changed password's.
        crate::store::entity::auth_token::Entity::delete_many()
            .filter(crate::store::entity::auth_token::Column::AgentId.eq(agent_id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    let teams = agent_team::Entity::find()
        .filter(agent_team::Column::AgentId.eq(agent_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.team_id)
        .collect();
    Ok(agent_view(row, teams))
}
