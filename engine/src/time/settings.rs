//! Calendars and SLA policies as workspace settings, and a team's time settings as routing
//! reads them (through [`TeamTimes`], a cache the admin routes clear when they change).
//!
//! Scoped like every setting: another workspace's calendar is `not_found`; members who may
//! read the configuration see them, admins change them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

use crate::admin::{find_workspace, non_empty, require_admin};
use crate::auth::Principal;
use crate::error::EngineError;
use crate::ids::{CalendarId, SlaPolicyId, TeamId, WorkspaceId};
use crate::store::entity::{calendar, sla_policy, team};
use crate::time::calendar::{Calendar, CalendarSpec, OverrideSpec, Span};
use crate::time::clocks::Policy;

/// The widest range the schedule endpoint answers.
pub const MAX_SCHEDULE_DAYS: i64 = 62;
/// The longest SLA target or inactivity time: a year.
pub const MAX_TARGET_SECS: i32 = 366 * 24 * 3600;

// ---------- calendars ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCalendar {
    pub name: String,
    /// An IANA zone name (`Asia/Dubai`, `Europe/London`).
    pub time_zone: String,
    /// `mon`..`sun` to lists of local `["HH:MM","HH:MM"]` intervals; a missing day is closed,
    /// `["00:00","24:00"]` is all day.
    #[schema(value_type = Object, example = json!({"mon": [["09:00", "12:30"], ["13:30", "17:00"]]}))]
    pub weekly: std::collections::BTreeMap<String, Vec<Vec<String>>>,
    /// Dated exceptions; an empty `intervals` closes that date (a holiday).
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarPatch {
    pub name: Option<String>,
    pub time_zone: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub weekly: Option<std::collections::BTreeMap<String, Vec<Vec<String>>>>,
    pub overrides: Option<Vec<OverrideSpec>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CalendarView {
    pub id: CalendarId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub time_zone: String,
    #[schema(value_type = Object)]
    pub weekly: std::collections::BTreeMap<String, Vec<Vec<String>>>,
    pub overrides: Vec<OverrideSpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The stored form back as a calendar; `None` (with a warning) if it no longer parses, which
/// only a hand-edited row could do.
fn stored_calendar(row: &calendar::Model) -> Option<Calendar> {
    let spec = CalendarSpec {
        time_zone: row.time_zone.clone(),
        weekly: serde_json::from_str(&row.weekly).ok()?,
        overrides: serde_json::from_str(&row.overrides).ok()?,
    };
    match Calendar::parse(&spec) {
        Ok(calendar) => Some(calendar),
        Err(error) => {
            tracing::warn!(calendar_id = %row.id, %error, "stored calendar does not parse; treated as always open");
            None
        }
    }
}

fn calendar_view(row: calendar::Model) -> CalendarView {
    let spec = stored_calendar(&row).map(|c| c.spec()).unwrap_or_default();
    CalendarView {
        id: row.id,
        workspace_id: row.workspace_id,
        name: row.name,
        time_zone: row.time_zone,
        weekly: spec.weekly,
        overrides: spec.overrides,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn validated(spec: &CalendarSpec) -> Result<Calendar, EngineError> {
    Calendar::parse(spec).map_err(|error| EngineError::Validation(error.0))
}

fn stored_text<T: Serialize>(value: &T) -> Result<String, EngineError> {
    serde_json::to_string(value).map_err(|error| EngineError::Internal(error.to_string()))
}

pub async fn create_calendar(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewCalendar,
) -> Result<CalendarView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let name = non_empty("name", &input.name)?;
    let calendar = validated(&CalendarSpec {
        time_zone: input.time_zone,
        weekly: input.weekly,
        overrides: input.overrides,
    })?;
    let spec = calendar.spec();
    let now = Utc::now();
    let row = calendar::ActiveModel {
        id: Set(CalendarId::new()),
        workspace_id: Set(workspace_id),
        name: Set(name),
        time_zone: Set(spec.time_zone),
        weekly: Set(stored_text(&spec.weekly)?),
        overrides: Set(stored_text(&spec.overrides)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(calendar_view(row))
}

pub async fn list_calendars(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<CalendarView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let rows = calendar::Entity::find()
        .filter(calendar::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(calendar::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(calendar_view).collect())
}

async fn find_calendar(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: CalendarId,
) -> Result<Option<calendar::Model>, EngineError> {
    Ok(calendar::Entity::find_by_id(id)
        .filter(calendar::Column::WorkspaceId.eq(workspace_id.to_string()))
        .one(db)
        .await?)
}

pub async fn update_calendar(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: CalendarId,
    patch: CalendarPatch,
) -> Result<CalendarView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let found = find_calendar(db, workspace_id, id)
        .await?
        .ok_or(EngineError::NotFound("calendar"))?;
    let current = stored_calendar(&found)
        .map(|c| c.spec())
        .unwrap_or_default();
    let calendar = validated(&CalendarSpec {
        time_zone: patch.time_zone.unwrap_or(current.time_zone),
        weekly: patch.weekly.unwrap_or(current.weekly),
        overrides: patch.overrides.unwrap_or(current.overrides),
    })?;
    let spec = calendar.spec();
    let mut row = found.into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    row.time_zone = Set(spec.time_zone);
    row.weekly = Set(stored_text(&spec.weekly)?);
    row.overrides = Set(stored_text(&spec.overrides)?);
    row.updated_at = Set(Utc::now());
    Ok(calendar_view(row.update(db).await?))
}

/// The open intervals in UTC between two instants (at most [`MAX_SCHEDULE_DAYS`] apart).
pub async fn schedule(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: CalendarId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Span>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let found = find_calendar(db, workspace_id, id)
        .await?
        .ok_or(EngineError::NotFound("calendar"))?;
    if to <= from {
        return Err(EngineError::Validation("`to` must be after `from`".into()));
    }
    if to - from > Duration::days(MAX_SCHEDULE_DAYS) {
        return Err(EngineError::Validation(format!(
            "`from` to `to` may span at most {MAX_SCHEDULE_DAYS} days"
        )));
    }
    let calendar = stored_calendar(&found).unwrap_or_else(Calendar::always_open);
    Ok(calendar.open_spans(from, to))
}

// ---------- SLA policies ----------

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSlaPolicy {
    pub name: String,
    /// The customer's first message of a cycle to the first agent reply.
    pub first_response_secs: Option<i32>,
    /// Each later unanswered customer message to the next agent reply.
    pub next_response_secs: Option<i32>,
    /// The cycle's start to its resolve.
    pub resolution_secs: Option<i32>,
    /// The clocks run only while the team's calendar is open.
    #[serde(default)]
    pub business_hours: bool,
    /// The holder is warned this long before a deadline.
    pub warn_before_secs: Option<i32>,
}

/// Each field given replaces the stored one; a target given as null is removed.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicyPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::admin::nullable")]
    #[schema(value_type = Option<i32>)]
    pub first_response_secs: Option<Option<i32>>,
    #[serde(default, deserialize_with = "crate::admin::nullable")]
    #[schema(value_type = Option<i32>)]
    pub next_response_secs: Option<Option<i32>>,
    #[serde(default, deserialize_with = "crate::admin::nullable")]
    #[schema(value_type = Option<i32>)]
    pub resolution_secs: Option<Option<i32>>,
    pub business_hours: Option<bool>,
    #[serde(default, deserialize_with = "crate::admin::nullable")]
    #[schema(value_type = Option<i32>)]
    pub warn_before_secs: Option<Option<i32>>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SlaPolicyView {
    pub id: SlaPolicyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub first_response_secs: Option<i32>,
    pub next_response_secs: Option<i32>,
    pub resolution_secs: Option<i32>,
    pub business_hours: bool,
    pub warn_before_secs: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<sla_policy::Model> for SlaPolicyView {
    fn from(row: sla_policy::Model) -> Self {
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            name: row.name,
            first_response_secs: row.first_response_secs,
            next_response_secs: row.next_response_secs,
            resolution_secs: row.resolution_secs,
            business_hours: row.business_hours,
            warn_before_secs: row.warn_before_secs,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A number of seconds from 1 to a year, or absent.
pub(crate) fn seconds(field: &str, value: Option<i32>) -> Result<Option<i32>, EngineError> {
    match value {
        Some(secs) if !(1..=MAX_TARGET_SECS).contains(&secs) => Err(EngineError::Validation(
            format!("`{field}` must be between 1 and {MAX_TARGET_SECS} seconds, or null"),
        )),
        other => Ok(other),
    }
}

fn check_targets(row: &sla_policy::ActiveModel) -> Result<(), EngineError> {
    let target = |value: &sea_orm::ActiveValue<Option<i32>>| {
        value
            .clone()
            .into_value()
            .is_some_and(|v| v != sea_orm::Value::Int(None))
    };
    if !(target(&row.first_response_secs)
        || target(&row.next_response_secs)
        || target(&row.resolution_secs))
    {
        return Err(EngineError::Validation(
            "an SLA policy needs a target: `first_response_secs`, `next_response_secs` or `resolution_secs`".into(),
        ));
    }
    Ok(())
}

pub async fn create_sla_policy(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    input: NewSlaPolicy,
) -> Result<SlaPolicyView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let now = Utc::now();
    let row = sla_policy::ActiveModel {
        id: Set(SlaPolicyId::new()),
        workspace_id: Set(workspace_id),
        name: Set(non_empty("name", &input.name)?),
        first_response_secs: Set(seconds("first_response_secs", input.first_response_secs)?),
        next_response_secs: Set(seconds("next_response_secs", input.next_response_secs)?),
        resolution_secs: Set(seconds("resolution_secs", input.resolution_secs)?),
        business_hours: Set(input.business_hours),
        warn_before_secs: Set(seconds("warn_before_secs", input.warn_before_secs)?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    check_targets(&row)?;
    Ok(row.insert(db).await?.into())
}

pub async fn list_sla_policies(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
) -> Result<Vec<SlaPolicyView>, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    let rows = sla_policy::Entity::find()
        .filter(sla_policy::Column::WorkspaceId.eq(workspace_id.to_string()))
        .order_by_asc(sla_policy::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

async fn find_sla_policy(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: SlaPolicyId,
) -> Result<Option<sla_policy::Model>, EngineError> {
    Ok(sla_policy::Entity::find_by_id(id)
        .filter(sla_policy::Column::WorkspaceId.eq(workspace_id.to_string()))
        .one(db)
        .await?)
}

pub async fn update_sla_policy(
    db: &DatabaseConnection,
    caller: &Principal,
    workspace_id: WorkspaceId,
    id: SlaPolicyId,
    patch: SlaPolicyPatch,
) -> Result<SlaPolicyView, EngineError> {
    find_workspace(db, caller, workspace_id).await?;
    require_admin(caller, workspace_id)?;
    let mut row = find_sla_policy(db, workspace_id, id)
        .await?
        .ok_or(EngineError::NotFound("SLA policy"))?
        .into_active_model();
    if let Some(name) = patch.name {
        row.name = Set(non_empty("name", &name)?);
    }
    if let Some(value) = patch.first_response_secs {
        row.first_response_secs = Set(seconds("first_response_secs", value)?);
    }
    if let Some(value) = patch.next_response_secs {
        row.next_response_secs = Set(seconds("next_response_secs", value)?);
    }
    if let Some(value) = patch.resolution_secs {
        row.resolution_secs = Set(seconds("resolution_secs", value)?);
    }
    if let Some(value) = patch.business_hours {
        row.business_hours = Set(value);
    }
    if let Some(value) = patch.warn_before_secs {
        row.warn_before_secs = Set(seconds("warn_before_secs", value)?);
    }
    check_targets(&row)?;
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?.into())
}

fn names_nothing(field: &str, id: &str) -> EngineError {
    EngineError::Validation(format!("`{field}` {id:?} names nothing in this workspace"))
}

/// A `calendar_id` as a request gives it, checked to name one of the workspace's calendars.
pub(crate) async fn check_calendar(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: &str,
) -> Result<CalendarId, EngineError> {
    let found = match CalendarId::parse(id.trim()) {
        Some(parsed) => find_calendar(db, workspace_id, parsed).await?,
        None => None,
    };
    found
        .map(|calendar| calendar.id)
        .ok_or_else(|| names_nothing("calendar_id", id))
}

/// An `sla_policy_id` as a request gives it, checked to name one of the workspace's policies.
pub(crate) async fn check_sla_policy(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: &str,
) -> Result<SlaPolicyId, EngineError> {
    let found = match SlaPolicyId::parse(id.trim()) {
        Some(parsed) => find_sla_policy(db, workspace_id, parsed).await?,
        None => None,
    };
    found
        .map(|policy| policy.id)
        .ok_or_else(|| names_nothing("sla_policy_id", id))
}

/// Whether `id` is one of the workspace's SLA policies (an automation's `apply_sla`).
pub(crate) async fn has_sla_policy(
    db: &DatabaseConnection,
    workspace_id: WorkspaceId,
    id: SlaPolicyId,
) -> Result<bool, EngineError> {
    Ok(find_sla_policy(db, workspace_id, id).await?.is_some())
}

// ---------- a team's time settings, for routing ----------

/// What routing needs to know about a team's time: its calendar, its SLA policy and its
/// out-of-hours and inactivity rules.
#[derive(Clone, Debug)]
pub struct TeamTime {
    /// The team's name (for `{{team.name}}` in automated texts).
    pub name: String,
    /// `None`: always open.
    pub calendar: Option<Calendar>,
    pub out_of_hours_reply: Option<String>,
    pub offer_outside_hours: bool,
    pub policy: Option<Policy>,
    /// Milliseconds (see [`Policy`]).
    pub auto_resolve_after_ms: Option<i64>,
    pub auto_resolve_message: Option<String>,
}

impl Default for TeamTime {
    fn default() -> Self {
        Self {
            name: String::new(),
            calendar: None,
            out_of_hours_reply: None,
            offer_outside_hours: true,
            policy: None,
            auto_resolve_after_ms: None,
            auto_resolve_message: None,
        }
    }
}

impl TeamTime {
    /// The team's calendar, always-open when it has none.
    pub fn calendar(&self) -> &Calendar {
        static ALWAYS: OnceLock<Calendar> = OnceLock::new();
        self.calendar
            .as_ref()
            .unwrap_or_else(|| ALWAYS.get_or_init(Calendar::always_open))
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.calendar.as_ref().is_none_or(|c| c.is_open(at))
    }

    /// Whether the team's agents may be offered work at `at`.
    pub fn offers_at(&self, at: DateTime<Utc>) -> bool {
        self.offer_outside_hours || self.is_open(at)
    }

    /// The next opening, when closed and offering waits for it.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.offers_at(at) {
            return None;
        }
        self.calendar.as_ref().and_then(|c| c.next_change(at))
    }
}

/// Seconds of a setting in milliseconds, one second lasting `unit`.
fn scaled(secs: Option<i32>, unit: std::time::Duration) -> Option<i64> {
    let unit_ms = i64::try_from(unit.as_millis()).unwrap_or(i64::MAX).max(1);
    secs.map(|s| i64::from(s).saturating_mul(unit_ms))
}

/// Loads one SLA policy as the clocks use it (seconds in milliseconds, one second lasting
/// `unit`).
pub async fn load_policy(
    db: &DatabaseConnection,
    id: SlaPolicyId,
    unit: std::time::Duration,
) -> Result<Option<Policy>, DbErr> {
    Ok(sla_policy::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|row| Policy {
            id: row.id,
            name: row.name,
            first_response: scaled(row.first_response_secs, unit),
            next_response: scaled(row.next_response_secs, unit),
            resolution: scaled(row.resolution_secs, unit),
            business_hours: row.business_hours,
            warn_before: scaled(row.warn_before_secs, unit),
        }))
}

/// Loads a team's time settings (their seconds in milliseconds, one second lasting `unit`).
pub async fn load_team_time(
    db: &DatabaseConnection,
    team_id: TeamId,
    unit: std::time::Duration,
) -> Result<TeamTime, DbErr> {
    let Some(team) = team::Entity::find_by_id(team_id).one(db).await? else {
        return Ok(TeamTime::default());
    };
    let calendar = match team.calendar_id {
        Some(id) => calendar::Entity::find_by_id(id)
            .one(db)
            .await?
            .and_then(|row| stored_calendar(&row)),
        None => None,
    };
    let policy = match team.sla_policy_id {
        Some(id) => load_policy(db, id, unit).await?,
        None => None,
    };
    Ok(TeamTime {
        name: team.name,
        calendar,
        out_of_hours_reply: team.out_of_hours_reply,
        offer_outside_hours: team.offer_outside_hours,
        policy,
        auto_resolve_after_ms: scaled(team.auto_resolve_after_secs, unit),
        auto_resolve_message: team.auto_resolve_message,
    })
}

/// Teams' time settings, loaded once and shared by every conversation of the team until a
/// setting changes ([`TeamTimes::forget`]). One load per team at a time: a thousand
/// conversations starting together wait for the same one instead of each taking a database
/// connection (which would starve ingest's commits of the pool).
pub struct TeamTimes {
    unit: std::time::Duration,
    teams: crate::cache::OnceMap<TeamId, TeamTime>,
}

impl TeamTimes {
    pub fn new(unit: std::time::Duration) -> Self {
        Self {
            unit,
            teams: crate::cache::OnceMap::default(),
        }
    }

    pub fn cached(&self, team_id: TeamId) -> Option<Arc<TeamTime>> {
        self.teams.cached(team_id)
    }

    pub async fn get(
        &self,
        db: &DatabaseConnection,
        team_id: TeamId,
    ) -> Result<Arc<TeamTime>, DbErr> {
        self.teams
            .get(team_id, || load_team_time(db, team_id, self.unit))
            .await
    }

    /// After any change to teams, calendars or SLA policies.
    pub fn forget(&self) {
        self.teams.forget();
    }
}

/// Sets `within_hours` on each conversation from its team's calendar at `at` (one query for
/// the teams, one for their calendars).
pub async fn mark_within_hours(
    db: &DatabaseConnection,
    views: &mut [crate::inbox::ConversationView],
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let team_ids: std::collections::BTreeSet<TeamId> =
        views.iter().map(|view| view.team_id).collect();
    if team_ids.is_empty() {
        return Ok(());
    }
    let teams = team::Entity::find()
        .filter(team::Column::Id.is_in(team_ids))
        .all(db)
        .await?;
    let calendar_ids: std::collections::BTreeSet<CalendarId> =
        teams.iter().filter_map(|t| t.calendar_id).collect();
    if calendar_ids.is_empty() {
        return Ok(());
    }
    let calendars = calendar::Entity::find()
        .filter(calendar::Column::Id.is_in(calendar_ids))
        .all(db)
        .await?;
    let open: HashMap<TeamId, bool> = teams
        .iter()
        .map(|team| {
            let open = team
                .calendar_id
                .as_ref()
                .and_then(|id| calendars.iter().find(|c| c.id == *id))
                .and_then(stored_calendar)
                .is_none_or(|calendar| calendar.is_open(at));
            (team.id, open)
        })
        .collect();
    for view in views {
        view.within_hours = open.get(&view.team_id).copied().unwrap_or(true);
    }
    Ok(())
}
