//! `waos replay`: a range of recorded traffic run again through the routing core on a
//! simulated clock, under another policy or staffing, to see what would have happened before
//! changing anything. Read-only.
//!
//! - [`history`]: the range's cycles (queue entries, offers and their answers, holds) and the
//!   agents' presence, from the audit history.
//! - [`simulate`]: the recorded run as it was, and the replayed one, through
//!   `routing::dispatch` (the supervisor's own queue order and `choose_agent`).
//! - [`page`]: the HTML report with its plots.
//!
//! What the replay does not model is in docs/reports.md ("Replay").

pub mod history;
pub mod page;
pub mod simulate;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;

use crate::ids::{AgentId, WorkspaceId};
use crate::routing::policy::PolicyKind;
use simulate::{Run, Setup};

/// A duration's spread over the measured cycles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let n = values.len();
            (n > 0).then(|| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Spread {
            count: values.len(),
            p50_ms: rank(0.5),
            p90_ms: rank(0.9),
            mean_ms: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentLoad {
    pub agent_id: AgentId,
    pub name: String,
    pub assigned: u32,
    /// Conversations held and offers pending, averaged over the range.
    pub mean_load: f64,
    pub peak_load: u32,
}

/// The agents' mean loads: their median and 90th percentile, and each agent's.
#[derive(Clone, Debug, Serialize)]
pub struct PerAgentLoad {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub agents: Vec<AgentLoad>,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    /// From a cycle's arrival to its first assignment.
    pub queue_wait: Spread,
    /// From a cycle's arrival to its first offer (or assignment).
    pub first_offer: Spread,
    pub per_agent_load: PerAgentLoad,
    /// Cycles that began in the range and were never assigned.
    pub never_assigned: usize,
}

impl Figures {
    fn of(run: &Run) -> Figures {
        let millis = |pick: fn(&simulate::Served) -> Option<std::time::Duration>| {
            run.cycles
                .iter()
                .filter(|c| c.measured)
                .filter_map(pick)
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect::<Vec<f64>>()
        };
        let agents: Vec<AgentLoad> = run
            .agents
            .iter()
            .filter(|a| a.assigned > 0 || a.mean_load > 0.0)
            .map(|a| AgentLoad {
                agent_id: a.agent_id,
                name: a.name.clone(),
                assigned: a.assigned,
                mean_load: (a.mean_load * 1000.0).round() / 1000.0,
                peak_load: a.peak_load,
            })
            .collect();
        let loads = Spread::of(agents.iter().map(|a| a.mean_load).collect());
        Figures {
            queue_wait: Spread::of(millis(|c| c.queue_wait)),
            first_offer: Spread::of(millis(|c| c.first_offer)),
            per_agent_load: PerAgentLoad {
                p50: loads.p50_ms,
                p90: loads.p90_ms,
                agents,
            },
            never_assigned: run.never_assigned,
        }
    }
}

/// What to replay, and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub workspace_id: WorkspaceId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub setup: Setup,
}

#[derive(Clone, Debug, Serialize)]
pub struct SetupView {
    pub policy: PolicyKind,
    pub sticky: bool,
    pub capacity_delta: i32,
    pub agents_delta: i32,
}

/// The answer: the recorded figures beside the replayed ones.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub workspace_id: WorkspaceId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub setup: SetupView,
    /// Cycles begun in the range.
    pub cycles: usize,
    pub recorded: Figures,
    pub replayed: Figures,
    /// Both runs, for the report's plots.
    #[serde(skip)]
    pub runs: (Run, Run),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("`--to` must be after `--from`")]
    EmptyRange,
    #[error("no workspace {0}")]
    NoWorkspace(WorkspaceId),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Reads the range's history and replays it.
pub async fn replay(db: &DatabaseConnection, options: &Options) -> Result<Outcome, ReplayError> {
    use sea_orm::EntityTrait;
    if options.to <= options.from {
        return Err(ReplayError::EmptyRange);
    }
    crate::store::entity::workspace::Entity::find_by_id(options.workspace_id)
        .one(db)
        .await?
        .ok_or(ReplayError::NoWorkspace(options.workspace_id))?;
    let history = history::load(db, options.workspace_id, options.from, options.to).await?;
    Ok(outcome(&history, options))
}

/// The recorded and the replayed figures of one history.
pub fn outcome(history: &history::History, options: &Options) -> Outcome {
    let recorded = simulate::recorded(history);
    let replayed = simulate::replay(history, &options.setup);
    let setup = &options.setup;
    Outcome {
        workspace_id: options.workspace_id,
        from: options.from,
        to: options.to,
        setup: SetupView {
            policy: setup.policy,
            sticky: setup.sticky,
            capacity_delta: setup.capacity_delta,
            agents_delta: setup.agents_delta,
        },
        cycles: history.cycles.iter().filter(|c| c.measured).count(),
        recorded: Figures::of(&recorded),
        replayed: Figures::of(&replayed),
        runs: (recorded, replayed),
    }
}
