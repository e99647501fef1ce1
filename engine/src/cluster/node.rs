//! This process as a node of a cluster: its NATS connection, the round that keeps its share of
//! the workspaces' leases (a task on the runtime that joined), and what it can tell of the
//! cluster. NATS may be down when the node starts or at any time after: the connection is made
//! and remade in the background, and the round opens the lease bucket once NATS answers.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};
use serde::Serialize;
use tokio::sync::{OnceCell, watch};

use super::lease::{ClusterError, Leases};
use super::ownership::{Change, ClusterConfig, Epochs, Ownership};
use crate::ids::WorkspaceId;
use crate::store::entity::workspace;

/// This node in its cluster. Dropping it stops its round (its leases then lapse); [`Node::leave`]
/// hands them back at once.
pub struct Node {
    config: ClusterConfig,
    client: async_nats::Client,
    epochs: Arc<Epochs>,
    leases: Arc<OnceCell<Leases>>,
    stop: watch::Sender<bool>,
    frozen: watch::Sender<bool>,
    round: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What the rounds change, until routing takes it to follow them.
    changes: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Change>>>,
}

/// One workspace as the cluster holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeldWorkspace {
    pub workspace_id: WorkspaceId,
    /// The lease's revision: the fencing epoch of its owner's writes (0 on a single node).
    pub epoch: u64,
}

/// A node and the workspaces it owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node: String,
    /// The node that answered.
    pub this: bool,
    pub workspaces: Vec<HeldWorkspace>,
}

/// The cluster as one node sees it (`GET /api/v1/cluster`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    /// `false`: one node (`cluster.nats_url` empty) routes every workspace.
    pub clustered: bool,
    pub lease_ms: u64,
    /// Live nodes, with the workspaces each owns; a workspace nobody holds is in none.
    pub nodes: Vec<NodeView>,
}

impl Node {
    /// Connects to NATS (in the background, retried) and starts keeping this node's share.
    pub async fn join(config: ClusterConfig, db: DatabaseConnection) -> Result<Node, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name(&config.node)
            .retry_on_initial_connect()
            .connect(config.nats_url.as_str())
            .await
            .map_err(ClusterError::of)?;
        let epochs = Arc::new(Epochs::default());
        let leases = Arc::new(OnceCell::new());
        let (stop, stopped) = watch::channel(false);
        let (frozen, freezer) = watch::channel(false);
        let (changed, changes) = tokio::sync::mpsc::unbounded_channel();
        let ownership = {
            let (lease, epochs) = (config.lease, epochs.clone());
            move |leases| {
                Ownership::new(leases, lease, db, epochs)
                    .with_changes(changed)
                    .with_freezer(freezer)
            }
        };
        let round = tokio::spawn(keep_share(
            config.clone(),
            client.clone(),
            leases.clone(),
            stopped,
            ownership,
        ));
        Ok(Node {
            config,
            client,
            epochs,
            leases,
            stop,
            frozen,
            round: tokio::sync::Mutex::new(Some(round)),
            changes: std::sync::Mutex::new(Some(changes)),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub(crate) fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// What the rounds change (taken once, by the engine, which follows them).
    pub(crate) fn take_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// The epochs of the leases held now, which routing's writes carry.
    pub fn epochs(&self) -> Arc<Epochs> {
        self.epochs.clone()
    }

    /// Whether NATS answers now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Live nodes and who owns what, from the lease bucket.
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let leases = self
            .leases
            .get()
            .ok_or_else(|| ClusterError::of("the lease bucket is not open yet"))?;
        let mut nodes: Vec<NodeView> = leases
            .nodes()
            .await?
            .into_iter()
            .map(|node| NodeView {
                this: node == self.config.node,
                node,
                workspaces: Vec::new(),
            })
            .collect();
        for holder in leases.holders().await? {
            let held = HeldWorkspace {
                workspace_id: holder.workspace_id,
                epoch: holder.epoch,
            };
            match nodes.iter_mut().find(|view| view.node == holder.node) {
                Some(view) => view.workspaces.push(held),
                // Its heartbeat lapsed before its leases: listed all the same.
                None => nodes.push(NodeView {
                    this: holder.node == self.config.node,
                    node: holder.node,
                    workspaces: vec![held],
                }),
            }
        }
        Ok(ClusterView {
            node: self.config.node.clone(),
            clustered: true,
            lease_ms: u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX),
            nodes,
        })
    }

    /// Stops as a killed node would (for failover tests): no more rounds, nothing handed
    /// back, NATS closed. Its leases lapse; its engine, if any, still believes it holds them
    /// (a paused process), so its writes are left to the fence.
    pub async fn halt(&self) {
        if let Some(round) = self.round.lock().await.take() {
            round.abort();
        }
        let _ = self.client.drain().await;
    }

    /// Freezes this node's rounds as SIGSTOP would freeze the process, or thaws them (for
    /// failover tests): while frozen, no lease is renewed and no heartbeat sent, yet routing,
    /// HTTP and NATS run on believing the leases held; thawed, the next round finds out what
    /// was lost meanwhile.
    pub fn freeze(&self, frozen: bool) {
        let _ = self.frozen.send(frozen);
    }

    /// Stops the round and hands every lease back, so that the other nodes take over at once.
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        if let Some(round) = self.round.lock().await.take() {
            let _ = round.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One node's view when there is no cluster: it owns every workspace.
pub async fn single_node_view(db: &DatabaseConnection) -> Result<ClusterView, sea_orm::DbErr> {
    let mut workspaces: Vec<WorkspaceId> = workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    workspaces.sort();
    Ok(ClusterView {
        node: "single".into(),
        clustered: false,
        lease_ms: 0,
        nodes: vec![NodeView {
            node: "single".into(),
            this: true,
            workspaces: workspaces
                .into_iter()
                .map(|workspace_id| HeldWorkspace {
                    workspace_id,
                    epoch: 0,
                })
                .collect(),
        }],
    })
}

/// Opens the lease bucket once NATS answers, then keeps this node's share until told to stop.
async fn keep_share(
    config: ClusterConfig,
    client: async_nats::Client,
    opened: Arc<OnceCell<Leases>>,
    mut stop: watch::Receiver<bool>,
    ownership: impl FnOnce(Leases) -> Ownership,
) {
    let interval = config.round_interval();
    let leases = loop {
        match Leases::open(client.clone(), &config.bucket(), &config.node, config.lease).await {
            Ok(leases) => break leases,
            Err(error) => {
                tracing::warn!(%error, "lease bucket not open; trying again");
                tokio::select! {
                    () = tokio::time::sleep(interval.max(Duration::from_millis(100))) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let _ = opened.set(leases.clone());
    ownership(leases).run(interval, stop).await;
}
