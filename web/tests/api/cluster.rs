//! Several nodes (#16), the parts built so far: a routing-state write carries its node's lease
//! epoch, and one carrying an older epoch than the conversation's is refused (a node paused
//! past its lease changes nothing), on both backends, with leases from the real NATS.

use std::time::Duration;

use sea_orm::EntityTrait;
use waos_engine::automation::marks::Marks;
use waos_engine::cluster::Leases;
use waos_engine::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use waos_engine::routing::store::{RoutingState, SaveError, save_state};
use waos_engine::store::entity::conversation::{self, ConversationStatus};
use waos_engine::time::clocks::Clocks;
use waos_web::testing::{Backend, PHONE_NUMBER_ID_1, eventually, nats_url, spawn_app};

use crate::concurrency::text_body_at;

/// A lease bucket of the test's own, deleted when dropped (also when the test fails).
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
                    let _ = async_nats::jetstream::new(client)
                        .delete_key_value(&name)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Two nodes' handles on a lease bucket of the test's own.
async fn two_nodes() -> (Leases, Leases, Bucket) {
    let bucket = format!("waos_test_fence_{}", uuid::Uuid::new_v4().simple());
    let connect = || async { async_nats::connect(nats_url()).await.unwrap() };
    let lease = Duration::from_secs(30);
    let a = Leases::open(connect().await, &bucket, "node-a", lease)
        .await
        .unwrap();
    let b = Leases::open(connect().await, &bucket, "node-b", lease)
        .await
        .unwrap();
    (a, b, Bucket(bucket))
}

async fn a_write_under_an_older_lease_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Fenced").await;
    let team = app.create_team(&workspace, "Support").await;
    app.create_channel(&workspace, &team, PHONE_NUMBER_ID_1)
        .await;
    let now = chrono::Utc::now().timestamp();
    let response = app
        .post_webhook(&text_body_at("wamid.fence-1", 1, "hello", now))
        .await;
    assert_eq!(response.status(), 200);
    // Queued by this node's engine (one node: no epoch) and left waiting: nobody is online.
    eventually(Duration::from_secs(5), || async {
        app.count("conversations", "status = 'waiting'").await == 1
    })
    .await;
    let id: ConversationId = app
        .scalar("conversations", "id", "1 = 1")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let (workspace_id, team_id): (WorkspaceId, TeamId) =
        (workspace.parse().unwrap(), team.parse().unwrap());

    let (node_a, node_b, _bucket) = two_nodes().await;
    let (clocks, marks) = (Clocks::default(), Marks::default());
    let state = |status, assigned, epoch| RoutingState {
        status,
        assigned,
        team_id,
        clocks: &clocks,
        marks: &marks,
        epoch,
    };
    let first = node_a.acquire(workspace_id).await.unwrap().unwrap();
    save_state(
        &app.db,
        id,
        &state(ConversationStatus::Waiting, None, Some(first.epoch)),
        &[],
    )
    .await
    .unwrap();
    // The lease moves to node b (a released it; a lapse is the same to the database).
    node_a.release(first).await.unwrap();
    let second = node_b.acquire(workspace_id).await.unwrap().unwrap();
    assert!(second.epoch > first.epoch);
    let agent = AgentId::new();
    save_state(
        &app.db,
        id,
        &state(
            ConversationStatus::Assigned,
            Some(agent),
            Some(second.epoch),
        ),
        &[],
    )
    .await
    .unwrap();
    // Node a, back from a pause, still believes it owns the workspace: refused, nothing written.
    let stale = save_state(
        &app.db,
        id,
        &state(ConversationStatus::Waiting, None, Some(first.epoch)),
        &[],
    )
    .await;
    assert!(
        matches!(stale, Err(SaveError::Fenced(epoch)) if epoch == first.epoch),
        "{stale:?}"
    );
    let stored = conversation::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.assigned_agent_id, stored.owner_epoch),
        (
            ConversationStatus::Assigned,
            Some(agent),
            i64::try_from(second.epoch).unwrap()
        )
    );
    // The owner's renewed lease writes on.
    let renewed = node_b.renew(second).await.unwrap().unwrap();
    save_state(
        &app.db,
        id,
        &state(ConversationStatus::Resolved, None, Some(renewed.epoch)),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        app.scalar("conversations", "status", "1 = 1").await,
        Some("resolved".to_owned())
    );
}

on_both_backends!(a_write_under_an_older_lease_is_refused);
