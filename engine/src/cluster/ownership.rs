//! This node's share of the workspaces (shared/DESIGN.md, "Beyond one machine"): every round
//! (a third of the lease) it says it is alive, renews the leases it holds, and takes free
//! workspaces or hands some back so that each live node holds its fair share, `ceil(W / N)`.
//! Which workspaces a node prefers is a rendezvous hash of (node, workspace), so nodes reach
//! for different ones and a workspace goes back to the same node after a restart of another.
//!
//! The epochs of the leases held are kept in [`Epochs`], which routing reads for every state
//! write (the fencing token). A lease that cannot be renewed for two thirds of its life (NATS
//! unreachable) is dropped here first: this node stops writing under it before another node
//! can take it.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};

use super::lease::{ClusterError, Lease, Leases};
use crate::ids::WorkspaceId;
use crate::store::entity::workspace;

/// How this node joins a cluster (`cluster.*` settings).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nats_url: String,
    /// How long a lease lasts unrenewed: a dead node's workspaces move after it.
    pub lease: Duration,
    /// This node's id in the leases (unique per process).
    pub node: String,
    /// Names the lease bucket (`{prefix}_leases`), so installations and tests can share a NATS.
    pub prefix: String,
}

impl ClusterConfig {
    /// The lease bucket's name.
    pub fn bucket(&self) -> String {
        format!("{}_leases", self.prefix)
    }

    /// Between two rounds: a lease is renewed three times in its life.
    pub fn round_interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(10))
    }
}

/// The epochs of the leases this node holds, by workspace: what its routing-state writes carry.
#[derive(Debug, Default)]
pub struct Epochs(RwLock<HashMap<WorkspaceId, u64>>);

impl Epochs {
    /// The epoch this node holds `workspace_id` under, if it holds it.
    pub fn get(&self, workspace_id: WorkspaceId) -> Option<u64> {
        self.0
            .read()
            .map_or(None, |held| held.get(&workspace_id).copied())
    }

    fn set(&self, workspace_id: WorkspaceId, epoch: u64) {
        if let Ok(mut held) = self.0.write() {
            held.insert(workspace_id, epoch);
        }
    }

    fn remove(&self, workspace_id: WorkspaceId) {
        if let Ok(mut held) = self.0.write() {
            held.remove(&workspace_id);
        }
    }
}

/// What routing must follow, as the rounds find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This node holds the workspace now (it routes it from now on).
    Taken(Lease),
    /// This node no longer holds it (lost, or handed back): its routing stops here.
    Lost(WorkspaceId),
    /// The nodes alive now (every round).
    Alive(Vec<String>),
}

/// What one round changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Leases taken this round.
    pub taken: Vec<Lease>,
    /// Leases lost (another node holds them now, or they could not be renewed in time).
    pub lost: Vec<WorkspaceId>,
    /// Leases handed back to make room for another node.
    pub released: Vec<WorkspaceId>,
    /// When the first lease this node would take, held by another node now, lapses unless it
    /// is renewed (a dead node's lease: the round is run again then, not at the next tick).
    pub next_lapse: Option<chrono::DateTime<chrono::Utc>>,
}

struct Held {
    lease: Lease,
    renewed_at: Instant,
}

/// This node's leases and the loop that keeps them.
pub struct Ownership {
    leases: Leases,
    lease: Duration,
    db: DatabaseConnection,
    epochs: Arc<Epochs>,
    held: HashMap<WorkspaceId, Held>,
    changes: Option<tokio::sync::mpsc::UnboundedSender<Change>>,
    /// While `true`, no round runs (see [`super::Node::freeze`]).
    frozen: Option<tokio::sync::watch::Receiver<bool>>,
}

/// How long after a lease's lapse this node tries to take it (NATS removes an expired entry on
/// its own timer, a moment after its age passes).
const LAPSE_MARGIN: Duration = Duration::from_millis(20);

/// Where `node` ranks `workspace_id` among the workspaces it would take (lower first).
fn rank(node: &str, workspace_id: WorkspaceId) -> u64 {
    let mut hasher = DefaultHasher::new();
    (node, workspace_id).hash(&mut hasher);
    hasher.finish()
}

impl Ownership {
    pub fn new(
        leases: Leases,
        lease: Duration,
        db: DatabaseConnection,
        epochs: Arc<Epochs>,
    ) -> Ownership {
        Ownership {
            leases,
            lease,
            db,
            epochs,
            held: HashMap::new(),
            changes: None,
            frozen: None,
        }
    }

    /// No round runs while `frozen` says `true`.
    pub fn with_freezer(mut self, frozen: tokio::sync::watch::Receiver<bool>) -> Self {
        self.frozen = Some(frozen);
        self
    }

    /// Routing follows what the rounds change through `changes`.
    pub fn with_changes(mut self, changes: tokio::sync::mpsc::UnboundedSender<Change>) -> Self {
        self.changes = Some(changes);
        self
    }

    fn tell(&self, change: Change) {
        if let Some(changes) = &self.changes {
            let _ = changes.send(change);
        }
    }

    /// One round: heartbeat, renewals, then the fair share taken or given back (one lease
    /// handed back per round, so that a joining node's share moves over gradually).
    pub async fn round(&mut self) -> Result<Round, ClusterError> {
        let lost = self.renew().await;
        self.balance(lost).await
    }

    /// The round after its renewals: heartbeat, then the fair share taken or given back.
    async fn balance(&mut self, lost: Vec<WorkspaceId>) -> Result<Round, ClusterError> {
        let mut round = Round {
            lost,
            ..Round::default()
        };
        self.leases.heartbeat().await?;
        let alive = self.leases.nodes().await?;
        let nodes = alive.len().max(1);
        self.tell(Change::Alive(alive));
        let workspaces: Vec<WorkspaceId> = workspace::Entity::find()
            .select_only()
            .column(workspace::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(ClusterError::of)?;
        let share = workspaces.len().div_ceil(nodes);
        let node = self.leases.node().to_owned();
        if self.held.len() > share {
            let extra = self
                .held
                .values()
                .map(|held| held.lease)
                .max_by_key(|lease| rank(&node, lease.workspace_id));
            if let Some(lease) = extra {
                // Routing stops here before another node can take it.
                self.held.remove(&lease.workspace_id);
                self.epochs.remove(lease.workspace_id);
                self.tell(Change::Lost(lease.workspace_id));
                self.leases.release(lease).await?;
                round.released.push(lease.workspace_id);
            }
            return Ok(round);
        }
        if self.held.len() == share {
            return Ok(round);
        }
        let holders = self.leases.holders().await?;
        // Leases the bucket gives this node that it does not know it holds: a round cut short
        // between the bucket taking one and this node holding it, or a renewal given up on
        // that NATS carried out after all. Renewed under their epoch, they are held, as if
        // just taken (routing claims them afresh); left alone they would lapse, their
        // workspaces routed by nobody until then.
        let unknown: Vec<Lease> = holders
            .iter()
            .filter(|holder| holder.node == node && !self.held.contains_key(&holder.workspace_id))
            .map(|holder| Lease {
                workspace_id: holder.workspace_id,
                epoch: holder.epoch,
            })
            .collect();
        for lease in unknown {
            if self.held.len() >= share {
                break;
            }
            let sent = Instant::now();
            if let Some(lease) = self.leases.renew(lease).await? {
                self.take(lease, sent, &mut round);
            }
        }
        let lease = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        round.next_lapse = holders
            .iter()
            .filter(|holder| holder.node != node)
            .map(|holder| holder.written_at + lease)
            .min();
        let taken: HashSet<WorkspaceId> = holders
            .into_iter()
            .map(|holder| holder.workspace_id)
            .collect();
        let mut free: Vec<WorkspaceId> = workspaces
            .into_iter()
            .filter(|workspace_id| !taken.contains(workspace_id))
            .collect();
        free.sort_by_key(|workspace_id| rank(&node, *workspace_id));
        for workspace_id in free {
            if self.held.len() >= share {
                break;
            }
            let sent = Instant::now();
            if let Some(lease) = self.leases.acquire(workspace_id).await? {
                self.take(lease, sent, &mut round);
            }
        }
        Ok(round)
    }

    /// A lease taken this round: held, and routed from now on.
    fn take(&mut self, lease: Lease, sent: Instant, round: &mut Round) {
        self.hold(lease, sent);
        self.tell(Change::Taken(lease));
        round.taken.push(lease);
    }

    /// Holds `lease`, written by a request sent at `sent`: its life is counted from then (the
    /// bucket wrote it no earlier), however late the answer came.
    fn hold(&mut self, lease: Lease, sent: Instant) {
        self.epochs.set(lease.workspace_id, lease.epoch);
        self.held.insert(
            lease.workspace_id,
            Held {
                lease,
                renewed_at: sent,
            },
        );
    }

    /// Renews every lease held (all at once); answers those lost. One that NATS does not
    /// answer for is kept until two thirds of its life have passed since its last renewal,
    /// then dropped: each renewal waits until then at most (NATS away must not keep this node
    /// routing past it: a request waits for its answer far longer than a lease), and no less
    /// (a busy moment must not give a lease up).
    async fn renew(&mut self) -> Vec<WorkspaceId> {
        let mut lost = Vec::new();
        let held: Vec<(Lease, Instant)> = self
            .held
            .values()
            .map(|held| (held.lease, held.renewed_at))
            .collect();
        let safe_for = self.lease * 2 / 3;
        let sent = Instant::now();
        let renewals = futures_util::future::join_all(held.iter().map(|(lease, renewed_at)| {
            let leases = &self.leases;
            let deadline = tokio::time::Instant::from_std(*renewed_at + safe_for);
            async move {
                tokio::time::timeout_at(deadline, leases.renew(*lease))
                    .await
                    .unwrap_or_else(|_| Err(ClusterError::of("NATS did not answer in time")))
            }
        }))
        .await;
        for ((lease, renewed_at), renewal) in held.into_iter().zip(renewals) {
            match renewal {
                Ok(Some(renewed)) => self.hold(renewed, sent),
                Ok(None) => lost.push(lease.workspace_id),
                Err(error) if renewed_at.elapsed() >= self.lease * 2 / 3 => {
                    tracing::warn!(%error, workspace_id = %lease.workspace_id, "lease not renewed in time; routing of the workspace stops here");
                    lost.push(lease.workspace_id);
                }
                Err(error) => {
                    tracing::warn!(%error, workspace_id = %lease.workspace_id, "lease not renewed; trying again next round");
                }
            }
        }
        for workspace_id in &lost {
            self.held.remove(workspace_id);
            self.epochs.remove(*workspace_id);
            self.tell(Change::Lost(*workspace_id));
        }
        lost
    }

    /// Hands every lease back (a node that stops in order lets the others take over at once).
    pub async fn leave(&mut self) -> Result<(), ClusterError> {
        for (workspace_id, held) in std::mem::take(&mut self.held) {
            self.epochs.remove(workspace_id);
            self.tell(Change::Lost(workspace_id));
            self.leases.release(held.lease).await?;
        }
        self.leases.leave().await
    }

    fn log(round: &Result<Round, ClusterError>) {
        match round {
            Ok(round) => {
                for lease in &round.taken {
                    tracing::info!(workspace_id = %lease.workspace_id, epoch = lease.epoch, "workspace lease taken");
                }
                for workspace_id in &round.released {
                    tracing::info!(%workspace_id, "workspace lease handed back");
                }
            }
            Err(error) => tracing::warn!(%error, "cluster round failed; trying again"),
        }
    }

    /// Runs a round every `interval` until `stop` says so, then leaves.
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Renewals start on time, every interval, whatever the rest of a round takes: the
        // rest (heartbeat, share) is cut short when the next renewals are due.
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => break,
            }
            if let Some(frozen) = self.frozen.as_mut() {
                tokio::select! {
                    _ = frozen.wait_for(|frozen| !frozen) => {}
                    _ = stop.changed() => break,
                }
            }
            let due = tokio::time::Instant::now() + interval;
            let lost = self.renew().await;
            for workspace_id in &lost {
                tracing::info!(%workspace_id, "workspace lease lost");
            }
            let mut round = tokio::time::timeout_at(due, self.balance(Vec::new()))
                .await
                .unwrap_or_else(|_| Err(ClusterError::of("the round did not finish in time")));
            // A lease this node would take lapses before the next round (its holder stopped
            // renewing it: dead, or cut off): the share is taken again just after it lapses,
            // so a dead node's workspaces move within a lease, not a lease and a round.
            let lapse = round
                .as_ref()
                .ok()
                .and_then(|round| round.next_lapse)
                .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
                .map(|wait| tokio::time::Instant::now() + wait + LAPSE_MARGIN)
                .filter(|at| *at < due);
            if let Some(at) = lapse {
                Self::log(&round);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    _ = stop.changed() => break,
                }
                round = tokio::time::timeout_at(due, self.balance(Vec::new()))
                    .await
                    .unwrap_or_else(|_| Err(ClusterError::of("the round did not finish in time")));
            }
            Self::log(&round);
        }
        if let Err(error) = self.leave().await {
            tracing::warn!(%error, "leases not handed back; they lapse on their own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_rank_workspaces_differently_and_stably() {
        let workspaces: Vec<WorkspaceId> = (0..64)
            .map(|n| WorkspaceId(uuid::Uuid::from_u128(n)))
            .collect();
        let order = |node: &str| {
            let mut sorted = workspaces.clone();
            sorted.sort_by_key(|w| rank(node, *w));
            sorted
        };
        assert_eq!(order("node-a"), order("node-a"));
        assert_ne!(order("node-a"), order("node-b"));
    }
}
