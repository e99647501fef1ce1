//! Rollups: the facts not yet counted are folded into `rollups` and marked counted in one
//! transaction (a crash in between leaves both as they were: nothing counted twice or never).
//! One roller at a time: Postgres takes a transaction-scoped advisory lock, SQLite's
//! `BEGIN IMMEDIATE` serialises writers anyway.
//!
//! A fact counts on the day and in the month of its `ended_at` in the workspace's time zone
//! (a month row is the sum of its days, so a year's report reads twelve rows per line, not
//! 365), under six scopes:
//! the workspace, its team, its channel and, when an agent did it, the agent, the agent within
//! the team and the agent within the channel. [`rebuild`] recounts everything from the facts
//! (after a change of zone, or to repair); [`differences`] compares the rollups with a
//! recount in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{FactMetric, Figures, Seconds};
use crate::ids::FactId;
use crate::store::entity::{conversation_fact, rollup, workspace};

/// Facts folded per transaction.
pub const BATCH: u64 = 5_000;

/// Any number: the one advisory lock of the rollers.
const ROLLUP_LOCK: i64 = 0x7761_6f73_726f_6c6c;

/// What a rollup row covers: a day or a month of the workspace's zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Span {
    Day,
    Month,
}

impl Span {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Span::Day => "day",
            Span::Month => "month",
        }
    }

    fn parse(text: &str) -> Option<Span> {
        [Span::Day, Span::Month]
            .into_iter()
            .find(|span| span.as_str() == text)
    }
}

/// A rollup row's key: span, period, scope, scope id, metric.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub workspace_id: String,
    pub span: Span,
    /// YYYY-MM-DD for a day, YYYY-MM for a month.
    pub period: String,
    pub scope: &'static str,
    pub scope_id: String,
    pub metric: FactMetric,
}

/// Counted facts of one key: the wall clock and the business-time sides (the same count).
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    pub wall: Measure,
    pub business: Measure,
}

impl Tally {
    pub(crate) fn new() -> Result<Tally, String> {
        Ok(Tally {
            wall: Measure::new()?,
            business: Measure::new()?,
        })
    }

    fn add_fact(&mut self, fact: &conversation_fact::Model) -> Result<(), String> {
        let duration = fact.metric.is_duration();
        self.wall.record(fact.value, duration)?;
        self.business.record(fact.business_value, duration)
    }

    fn add_row(&mut self, row: &rollup::Model) -> Result<(), String> {
        self.wall.add(row.count, row.sum, &row.histogram)?;
        self.business
            .add(row.count, row.business_sum, &row.business_histogram)
    }

    fn row(&self, key: &Key) -> Result<rollup::ActiveModel, String> {
        // A count's histogram stays empty: no bytes.
        let encode = |measure: &Measure| {
            if key.metric.is_duration() {
                measure.histogram.encode()
            } else {
                Ok(Vec::new())
            }
        };
        Ok(rollup::ActiveModel {
            workspace_id: Set(key.workspace_id.clone()),
            span: Set(key.span.as_str().to_owned()),
            period: Set(key.period.clone()),
            scope: Set(key.scope.to_owned()),
            scope_id: Set(key.scope_id.clone()),
            metric: Set(key.metric),
            count: Set(self.wall.count),
            sum: Set(self.wall.sum),
            business_sum: Set(self.business.sum),
            histogram: Set(encode(&self.wall)?),
            business_histogram: Set(encode(&self.business)?),
        })
    }

    /// Count, sum and business sum, as a row stores them.
    fn totals(&self) -> (i64, i64, i64) {
        (self.wall.count, self.wall.sum, self.business.sum)
    }
}

/// One side (wall clock or business time) of a metric's facts or rows, added up.
#[derive(Clone, Debug)]
pub(crate) struct Measure {
    pub count: i64,
    pub sum: i64,
    histogram: Seconds,
}

impl Measure {
    pub(crate) fn new() -> Result<Measure, String> {
        Ok(Measure {
            count: 0,
            sum: 0,
            histogram: Seconds::new()?,
        })
    }

    /// Counts one fact's value (into the histogram too when it is a duration).
    fn record(&mut self, value: i64, duration: bool) -> Result<(), String> {
        self.count += 1;
        self.sum += value;
        if duration {
            self.histogram.record_ms(value, 1)?;
        }
        Ok(())
    }

    /// Adds one stored row's count, sum and (encoded) histogram.
    pub(crate) fn add(&mut self, count: i64, sum: i64, histogram: &[u8]) -> Result<(), String> {
        self.count += count;
        self.sum += sum;
        self.histogram.add_encoded(histogram)
    }

    /// A duration's figures.
    pub(crate) fn figures(&self) -> Figures {
        Figures {
            count: self.count,
            avg_secs: (self.count > 0)
                .then(|| (self.sum as f64 / self.count as f64).round() / 1000.0),
            p50_secs: self.histogram.quantile(0.5),
            p90_secs: self.histogram.quantile(0.9),
        }
    }
}

/// The day (YYYY-MM-DD) of `at` in `zone`.
pub fn day_in(zone: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d").to_string()
}

/// The month (YYYY-MM) of a day (YYYY-MM-DD).
fn month_of(day: &str) -> String {
    day.get(..7).unwrap_or(day).to_owned()
}

/// The scopes a fact counts under, as (scope, scope id).
fn scopes(fact: &conversation_fact::Model) -> Vec<(&'static str, String)> {
    let mut scopes = vec![
        ("workspace", fact.workspace_id.to_string()),
        ("team", fact.team_id.to_string()),
        ("channel", fact.channel_id.to_string()),
    ];
    if let Some(agent) = &fact.agent_id {
        scopes.push(("agent", agent.to_string()));
        scopes.push(("team_agent", format!("{}/{agent}", fact.team_id)));
        scopes.push(("channel_agent", format!("{}/{agent}", fact.channel_id)));
    }
    scopes
}

/// The workspaces' zones (UTC for one unknown or unparsable).
pub(crate) async fn zones(
    db: &impl ConnectionTrait,
    workspace_ids: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, Tz>, DbErr> {
    let ids: Vec<String> = workspace_ids.into_iter().collect();
    let rows: Vec<(String, String)> = workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .column(workspace::Column::TimeZone)
        .filter(workspace::Column::Id.is_in(ids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, zone)| (id, zone.parse().unwrap_or(Tz::UTC)))
        .collect())
}

/// Counts `facts` per key.
fn fold(
    facts: &[conversation_fact::Model],
    zones: &HashMap<String, Tz>,
) -> Result<BTreeMap<Key, Tally>, String> {
    let mut tallies: BTreeMap<Key, Tally> = BTreeMap::new();
    for fact in facts {
        let workspace_id = fact.workspace_id.to_string();
        let zone = zones.get(&workspace_id).copied().unwrap_or(Tz::UTC);
        let day = day_in(zone, fact.ended_at);
        let periods = [(Span::Month, month_of(&day)), (Span::Day, day)];
        for (scope, scope_id) in scopes(fact) {
            for (span, period) in &periods {
                let key = Key {
                    workspace_id: workspace_id.clone(),
                    span: *span,
                    period: period.clone(),
                    scope,
                    scope_id: scope_id.clone(),
                    metric: fact.metric,
                };
                match tallies.get_mut(&key) {
                    Some(tally) => tally.add_fact(fact)?,
                    None => {
                        let mut tally = Tally::new()?;
                        tally.add_fact(fact)?;
                        tallies.insert(key, tally);
                    }
                }
            }
        }
    }
    Ok(tallies)
}

fn scope_name(text: &str) -> Option<&'static str> {
    [
        "workspace",
        "team",
        "channel",
        "agent",
        "team_agent",
        "channel_agent",
    ]
    .into_iter()
    .find(|scope| *scope == text)
}

fn key_of(row: &rollup::Model) -> Option<Key> {
    Some(Key {
        workspace_id: row.workspace_id.clone(),
        span: Span::parse(&row.span)?,
        period: row.period.clone(),
        scope: scope_name(&row.scope)?,
        scope_id: row.scope_id.clone(),
        metric: row.metric,
    })
}

fn corrupt(error: String) -> DbErr {
    DbErr::Custom(format!("reports: {error}"))
}

async fn lock(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({ROLLUP_LOCK})"))
            .await?;
    }
    Ok(())
}

/// Folds up to [`BATCH`] uncounted facts into the rollups; how many it counted.
pub async fn roll_once(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let txn = crate::store::begin_write(db).await?;
    lock(&txn).await?;
    let facts = conversation_fact::Entity::find()
        .filter(conversation_fact::Column::Rolled.eq(false))
        .order_by_asc(conversation_fact::Column::EndedAt)
        .limit(BATCH)
        .all(&txn)
        .await?;
    if facts.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    add_to_rollups(&txn, &facts).await?;
    let ids: Vec<FactId> = facts.iter().map(|fact| fact.id).collect();
    for chunk in ids.chunks(500) {
        conversation_fact::Entity::update_many()
            .col_expr(
                conversation_fact::Column::Rolled,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(conversation_fact::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(facts.len())
}

/// Adds `facts` to the stored rollups of their days (in the caller's transaction, which must
/// hold the rollers' lock, as [`roll_once`] does, or be the only writer, as a benchmark's seed).
pub async fn add_to_rollups(
    txn: &impl ConnectionTrait,
    facts: &[conversation_fact::Model],
) -> Result<(), DbErr> {
    let workspaces: BTreeSet<String> = facts.iter().map(|f| f.workspace_id.to_string()).collect();
    let zones = zones(txn, workspaces.iter().cloned()).await?;
    let mut tallies = fold(facts, &zones).map_err(corrupt)?;
    // Day and month texts differ in length, so one list of periods finds both spans' rows.
    let periods: BTreeSet<String> = tallies.keys().map(|key| key.period.clone()).collect();
    let stored = rollup::Entity::find()
        .filter(rollup::Column::WorkspaceId.is_in(workspaces))
        .filter(rollup::Column::Period.is_in(periods))
        .all(txn)
        .await?;
    for row in &stored {
        if let Some(tally) = key_of(row).and_then(|key| tallies.get_mut(&key)) {
            tally.add_row(row).map_err(corrupt)?;
        }
    }
    let rows = tallies
        .iter()
        .map(|(key, tally)| tally.row(key))
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    for chunk in rows.chunks(500) {
        rollup::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    rollup::Column::WorkspaceId,
                    rollup::Column::Span,
                    rollup::Column::Scope,
                    rollup::Column::ScopeId,
                    rollup::Column::Period,
                    rollup::Column::Metric,
                ])
                .update_columns([
                    rollup::Column::Count,
                    rollup::Column::Sum,
                    rollup::Column::BusinessSum,
                    rollup::Column::Histogram,
                    rollup::Column::BusinessHistogram,
                ])
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Folds every uncounted fact; how many.
pub async fn roll_all(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let mut total = 0;
    loop {
        let counted = roll_once(db).await?;
        total += counted;
        if counted < BATCH as usize {
            return Ok(total);
        }
    }
}

/// Recounts the rollups of `workspace_id` (every workspace when `None`) from the facts; how
/// many facts it counted.
pub async fn rebuild(db: &DatabaseConnection, workspace_id: Option<&str>) -> Result<usize, DbErr> {
    let txn = crate::store::begin_write(db).await?;
    lock(&txn).await?;
    forget(&txn, workspace_id).await?;
    txn.commit().await?;
    roll_all(db).await
}

/// Drops the rollups of `workspace_id` (all when `None`) and marks its facts uncounted, so
/// the rollers count them again (a change of zone moves their days).
pub async fn forget(db: &impl ConnectionTrait, workspace_id: Option<&str>) -> Result<(), DbErr> {
    let mut rollups = rollup::Entity::delete_many();
    let mut facts = conversation_fact::Entity::update_many().col_expr(
        conversation_fact::Column::Rolled,
        sea_orm::sea_query::Expr::value(false),
    );
    if let Some(id) = workspace_id {
        rollups = rollups.filter(rollup::Column::WorkspaceId.eq(id));
        facts = facts.filter(conversation_fact::Column::WorkspaceId.eq(id));
    }
    rollups.exec(db).await?;
    facts.exec(db).await?;
    Ok(())
}

/// Where the stored rollups of `workspace_id` differ from a recount of all its facts, in words
/// (empty when they agree). Facts not yet counted are counted first.
pub async fn differences(
    db: &DatabaseConnection,
    workspace_id: &str,
) -> Result<Vec<String>, DbErr> {
    roll_all(db).await?;
    let facts = conversation_fact::Entity::find()
        .filter(conversation_fact::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await?;
    let zones = zones(db, [workspace_id.to_owned()]).await?;
    let expected = fold(&facts, &zones).map_err(corrupt)?;
    let stored = rollup::Entity::find()
        .filter(rollup::Column::WorkspaceId.eq(workspace_id))
        .all(db)
        .await?;
    let mut found: BTreeMap<Key, Tally> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in &stored {
        let Some(key) = key_of(row) else {
            problems.push(format!("unknown scope {:?}", row.scope));
            continue;
        };
        let mut tally = Tally::new().map_err(corrupt)?;
        tally.add_row(row).map_err(corrupt)?;
        found.insert(key, tally);
    }
    for (key, want) in &expected {
        match found.remove(key) {
            None => problems.push(format!("{key:?}: missing")),
            Some(got) => {
                let same = got.totals() == want.totals()
                    && got.wall.histogram.pairs() == want.wall.histogram.pairs()
                    && got.business.histogram.pairs() == want.business.histogram.pairs();
                if !same {
                    problems.push(format!(
                        "{key:?}: stored {:?}, recounted {:?} (count, sum, business sum)",
                        got.totals(),
                        want.totals()
                    ));
                }
            }
        }
    }
    problems.extend(
        found
            .keys()
            .map(|key| format!("{key:?}: no fact behind it")),
    );
    Ok(problems)
}

/// Every workspace's id.
pub async fn workspace_ids(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .into_tuple()
        .all(db)
        .await
}
