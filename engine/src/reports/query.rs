//! The summary and the daily figures, read from the rollups (never from the facts or the
//! conversations, so a report over a year is a few thousand small rows).
//!
//! Scope: a supervisor sees its teams (and the agents' work within them); a workspace admin
//! and API tokens the workspace; agents no reports. Filters: `team_id`, `agent_id`,
//! `channel_id`, or `team_id` with `agent_id`, or `channel_id` with `agent_id`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};

use super::rollup::{Measure, Span};
use super::{FactMetric, Figures, SlaFigures};
use crate::auth::Principal;
use crate::authz::Action;
use crate::error::EngineError;
use crate::ids::{AgentId, ChannelId, TeamId, WorkspaceId};
use crate::store::entity::{agent, rollup, workspace};

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
    /// Per agent: one scope, and its ids with one of these prefixes (`team/`), or exactly
    /// these (`agent_exact`), or any (none given).
    agent_scope: &'static str,
    agent_ids: Vec<String>,
    agent_exact: bool,
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
    let found = workspace::Entity::find_by_id(workspace_id)
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
    // One agent: its lines within the chosen teams or channel (or the workspace), by their
    // exact ids; else every agent line with one of the prefixes (any in the workspace).
    let (scope, scope_ids, agent_ids, agent_exact) = match agent {
        None if scope == "workspace" => (scope, scope_ids, Vec::new(), false),
        None => (scope, scope_ids, agent_prefixes, false),
        Some(agent) => {
            let ids: Vec<String> = agent_prefixes
                .iter()
                .map(|prefix| format!("{prefix}{agent}"))
                .collect();
            (agent_scope, ids.clone(), ids, true)
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
        agent_ids,
        agent_exact,
    })
}

fn days(from: NaiveDate, to: NaiveDate) -> Vec<String> {
    from.iter_days()
        .take_while(|day| *day <= to)
        .map(|day| day.format("%Y-%m-%d").to_string())
        .collect()
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// `from..=to` as whole months (YYYY-MM) and the days around them (at most two runs).
fn months_and_days(from: NaiveDate, to: NaiveDate) -> (Vec<String>, Vec<(NaiveDate, NaiveDate)>) {
    let mut months = Vec::new();
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    let mut day = from;
    while day <= to {
        let first = day.with_day(1).unwrap_or(day);
        let next_month = first.checked_add_months(Months::new(1)).unwrap_or(to);
        let last = next_month.pred_opt().unwrap_or(to);
        if day == first && last <= to {
            months.push(first.format("%Y-%m").to_string());
        } else {
            runs.push((day, last.min(to)));
        }
        match last.min(to).succ_opt() {
            Some(after) => day = after,
            None => break,
        }
    }
    (months, runs)
}

/// One side of a stored rollup row, as a report reads it: the period, the scope id, the
/// metric, the count, the sum and the histogram (wall clock or business time).
type Line = (String, String, FactMetric, i64, i64, Vec<u8>);

impl Plan {
    fn workspace(&self) -> Condition {
        Condition::all().add(rollup::Column::WorkspaceId.eq(&self.workspace_id))
    }

    /// The day rows of `from..=to`.
    fn every_day(&self) -> Condition {
        Condition::all()
            .add(rollup::Column::Span.eq(Span::Day.as_str()))
            .add(rollup::Column::Period.gte(day_text(self.from)))
            .add(rollup::Column::Period.lte(day_text(self.to)))
    }

    /// `from..=to` in as few rows as there are: its whole months' rows, and the day rows
    /// around them.
    fn whole_range(&self) -> Condition {
        let (months, runs) = months_and_days(self.from, self.to);
        let mut range = Condition::any();
        if !months.is_empty() {
            range = range.add(
                Condition::all()
                    .add(rollup::Column::Span.eq(Span::Month.as_str()))
                    .add(rollup::Column::Period.is_in(months)),
            );
        }
        for (first, last) in runs {
            range = range.add(
                Condition::all()
                    .add(rollup::Column::Span.eq(Span::Day.as_str()))
                    .add(rollup::Column::Period.gte(day_text(first)))
                    .add(rollup::Column::Period.lte(day_text(last))),
            );
        }
        range
    }

    /// The plan's scope over `periods`, for `metrics`; histograms only when asked (counts
    /// have none, and a line that shows only a count does not need one).
    async fn lines(
        &self,
        db: &DatabaseConnection,
        scope: Condition,
        periods: Condition,
        metrics: &[FactMetric],
        histograms: bool,
    ) -> Result<Vec<Line>, EngineError> {
        let (sum, histogram) = if self.business {
            (
                rollup::Column::BusinessSum,
                rollup::Column::BusinessHistogram,
            )
        } else {
            (rollup::Column::Sum, rollup::Column::Histogram)
        };
        let mut select = rollup::Entity::find()
            .select_only()
            .column(rollup::Column::Period)
            .column(rollup::Column::ScopeId)
            .column(rollup::Column::Metric)
            .column(rollup::Column::Count)
            .column_as(sum, "sum");
        select = if histograms {
            select.column_as(histogram, "histogram")
        } else {
            select.column_as(Expr::val(Vec::<u8>::new()), "histogram")
        };
        Ok(select
            .filter(self.workspace())
            .filter(scope)
            .filter(periods)
            .filter(rollup::Column::Metric.is_in(metrics.iter().copied()))
            .into_tuple::<Line>()
            .all(db)
            .await?)
    }

    /// The totals' scope: one scope, these ids.
    fn totals_scope(&self) -> Condition {
        Condition::all()
            .add(rollup::Column::Scope.eq(self.scope))
            .add(rollup::Column::ScopeId.is_in(self.scope_ids.clone()))
    }

    fn header(&self) -> (String, String, String) {
        (
            day_text(self.from),
            day_text(self.to),
            self.zone.name().to_owned(),
        )
    }
}

fn internal(error: String) -> EngineError {
    EngineError::Internal(error)
}

/// Every metric a summary or a day shows.
const ALL_METRICS: [FactMetric; 7] = [
    FactMetric::Opened,
    FactMetric::QueueWait,
    FactMetric::OffersBeforeAcceptance,
    FactMetric::FirstResponse,
    FactMetric::Resolution,
    FactMetric::SlaMet,
    FactMetric::SlaBreached,
];

/// Adds lines up per metric.
fn by_metric<'a>(
    lines: impl IntoIterator<Item = &'a Line>,
) -> Result<HashMap<FactMetric, Measure>, EngineError> {
    let mut measures: HashMap<FactMetric, Measure> = HashMap::new();
    for (_, _, metric, count, sum, histogram) in lines {
        let measure = match measures.entry(*metric) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Measure::new().map_err(internal)?)
            }
        };
        measure.add(*count, *sum, histogram).map_err(internal)?;
    }
    Ok(measures)
}

fn count(measures: &HashMap<FactMetric, Measure>, metric: FactMetric) -> i64 {
    measures.get(&metric).map_or(0, |m| m.count)
}

fn figures(measures: &HashMap<FactMetric, Measure>, metric: FactMetric) -> Figures {
    measures
        .get(&metric)
        .map(Measure::figures)
        .unwrap_or_default()
}

fn sla(measures: &HashMap<FactMetric, Measure>) -> SlaFigures {
    SlaFigures {
        met: count(measures, FactMetric::SlaMet),
        breached: count(measures, FactMetric::SlaBreached),
    }
}

pub async fn summary(
    db: &DatabaseConnection,
    caller: &Principal,
    query: &ReportQuery,
) -> Result<Summary, EngineError> {
    let plan = plan(db, caller, query).await?;
    let lines = plan
        .lines(
            db,
            plan.totals_scope(),
            plan.whole_range(),
            &ALL_METRICS,
            true,
        )
        .await?;
    let totals = by_metric(&lines)?;
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
        first_response: figures(&totals, FactMetric::FirstResponse),
        resolution: figures(&totals, FactMetric::Resolution),
        queue_wait: figures(&totals, FactMetric::QueueWait),
        offers_before_acceptance: offers
            .filter(|m| m.count > 0)
            .map(|m| (m.sum as f64 / m.count as f64 * 100.0).round() / 100.0),
        sla: sla(&totals),
        per_agent,
    })
}

/// The agents' lines: resolved and first response, from the agent rollups of the plan.
async fn per_agent(db: &DatabaseConnection, plan: &Plan) -> Result<Vec<AgentFigures>, EngineError> {
    let mut scope = Condition::all().add(rollup::Column::Scope.eq(plan.agent_scope));
    match plan.agent_ids.as_slice() {
        // The workspace's agent scope: every id is an agent.
        [] => {}
        exact if plan.agent_exact => {
            scope = scope.add(rollup::Column::ScopeId.is_in(exact.to_vec()));
        }
        prefixes => {
            let mut any = Condition::any();
            for prefix in prefixes {
                any = any.add(rollup::Column::ScopeId.starts_with(prefix));
            }
            scope = scope.add(any);
        }
    }
    // First responses with their histograms; resolutions are only counted.
    let range = plan.whole_range();
    let mut lines = plan
        .lines(
            db,
            scope.clone(),
            range.clone(),
            &[FactMetric::FirstResponse],
            true,
        )
        .await?;
    lines.extend(
        plan.lines(db, scope, range, &[FactMetric::Resolution], false)
            .await?,
    );
    // The agent is what follows the last `/` (the whole id in the workspace's agent scope).
    let mut grouped: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        let agent = line.1.rsplit('/').next().unwrap_or_default().to_owned();
        grouped.entry(agent).or_default().push(line);
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
    let mut agents = Vec::with_capacity(grouped.len());
    for (agent_id, lines) in grouped {
        let measures = by_metric(lines)?;
        agents.push(AgentFigures {
            name: names.get(&agent_id).cloned().unwrap_or_default(),
            agent_id,
            resolved: count(&measures, FactMetric::Resolution),
            first_response: figures(&measures, FactMetric::FirstResponse),
        });
    }
    agents.sort_by(|a, b| b.resolved.cmp(&a.resolved).then(a.name.cmp(&b.name)));
    Ok(agents)
}

pub async fn daily(
    db: &DatabaseConnection,
    caller: &Principal,
    query: &ReportQuery,
) -> Result<Daily, EngineError> {
    let plan = plan(db, caller, query).await?;
    let lines = plan
        .lines(
            db,
            plan.totals_scope(),
            plan.every_day(),
            &ALL_METRICS,
            true,
        )
        .await?;
    let mut per_day: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        per_day.entry(line.0.as_str()).or_default().push(line);
    }
    let mut items = Vec::new();
    for date in days(plan.from, plan.to) {
        let measures = by_metric(per_day.remove(date.as_str()).unwrap_or_default())?;
        items.push(DayFigures {
            conversations: count(&measures, FactMetric::Opened),
            resolved: count(&measures, FactMetric::Resolution),
            first_response: figures(&measures, FactMetric::FirstResponse),
            resolution: figures(&measures, FactMetric::Resolution),
            queue_wait: figures(&measures, FactMetric::QueueWait),
            sla: sla(&measures),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_range_is_whole_months_and_the_days_around_them() {
        let (months, runs) = months_and_days(day("2025-01-01"), day("2025-12-31"));
        assert_eq!(months.len(), 12);
        assert_eq!(months[1], "2025-02");
        assert!(runs.is_empty());
        let (months, runs) = months_and_days(day("2025-01-15"), day("2025-03-02"));
        assert_eq!(months, ["2025-02"]);
        assert_eq!(
            runs,
            [
                (day("2025-01-15"), day("2025-01-31")),
                (day("2025-03-01"), day("2025-03-02"))
            ]
        );
        let (months, runs) = months_and_days(day("2024-02-01"), day("2024-02-28"));
        assert!(
            months.is_empty(),
            "29 February is outside: not the whole month"
        );
        assert_eq!(runs, [(day("2024-02-01"), day("2024-02-28"))]);
        let (months, runs) = months_and_days(day("2024-02-01"), day("2024-02-29"));
        assert_eq!((months, runs), (vec!["2024-02".to_owned()], vec![]));
        let (months, runs) = months_and_days(day("2025-06-10"), day("2025-06-10"));
        assert!(months.is_empty());
        assert_eq!(runs, [(day("2025-06-10"), day("2025-06-10"))]);
    }
}
