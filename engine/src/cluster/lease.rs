//! Workspace leases in a NATS JetStream key-value bucket (shared/DESIGN.md, "Beyond one
//! machine").
//!
//! One key per workspace (`ws.<workspace id>`), its value the owning node's id. The bucket's
//! `max_age` is the lease: a key nobody renews disappears after it, and any node may then
//! create it again. Taking a lease is `create` (refused while the key exists), renewing is
//! `update` at the revision last written (refused with `WrongLastRevision` once another node
//! wrote since), handing it back is a delete at that revision. The revision is the stream's
//! sequence, so it only grows: it is the fencing epoch every routing-state write carries.
//!
//! (Debian's nats-server 2.9 has no per-key TTL, hence the bucket-wide `max_age`.)

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::ids::WorkspaceId;

/// Something went wrong talking to NATS (not a lease lost: that is an answer, not an error).
#[derive(Debug, thiserror::Error)]
#[error("NATS: {0}")]
pub struct ClusterError(String);

impl ClusterError {
    pub(crate) fn of(error: impl std::fmt::Display) -> Self {
        ClusterError(error.to_string())
    }
}

/// A lease held: the workspace and the revision of our last write, the fencing epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub workspace_id: WorkspaceId,
    pub epoch: u64,
}

/// Who holds a workspace now, as the bucket says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub workspace_id: WorkspaceId,
    pub node: String,
    pub epoch: u64,
    /// When the lease was last written (taken or renewed): it lapses a lease after that.
    pub written_at: chrono::DateTime<chrono::Utc>,
}

/// The lease bucket, as one node uses it.
#[derive(Clone)]
pub struct Leases {
    store: kv::Store,
    node: String,
}

fn key(workspace_id: WorkspaceId) -> String {
    format!("ws.{workspace_id}")
}

/// A node's heartbeat key (`node.<id>`, a key's own characters only).
fn node_key(node: &str) -> String {
    let id: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("node.{id}")
}

impl Leases {
    /// Opens (creating it if need be) the bucket `name` whose entries live `lease`.
    pub async fn open(
        client: async_nats::Client,
        name: &str,
        node: &str,
        lease: Duration,
    ) -> Result<Leases, ClusterError> {
        let context = jetstream::new(client);
        // The bucket's stream, as `create_key_value` would make it. (Not through it: it first
        // reads the account's info, whose 2.9 form async-nats 0.51 cannot parse: it wants
        // `reserved_memory`, which servers before 2.10 do not send.)
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("KV_{name}"),
                description: Some("WaOS workspace leases (value: the owning node)".to_owned()),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age: lease,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(ClusterError::of)?;
        let store = context
            .get_key_value(name)
            .await
            .map_err(ClusterError::of)?;
        Ok(Leases {
            store,
            node: node.to_owned(),
        })
    }

    /// This node's id, the value of the keys it holds.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Takes the workspace's lease if nobody holds it; `None` when someone does.
    pub async fn acquire(&self, workspace_id: WorkspaceId) -> Result<Option<Lease>, ClusterError> {
        let value = Bytes::from(self.node.clone());
        match self.store.create(key(workspace_id), value).await {
            Ok(epoch) => Ok(Some(Lease {
                workspace_id,
                epoch,
            })),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(ClusterError::of(error)),
        }
    }

    /// Renews a lease: the new one (a higher epoch), or `None` once it is lost (someone else
    /// wrote the key since, or it lapsed and was taken).
    pub async fn renew(&self, lease: Lease) -> Result<Option<Lease>, ClusterError> {
        let value = Bytes::from(self.node.clone());
        match self
            .store
            .update(key(lease.workspace_id), value, lease.epoch)
            .await
        {
            Ok(epoch) => Ok(Some(Lease { epoch, ..lease })),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(ClusterError::of(error)),
        }
    }

    /// Hands a lease back at once (another node may take it without waiting for it to lapse);
    /// a lease already lost is left alone.
    pub async fn release(&self, lease: Lease) -> Result<(), ClusterError> {
        match self
            .store
            .delete_expect_revision(key(lease.workspace_id), Some(lease.epoch))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(error) => Err(ClusterError::of(error)),
        }
    }

    /// Says this node is alive for one more lease (its heartbeat key lapses like a lease).
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        self.store
            .put(node_key(&self.node), Bytes::from(self.node.clone()))
            .await
            .map(|_| ())
            .map_err(ClusterError::of)
    }

    /// Takes this node's heartbeat back (it stops in order).
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.store
            .delete(node_key(&self.node))
            .await
            .map_err(ClusterError::of)
    }

    /// The nodes alive now (a heartbeat within the last lease), by id.
    pub async fn nodes(&self) -> Result<Vec<String>, ClusterError> {
        let mut nodes: Vec<String> = self
            .live("node.")
            .await?
            .into_iter()
            .map(|(_, entry)| String::from_utf8_lossy(&entry.value).into_owned())
            .collect();
        nodes.sort();
        Ok(nodes)
    }

    /// Every workspace held now, with its node and epoch.
    pub async fn holders(&self) -> Result<Vec<Holder>, ClusterError> {
        let mut holders: Vec<Holder> = self
            .live("ws.")
            .await?
            .into_iter()
            .filter_map(|(key, entry)| {
                Some(Holder {
                    workspace_id: WorkspaceId::parse(key.strip_prefix("ws.")?)?,
                    node: String::from_utf8_lossy(&entry.value).into_owned(),
                    epoch: entry.revision,
                    written_at: chrono::DateTime::from_timestamp_nanos(
                        i64::try_from(entry.created.unix_timestamp_nanos()).ok()?,
                    ),
                })
            })
            .collect();
        holders.sort_by_key(|holder| holder.workspace_id);
        Ok(holders)
    }

    /// The live entries whose keys start with `prefix`, with their keys. (Listed from the
    /// stream's subjects, then read one by one: the bucket's `keys()` waits for an idle
    /// heartbeat, 5 s, whenever an entry is renewed while it lists.)
    async fn live(&self, prefix: &str) -> Result<Vec<(String, kv::Entry)>, ClusterError> {
        let subjects: Vec<(String, usize)> = self
            .store
            .stream
            .info_with_subjects(format!("{}{prefix}>", self.store.prefix))
            .await
            .map_err(ClusterError::of)?
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(ClusterError::of)?;
        let mut live = Vec::new();
        for (subject, _) in subjects {
            let Some(key) = subject.strip_prefix(self.store.prefix.as_str()) else {
                continue;
            };
            if let Some(entry) = self.store.entry(key).await.map_err(ClusterError::of)?
                && entry.operation == kv::Operation::Put
            {
                live.push((key.to_owned(), entry));
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    //! Against the real NATS (127.0.0.1:4222, `WAOS_TEST_NATS_URL` overrides it), each test on
    //! a bucket of its own, deleted at the end.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn nats_url() -> String {
        std::env::var("WAOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
    }

    /// A test's own bucket, deleted when dropped (also when the test fails).
    struct Bucket(String);

    impl Drop for Bucket {
        fn drop(&mut self) {
            let name = self.0.clone();
            // Drop cannot await: delete from a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(client) = async_nats::connect(nats_url()).await {
                        let _ = jetstream::new(client).delete_key_value(&name).await;
                    }
                });
            })
            .join();
        }
    }

    /// Two nodes on a fresh bucket whose leases last `lease`.
    async fn two_nodes(lease: Duration) -> (Leases, Leases, Bucket) {
        let bucket = format!("waos_test_leases_{}", uuid::Uuid::new_v4().simple());
        let connect = || async {
            async_nats::connect(nats_url()).await.expect(
                "NATS with JetStream must run at WAOS_TEST_NATS_URL (default 127.0.0.1:4222)",
            )
        };
        let a = Leases::open(connect().await, &bucket, "node-a", lease)
            .await
            .unwrap();
        let b = Leases::open(connect().await, &bucket, "node-b", lease)
            .await
            .unwrap();
        (a, b, Bucket(bucket))
    }

    #[tokio::test]
    async fn one_node_holds_a_workspace_and_its_epoch_only_grows() {
        let (a, b, _bucket) = two_nodes(Duration::from_secs(30)).await;
        let workspace = WorkspaceId::new();
        let first = a.acquire(workspace).await.unwrap().expect("a free lease");
        assert_eq!(b.acquire(workspace).await.unwrap(), None, "held by a");
        let renewed = a.renew(first).await.unwrap().expect("still a's");
        assert!(renewed.epoch > first.epoch);
        // A node that paused and kept the old lease cannot renew it: it is no longer the owner.
        assert_eq!(a.renew(first).await.unwrap(), None);
        assert_eq!(b.renew(first).await.unwrap(), None);
        let holders = b.holders().await.unwrap();
        let renewed_at = holders.first().map(|holder| holder.written_at).unwrap();
        assert_eq!(
            holders,
            vec![Holder {
                workspace_id: workspace,
                node: "node-a".into(),
                epoch: renewed.epoch,
                written_at: renewed_at,
            }]
        );
        // Written a moment ago (by the server's clock, which is this machine's here).
        let age = chrono::Utc::now() - renewed_at;
        assert!(
            age < chrono::Duration::seconds(5) && age > -chrono::Duration::seconds(5),
            "{age}"
        );
        // Another workspace is free for b.
        let other = WorkspaceId::new();
        assert!(b.acquire(other).await.unwrap().is_some());
        assert_eq!(b.holders().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_lease_nobody_renews_lapses_and_the_next_owner_fences_the_last() {
        let (a, b, _bucket) = two_nodes(Duration::from_millis(400)).await;
        let workspace = WorkspaceId::new();
        let held = a.acquire(workspace).await.unwrap().unwrap();
        // Renewed within the lease, it stays a's.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let held = a.renew(held).await.unwrap().expect("renewed in time");
        assert_eq!(b.acquire(workspace).await.unwrap(), None);
        // Not renewed, it lapses and b takes it, at a higher epoch.
        let mut taken = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            taken = b.acquire(workspace).await.unwrap();
            if taken.is_some() {
                break;
            }
        }
        let taken = taken.expect("the lapsed lease is free again");
        assert!(taken.epoch > held.epoch, "{taken:?} after {held:?}");
        // a, back from its pause, finds it lost.
        assert_eq!(a.renew(held).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once() {
        let (a, b, _bucket) = two_nodes(Duration::from_secs(30)).await;
        let workspace = WorkspaceId::new();
        let held = a.acquire(workspace).await.unwrap().unwrap();
        a.release(held).await.unwrap();
        assert!(a.holders().await.unwrap().is_empty());
        let taken = b
            .acquire(workspace)
            .await
            .unwrap()
            .expect("free after release");
        assert!(taken.epoch > held.epoch);
        // Releasing a lease already lost changes nothing.
        a.release(held).await.unwrap();
        assert_eq!(b.holders().await.unwrap()[0].node, "node-b");
    }
}
