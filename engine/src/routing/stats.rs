//! The supervisor dashboard's `stats` snapshot and `stats_delta` frames (shared/CONTRACT.md):
//! plain data, and what changed between two snapshots. Computed by the supervisor, which owns
//! the queue and roster they describe.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::routing::policy::Presence;
use crate::routing::wait::WaitEstimate;

/// One team's queue and staffing, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TeamStats {
    pub team_id: String,
    pub waiting: usize,
    pub longest_wait_ms: i64,
    pub agents_online: usize,
    pub agents_available: usize,
    pub active: usize,
    /// Open conversations with a breached SLA.
    pub sla_breached: usize,
    /// Open conversations warned of a deadline and not yet breached.
    pub sla_at_risk: usize,
    /// What a conversation arriving now can expect to wait for an offer, in milliseconds;
    /// `null` while too few conversations ended lately to say, or nobody is online.
    pub expected_wait_ms: Option<WaitEstimate>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentStats {
    pub agent_id: String,
    pub name: String,
    pub presence: Presence,
    pub load: u32,
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaitingStats {
    pub conversation_id: String,
    pub team_id: String,
    pub since: DateTime<Utc>,
    /// Its place in its team's queue (1: the next offered).
    pub position: usize,
    /// Its SLA is breached.
    pub sla_breached: bool,
}

/// The `stats` snapshot (shared/CONTRACT.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub teams: Vec<TeamStats>,
    pub agents: Vec<AgentStats>,
    pub waiting: Vec<WaitingStats>,
}

/// Only what changed: teams and agents whose numbers moved, conversations that started or
/// stopped waiting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsDelta {
    pub teams: Vec<TeamStats>,
    pub agents: Vec<AgentStats>,
    pub waiting_added: Vec<WaitingStats>,
    pub waiting_removed: Vec<String>,
}

impl Stats {
    /// `None` when nothing changed. Longest waits tick on by themselves, so a team whose only
    /// change is its longest wait is not resent (the dashboard counts from `since`).
    pub fn delta_since(&self, before: &Stats) -> Option<StatsDelta> {
        let same_team = |a: &TeamStats, b: &TeamStats| {
            (
                a.waiting,
                a.agents_online,
                a.agents_available,
                a.active,
                a.sla_breached,
                a.sla_at_risk,
                a.expected_wait_ms,
            ) == (
                b.waiting,
                b.agents_online,
                b.agents_available,
                b.active,
                b.sla_breached,
                b.sla_at_risk,
                b.expected_wait_ms,
            )
        };
        let teams: Vec<TeamStats> = self
            .teams
            .iter()
            .filter(|t| {
                !before
                    .teams
                    .iter()
                    .any(|b| b.team_id == t.team_id && same_team(b, t))
            })
            .cloned()
            .collect();
        let agents: Vec<AgentStats> = self
            .agents
            .iter()
            .filter(|a| !before.agents.contains(a))
            .cloned()
            .collect();
        // New, or changed (a breach): the dashboard replaces entries by id.
        let waiting_added: Vec<WaitingStats> = self
            .waiting
            .iter()
            .filter(|w| !before.waiting.contains(w))
            .cloned()
            .collect();
        let waiting_removed: Vec<String> = before
            .waiting
            .iter()
            .filter(|b| {
                !self
                    .waiting
                    .iter()
                    .any(|w| w.conversation_id == b.conversation_id)
            })
            .map(|b| b.conversation_id.clone())
            .collect();
        let empty = teams.is_empty()
            && agents.is_empty()
            && waiting_added.is_empty()
            && waiting_removed.is_empty();
        (!empty).then_some(StatsDelta {
            teams,
            agents,
            waiting_added,
            waiting_removed,
        })
    }
}

/// A dashboard frame: the first snapshot, then deltas.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StatsFrame {
    Stats(Stats),
    StatsDelta(StatsDelta),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(waiting: usize, longest_wait_ms: i64) -> TeamStats {
        TeamStats {
            team_id: "t".into(),
            waiting,
            longest_wait_ms,
            agents_online: 1,
            agents_available: 1,
            active: 0,
            sla_breached: 0,
            sla_at_risk: 0,
            expected_wait_ms: None,
        }
    }

    fn waiting(id: &str) -> WaitingStats {
        WaitingStats {
            conversation_id: id.into(),
            team_id: "t".into(),
            since: Utc::now(),
            position: 1,
            sla_breached: false,
        }
    }

    #[test]
    fn a_delta_carries_only_what_changed() {
        let before = Stats {
            teams: vec![team(1, 100)],
            agents: vec![],
            waiting: vec![waiting("a")],
        };
        // Only the longest wait ticked on: nothing to send.
        let ticked = Stats {
            teams: vec![team(1, 900)],
            ..before.clone()
        };
        assert_eq!(ticked.delta_since(&before), None);
        // "a" was taken, "b" arrived.
        let moved = Stats {
            teams: vec![team(1, 0)],
            agents: vec![],
            waiting: vec![waiting("b")],
        };
        let delta = moved.delta_since(&before).unwrap();
        assert!(delta.teams.is_empty(), "the team's counts did not change");
        assert_eq!(delta.waiting_removed, vec!["a".to_owned()]);
        assert_eq!(delta.waiting_added.len(), 1);
        assert_eq!(delta.waiting_added[0].conversation_id, "b");
        // A new expected wait is a change of the team.
        let mut sooner = moved.clone();
        sooner.teams[0].expected_wait_ms = Some(WaitEstimate {
            p50: 1000,
            p90: 3000,
        });
        assert_eq!(sooner.delta_since(&moved).unwrap().teams.len(), 1);
    }
}
