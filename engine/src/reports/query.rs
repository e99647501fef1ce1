//! The summary and the daily figures, read from the rollups (never from the facts or the
//! conversations, so a report over a year is a few thousand small rows).
//!
//! Scope: a supervisor sees its teams (and the agents' work within them); a workspace admin
//! and API tokens the workspace; agents no reports. Filters: `team_id`, `agent_id`,
//! `channel_id`, or `team_id` with `agent_id`, or `channel_id` with `agent_id`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};

use super::rollup::Tally;
use super::{FactMetric, Figures, SlaFigures};
use crate::auth::Principal;
use crate::authz::Action;
use crate::error::EngineError;
use crate::ids::{AgentId, ChannelId, TeamId, WorkspaceId};
use crate::store::entity::{agent, daily_rollup, workspace};

/// The longest range a report covers.
const MAX_DAYS: i64 = 1_100;
/// Without `from`: this many days up to `to`.
const DEFAULT_DAYS: i64 = 30;

/// What a report asks for (the query string).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// First day (YYYY-MM-DD, or an RFC 3339 instant: its day in the workspace's zone); 29
    /// days before `to` by default.
    pub from: Option<String>,
    /// Last day, included; today by default.
    pub to: Option<String>,
    pub team_id: Option<String>,
    pub agent_id: Option<String>,
    pub channel_id: Option<String>,
    /// Durations in the team calendar's open time.
    pub business_hours: Option<bool>,
    /// Needed by the installation's token only (others report on their own workspace).
    pub workspace_id: Option<String>,
}

/// One agent's line of the summary.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentFigures {
    pub agent_id: String,
    pub name: String,
    pub resolved: i64,
    pub first_response: Figures,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub business_hours: bool,
    /// Cycles begun (new and reopened conversations).
    pub conversations: i64,
    pub resolved: i64,
    pub first_response: Figures,
    pub resolution: Figures,
    pub queue_wait: Figures,
    /// Mean of the offers that went unanswered before a cycle's first assignment.
    pub offers_before_acceptance: Option<f64>,
    pub sla: SlaFigures,
    pub per_agent: Vec<AgentFigures>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayFigures {
    pub date: String,
    pub conversations: i64,
    pub resolved: i64,
    pub first_response: Figures,
    pub resolution: Figures,
    pub queue_wait: Figures,
    pub sla: SlaFigures,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Daily {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub business_hours: bool,
    pub items: Vec<DayFigures>,
}

/// A resolved request: which rollup rows to add up.
struct Plan {
    workspace_id: String,
    zone: Tz,
    from: NaiveDate,
    to: NaiveDate,
    business: bool,
    /// The totals: one scope, these ids.
    scope: &'static str,
    scope_ids: Vec<String>,
    /// Per agent: one scope, ids with one of these prefixes (`team/`), or exactly these.
    agent_scope: &'static str,
    agent_prefixes: Vec<String>,
}

fn bad(text: impl Into<String>) -> EngineError {
    EngineError::Validation(text.into())
}

fn parse_day(field: &str, text: &str, zone: Tz) -> Result<NaiveDate, EngineError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&zone).date_naive())
        .map_err(|_| {
            bad(format!(
                "`{field}` must be a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
        })
}

fn id_text<T: ToString>(
    field: &str,
    text: &Option<String>,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<String>, EngineError> {
    text.as_deref()
        .map(|t| {
            parse(t)
                .map(|id| id.to_string())
                .ok_or_else(|| bad(format!("`{field}` is not a valid id")))
        })
        .transpose()
}

async fn plan(
    db: &DatabaseConnection,
    caller: &Principal,
    query: &ReportQuery,
) -> Result<Plan, EngineError> {
    let workspace_id = match (caller.workspace(), &query.workspace_id) {
        (Some(own), None) => own,
        (own, Some(text)) => {
            let id = WorkspaceId::parse(text).ok_or(EngineError::NotFound("workspace"))?;
            if own.is_some_and(|own| own != id) {
                return Err(EngineError::NotFound("workspace"));
            }
            id
        }
        (None, None) => {
            return Err(bad(
                "`workspace_id` is needed with the installation's token",
            ));
        }
    };
    caller.require(Action::ReadReports)?;
    let found = workspace::Entity::find_by_id(workspace_id.to_string())
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("workspace"))?;
    let zone: Tz = found.time_zone.parse().unwrap_or(Tz::UTC);
    let today = Utc::now().with_timezone(&zone).date_naive();
    let to = match &query.to {
        Some(text) => parse_day("to", text, zone)?,
        None => today,
    };
    let from = match &query.from {
        Some(text) => parse_day("from", text, zone)?,
        None => to - Duration::days(DEFAULT_DAYS - 1),
    };
    if from > to {
        return Err(bad("`from` is after `to`"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(bad(format!("a report covers at most {MAX_DAYS} days")));
    }
    let team = id_text("team_id", &query.team_id, TeamId::parse)?;
    let agent = id_text("agent_id", &query.agent_id, AgentId::parse)?;
    let channel = id_text("channel_id", &query.channel_id, ChannelId::parse)?;
    // A supervisor who signs in sees its teams; a supervisor token the workspace.
    let own_teams = caller
        .agent()
        .filter(|a| a.role == crate::auth::Role::Supervisor)
        .map(|a| {
            a.team_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        });
    let (scope, scope_ids, agent_scope, agent_prefixes) = match (&own_teams, team, channel) {
        (_, Some(_), Some(_)) => {
            return Err(bad("`team_id` and `channel_id` cannot be combined"));
        }
        (Some(_), None, Some(_)) => {
            return Err(EngineError::Forbidden(
                "a report by channel needs a workspace admin".into(),
            ));
        }
        (Some(teams), Some(team), None) if !teams.contains(&team) => {
            return Err(EngineError::NotFound("team"));
        }
        (Some(teams), None, None) => (
            "team",
            teams.clone(),
            "team_agent",
            teams.iter().map(|t| format!("{t}/")).collect(),
        ),
        (_, Some(team), None) => (
            "team",
            vec![team.clone()],
            "team_agent",
            vec![format!("{team}/")],
        ),
        (None, None, Some(channel)) => (
            "channel",
            vec![channel.clone()],
            "channel_agent",
            vec![format!("{channel}/")],
        ),
        (None, None, None) => (
            "workspace",
            vec![workspace_id.to_string()],
            "agent",
            vec![String::new()],
        ),
    };
    // One agent: its lines within the chosen teams or channel (or the workspace).
    let (scope, scope_ids, agent_prefixes) = match agent {
        None => (scope, scope_ids, agent_prefixes),
        Some(agent) => {
            let ids: Vec<String> = agent_prefixes
                .iter()
                .map(|prefix| format!("{prefix}{agent}"))
                .collect();
            (agent_scope, ids.clone(), ids)
        }
    };
    Ok(Plan {
        workspace_id: workspace_id.to_string(),
        zone,
        from,
        to,
        business: query.business_hours.unwrap_or(false),
        scope,
        scope_ids,
        agent_scope,
        agent_prefixes,
    })
}

fn days(from: NaiveDate, to: NaiveDate) -> Vec<String> {
    from.iter_days()
        .take_while(|day| *day <= to)
        .map(|day| day.format("%Y-%m-%d").to_string())
        .collect()
}

impl Plan {
    fn range(&self) -> Condition {
        Condition::all()
            .add(daily_rollup::Column::WorkspaceId.eq(&self.workspace_id))
            .add(daily_rollup::Column::Day.gte(self.from.format("%Y-%m-%d").to_string()))
            .add(daily_rollup::Column::Day.lte(self.to.format("%Y-%m-%d").to_string()))
    }

    async fn totals(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Vec<daily_rollup::Model>, EngineError> {
        Ok(daily_rollup::Entity::find()
            .filter(self.range())
            .filter(daily_rollup::Column::Scope.eq(self.scope))
            .filter(daily_rollup::Column::ScopeId.is_in(self.scope_ids.clone()))
            .all(db)
            .await?)
    }

    fn header(&self) -> (String, String, String) {
        (
            self.from.format("%Y-%m-%d").to_string(),
            self.to.format("%Y-%m-%d").to_string(),
            self.zone.name().to_owned(),
        )
    }
}

fn internal(error: String) -> EngineError {
    EngineError::Internal(error)
}

/// Adds rows up per metric.
fn by_metric<'a>(
    rows: impl IntoIterator<Item = &'a daily_rollup::Model>,
) -> Result<HashMap<FactMetric, Tally>, EngineError> {
    let mut tallies: HashMap<FactMetric, Tally> = HashMap::new();
    for row in rows {
        let tally = match tallies.entry(row.metric) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Tally::new().map_err(internal)?)
            }
        };
        tally
            .add_row(row, row.metric.is_duration())
            .map_err(internal)?;
    }
    Ok(tallies)
}

fn count(tallies: &HashMap<FactMetric, Tally>, metric: FactMetric) -> i64 {
    tallies.get(&metric).map_or(0, |t| t.count)
}

fn figures(tallies: &HashMap<FactMetric, Tally>, metric: FactMetric, business: bool) -> Figures {
    tallies
        .get(&metric)
        .map(|t| t.figures(business))
        .unwrap_or_default()
}

fn sla(tallies: &HashMap<FactMetric, Tally>) -> SlaFigures {
    SlaFigures {
        met: count(tallies, FactMetric::SlaMet),
        breached: count(tallies, FactMetric::SlaBreached),
    }
}

pub async fn summary(
    db: &DatabaseConnection,
    caller: &Principal,
    query: &ReportQuery,
) -> Result<Summary, EngineError> {
    let plan = plan(db, caller, query).await?;
    let totals = by_metric(&plan.totals(db).await?)?;
    let per_agent = per_agent(db, &plan).await?;
    let (from, to, time_zone) = plan.header();
    let offers = totals.get(&FactMetric::OffersBeforeAcceptance);
    Ok(Summary {
        from,
        to,
        time_zone,
        business_hours: plan.business,
        conversations: count(&totals, FactMetric::Opened),
        resolved: count(&totals, FactMetric::Resolution),
        first_response: figures(&totals, FactMetric::FirstResponse, plan.business),
        resolution: figures(&totals, FactMetric::Resolution, plan.business),
        queue_wait: figures(&totals, FactMetric::QueueWait, plan.business),
        offers_before_acceptance: offers
            .filter(|t| t.count > 0)
            .map(|t| (t.sum as f64 / t.count as f64 * 100.0).round() / 100.0),
        sla: sla(&totals),
        per_agent,
    })
}

/// The agents' lines: resolved and first response, from the agent rollups of the plan.
async fn per_agent(db: &DatabaseConnection, plan: &Plan) -> Result<Vec<AgentFigures>, EngineError> {
    let mut ids = Condition::any();
    for prefix in &plan.agent_prefixes {
        ids = ids.add(daily_rollup::Column::ScopeId.starts_with(prefix));
    }
    let rows = daily_rollup::Entity::find()
        .filter(plan.range())
        .filter(daily_rollup::Column::Scope.eq(plan.agent_scope))
        .filter(ids)
        .filter(
            daily_rollup::Column::Metric.is_in([FactMetric::Resolution, FactMetric::FirstResponse]),
        )
        .all(db)
        .await?;
    // The agent is what follows the last `/` (the whole id in the workspace's agent scope).
    let mut grouped: BTreeMap<String, Vec<&daily_rollup::Model>> = BTreeMap::new();
    for row in &rows {
        let agent = row
            .scope_id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        grouped.entry(agent).or_default().push(row);
    }
    let names: HashMap<String, String> = agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .column(agent::Column::Name)
        .filter(agent::Column::Id.is_in(grouped.keys().cloned().collect::<Vec<_>>()))
        .into_tuple::<(String, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let mut lines = Vec::with_capacity(grouped.len());
    for (agent_id, rows) in grouped {
        let tallies = by_metric(rows)?;
        lines.push(AgentFigures {
            name: names.get(&agent_id).cloned().unwrap_or_default(),
            agent_id,
            resolved: count(&tallies, FactMetric::Resolution),
            first_response: figures(&tallies, FactMetric::FirstResponse, plan.business),
        });
    }
    lines.sort_by(|a, b| b.resolved.cmp(&a.resolved).then(a.name.cmp(&b.name)));
    Ok(lines)
}

pub async fn daily(
    db: &DatabaseConnection,
    caller: &Principal,
    query: &ReportQuery,
) -> Result<Daily, EngineError> {
    let plan = plan(db, caller, query).await?;
    let rows = plan.totals(db).await?;
    let mut per_day: BTreeMap<&str, Vec<&daily_rollup::Model>> = BTreeMap::new();
    for row in &rows {
        per_day.entry(row.day.as_str()).or_default().push(row);
    }
    let mut items = Vec::new();
    for date in days(plan.from, plan.to) {
        let tallies = by_metric(per_day.remove(date.as_str()).unwrap_or_default())?;
        items.push(DayFigures {
            conversations: count(&tallies, FactMetric::Opened),
            resolved: count(&tallies, FactMetric::Resolution),
            first_response: figures(&tallies, FactMetric::FirstResponse, plan.business),
            resolution: figures(&tallies, FactMetric::Resolution, plan.business),
            queue_wait: figures(&tallies, FactMetric::QueueWait, plan.business),
            sla: sla(&tallies),
            date,
        });
    }
    let (from, to, time_zone) = plan.header();
    Ok(Daily {
        from,
        to,
        time_zone,
        business_hours: plan.business,
        items,
    })
}

/// The daily figures as CSV rows (a header first), for a spreadsheet.
pub fn daily_rows(daily: &Daily) -> Vec<Vec<String>> {
    let mut header = vec!["date".to_owned(), "conversations".into(), "resolved".into()];
    for metric in ["first_response", "resolution", "queue_wait"] {
        for figure in ["count", "avg_secs", "p50_secs", "p90_secs"] {
            header.push(format!("{metric}_{figure}"));
        }
    }
    header.extend(["sla_met".to_owned(), "sla_breached".to_owned()]);
    let number = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    let mut rows = vec![header];
    for day in &daily.items {
        let mut row = vec![
            day.date.clone(),
            day.conversations.to_string(),
            day.resolved.to_string(),
        ];
        for figures in [&day.first_response, &day.resolution, &day.queue_wait] {
            row.push(figures.count.to_string());
            row.push(number(figures.avg_secs));
            row.push(number(figures.p50_secs));
            row.push(number(figures.p90_secs));
        }
        row.push(day.sla.met.to_string());
        row.push(day.sla.breached.to_string());
        rows.push(row);
    }
    rows
}
