//! Reports: facts recorded as conversations are served, rolled up per day, read back.
//!
//! - [`Fact`]: one measurement of one conversation cycle (its queue wait, first response,
//!   resolution, ...). The conversation actor records them in the same transaction as the
//!   state change that settles them, keyed (conversation, cycle number, metric), so a retried write
//!   adds nothing and a crash loses nothing that was stored.
//! - [`rollup`]: folds the facts not yet counted into `rollups` (per workspace, team,
//!   agent, channel, agent within a team or channel; days and months in the workspace's zone), in one
//!   transaction with marking them counted; rebuilds them from the facts, and compares.
//! - [`query`]: the summary and the daily figures from the rollups, scoped by role.
//!
//! Each metric's definition (where it starts, where it ends) is in docs/reports.md.

pub mod query;
pub mod rollup;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ChannelId, ConversationId, FactId, TeamId, WorkspaceId};
use crate::store::entity::conversation_fact;
use crate::time::Calendar;

/// What a fact measures.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum FactMetric {
    /// A cycle began (a new or reopened conversation); value 1.
    #[sea_orm(string_value = "opened")]
    Opened,
    /// Cycle start to its first assignment.
    #[sea_orm(string_value = "queue_wait")]
    QueueWait,
    /// Offers declined, timed out or withdrawn before the first assignment (a count).
    #[sea_orm(string_value = "offers_before_acceptance")]
    OffersBeforeAcceptance,
    /// Cycle start to the first agent reply (automated messages are no reply).
    #[sea_orm(string_value = "first_response")]
    FirstResponse,
    /// Cycle start to the resolve.
    #[sea_orm(string_value = "resolution")]
    Resolution,
    /// Resolved under an SLA policy with no target breached; value 1.
    #[sea_orm(string_value = "sla_met")]
    SlaMet,
    /// The cycle's first breach of an SLA target; value 1.
    #[sea_orm(string_value = "sla_breached")]
    SlaBreached,
}

impl FactMetric {
    /// Measured in milliseconds (the others are counts).
    pub fn is_duration(self) -> bool {
        matches!(
            self,
            FactMetric::QueueWait | FactMetric::FirstResponse | FactMetric::Resolution
        )
    }
}

/// One measurement of one conversation cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub conversation_id: ConversationId,
    /// 1 for a conversation's first cycle, one more for each reopen.
    pub cycle: i32,
    pub cycle_started_at: DateTime<Utc>,
    pub metric: FactMetric,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub agent_id: Option<AgentId>,
    pub channel_id: ChannelId,
    pub ended_at: DateTime<Utc>,
    /// Milliseconds for a duration, else a count.
    pub value: i64,
    /// A duration's open time in the team's calendar (the wall value without a calendar).
    pub business_value: i64,
}

/// Where a cycle's facts belong.
#[derive(Clone, Debug, PartialEq)]
pub struct FactScope {
    pub conversation_id: ConversationId,
    pub cycle: i32,
    pub cycle_started_at: DateTime<Utc>,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub channel_id: ChannelId,
}

impl FactScope {
    /// The cycle's start to `ended_at`, on the wall clock and in `calendar`'s open time.
    pub fn duration(
        &self,
        metric: FactMetric,
        agent_id: Option<AgentId>,
        ended_at: DateTime<Utc>,
        calendar: Option<&Calendar>,
    ) -> Fact {
        let start = self.cycle_started_at;
        let value = (ended_at - start).num_milliseconds().max(0);
        let business_value = calendar.map_or(value, |calendar| {
            calendar
                .open_spans(start, ended_at)
                .iter()
                .map(|span| (span.end - span.start).num_milliseconds())
                .sum()
        });
        self.fact(metric, agent_id, ended_at, value, business_value)
    }

    /// A count (or a mark, value 1) at `ended_at`.
    pub fn count(
        &self,
        metric: FactMetric,
        agent_id: Option<AgentId>,
        ended_at: DateTime<Utc>,
        value: i64,
    ) -> Fact {
        self.fact(metric, agent_id, ended_at, value, value)
    }

    fn fact(
        &self,
        metric: FactMetric,
        agent_id: Option<AgentId>,
        ended_at: DateTime<Utc>,
        value: i64,
        business_value: i64,
    ) -> Fact {
        Fact {
            conversation_id: self.conversation_id,
            cycle: self.cycle,
            cycle_started_at: self.cycle_started_at,
            metric,
            workspace_id: self.workspace_id,
            team_id: self.team_id,
            agent_id,
            channel_id: self.channel_id,
            ended_at,
            value,
            business_value,
        }
    }
}

/// Stores `facts`; one already stored for its cycle and metric is kept as it was.
pub async fn record(db: &impl ConnectionTrait, facts: &[Fact]) -> Result<(), DbErr> {
    if facts.is_empty() {
        return Ok(());
    }
    let rows = facts.iter().map(|fact| conversation_fact::ActiveModel {
        id: Set(FactId::new()),
        conversation_id: Set(fact.conversation_id),
        cycle: Set(fact.cycle),
        cycle_started_at: Set(fact.cycle_started_at),
        metric: Set(fact.metric),
        workspace_id: Set(fact.workspace_id),
        team_id: Set(fact.team_id),
        agent_id: Set(fact.agent_id),
        channel_id: Set(fact.channel_id),
        ended_at: Set(fact.ended_at),
        value: Set(fact.value),
        business_value: Set(fact.business_value),
        rolled: Set(false),
    });
    conversation_fact::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([
            conversation_fact::Column::ConversationId,
            conversation_fact::Column::Cycle,
            conversation_fact::Column::Metric,
        ])
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Two significant figures: exact below 256 s, within 1% above.
const SIGNIFICANT_FIGURES: u8 = 2;

/// A histogram of whole seconds.
#[derive(Clone, Debug)]
pub(crate) struct Seconds(Histogram<u64>);

impl Seconds {
    pub(crate) fn new() -> Result<Seconds, String> {
        Histogram::new(SIGNIFICANT_FIGURES)
            .map(Seconds)
            .map_err(|error| error.to_string())
    }

    pub(crate) fn record_ms(&mut self, ms: i64, count: u64) -> Result<(), String> {
        let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
        self.0
            .record_n(secs, count)
            .map_err(|error| error.to_string())
    }

    /// The stored form: the histogram's V2 encoding (a few bytes per occupied bucket).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|error| format!("encoding a histogram: {error}"))?;
        Ok(bytes)
    }

    /// Adds what `encode` wrote (nothing for no bytes).
    pub(crate) fn add_encoded(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let stored: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|error| format!("a stored histogram: {error}"))?;
        self.0.add(&stored).map_err(|error| error.to_string())
    }

    /// The nearest-rank quantile in seconds (the low end of its bucket); `None` when empty.
    pub(crate) fn quantile(&self, quantile: f64) -> Option<f64> {
        (!self.0.is_empty())
            .then(|| self.0.lowest_equivalent(self.0.value_at_quantile(quantile)) as f64)
    }

    pub(crate) fn pairs(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
            .collect()
    }
}

/// A duration's figures: how many, their mean and their median and 90th percentile (nearest
/// rank, at two significant figures), in seconds; null when there are none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub count: i64,
    pub avg_secs: Option<f64>,
    pub p50_secs: Option<f64>,
    pub p90_secs: Option<f64>,
}

/// SLA outcomes: cycles resolved with every target met, cycles with a breach.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaFigures {
    pub met: i64,
    pub breached: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_and_exact_for_small_values() {
        let mut seconds = Seconds::new().unwrap();
        for ms in [60_000, 120_000, 200_999] {
            seconds.record_ms(ms, 1).unwrap();
        }
        assert_eq!(seconds.quantile(0.5), Some(120.0));
        assert_eq!(seconds.quantile(0.9), Some(200.0));
        let mut round = Seconds::new().unwrap();
        round.record_ms(600_000, 1).unwrap();
        assert_eq!(round.quantile(0.5), Some(600.0), "a bucket's low end");
        let mut copy = Seconds::new().unwrap();
        copy.add_encoded(&seconds.encode().unwrap()).unwrap();
        assert_eq!(copy.pairs(), seconds.pairs());
        let mut two = Seconds::new().unwrap();
        two.record_ms(10_000, 1).unwrap();
        two.record_ms(20_000, 1).unwrap();
        assert_eq!(
            two.quantile(0.5),
            Some(10.0),
            "nearest rank: the lower of two"
        );
    }

    #[test]
    fn large_values_are_within_one_percent() {
        let mut seconds = Seconds::new().unwrap();
        seconds.record_ms(55_200_000, 1).unwrap();
        let p50 = seconds.quantile(0.5).unwrap();
        assert!((p50 - 55_200.0).abs() / 55_200.0 < 0.01, "{p50}");
        assert_eq!(Seconds::new().unwrap().quantile(0.5), None);
    }
}
