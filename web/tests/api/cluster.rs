//! Several nodes (#16), the parts built so far, with leases from the real NATS: a
//! routing-state write carries its node's lease epoch, and one carrying an older epoch than the
//! conversation's is refused (a node paused past its lease changes nothing); nodes share the
//! workspaces fairly, each held by one node, and one that leaves hands its share over.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::EntityTrait;
use serde_json::Value;
use waos_engine::automation::marks::Marks;
use waos_engine::cluster::{Change, ClusterConfig, Epochs, Leases, Node, Ownership};
use waos_engine::ids::{AgentId, ConversationId, TeamId, WorkspaceId};
use waos_engine::routing::store::{
    RoutingState, SaveError, add_tags, claim_workspace, save_applied_clocks, save_priority,
    save_state,
};
use waos_engine::store::entity::conversation::{self, ConversationStatus};
use waos_engine::time::clocks::Clocks;
use waos_web::testing::{
    ADMIN_TOKEN, Backend, PHONE_NUMBER_ID_1, TestApp, eventually, nats_url, spawn_app,
    spawn_app_with,
};

use crate::concurrency::text_body_at;

/// A lease bucket of the test's own, deleted when dropped (also when the test fails).
pub(crate) struct Bucket(pub String);

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
    // So are its automations' writes: tags, priority, a policy's clocks.
    let before = conversation::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let tags = add_tags(&app.db, id, &["stale".to_owned()], Some(first.epoch)).await;
    assert!(tags.is_err_and(|why| why.starts_with("fenced")));
    let priority = save_priority(&app.db, id, 9, Some(first.epoch)).await;
    assert!(
        matches!(priority, Err(SaveError::Fenced(_))),
        "{priority:?}"
    );
    let clocks_then = Clocks {
        cycle_started_at: Some(chrono::Utc::now() + chrono::Duration::days(1)),
        ..Clocks::default()
    };
    save_applied_clocks(&app.db, id, &clocks_then, Some(first.epoch))
        .await
        .unwrap();
    let stored = conversation::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.tags.as_str(),
            stored.priority,
            stored.cycle_started_at
        ),
        (
            before.tags.as_str(),
            before.priority,
            before.cycle_started_at
        ),
        "the stale node's automation wrote nothing"
    );
    // The owner's own automation writes go through.
    let tags = add_tags(&app.db, id, &["vip".to_owned()], Some(second.epoch)).await;
    assert_eq!(tags.unwrap().1, ["vip"]);
    assert_eq!(
        (stored.status, stored.assigned_agent_id, stored.owner_epoch),
        (
            ConversationStatus::Assigned,
            Some(agent),
            i64::try_from(second.epoch).unwrap()
        )
    );
    // b takes the workspace over (its recovery's first step). A customer then opens a
    // conversation that b has not written yet: a's write to it is refused all the same (the
    // workspace's epoch), and so are its automations' (no endless retry), while b's goes through.
    claim_workspace(&app.db, workspace_id, second.epoch)
        .await
        .unwrap();
    let response = app
        .post_webhook(&text_body_at("wamid.fence-2", 2, "me too", now))
        .await;
    assert_eq!(response.status(), 200);
    let late: ConversationId = app
        .scalar("conversations", "id", &format!("id <> '{id}'"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        app.count(
            "conversations",
            &format!("id = '{late}' AND status = 'waiting'"),
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        app.count(
            "conversations",
            &format!("id = '{late}' AND owner_epoch = 0")
        )
        .await,
        1,
        "not written under any lease yet"
    );
    let stale = save_state(
        &app.db,
        late,
        &state(ConversationStatus::Assigned, Some(agent), Some(first.epoch)),
        &[],
    )
    .await;
    assert!(
        matches!(stale, Err(SaveError::Fenced(epoch)) if epoch == first.epoch),
        "{stale:?}"
    );
    let tags = add_tags(&app.db, late, &["stale".to_owned()], Some(first.epoch)).await;
    assert!(tags.is_err_and(|why| why.starts_with("fenced")));
    let priority = save_priority(&app.db, late, 9, Some(first.epoch)).await;
    assert!(
        matches!(priority, Err(SaveError::Fenced(_))),
        "{priority:?}"
    );
    assert_eq!(
        app.count(
            "conversations",
            &format!("id = '{late}' AND status = 'waiting' AND priority = 0 AND tags = '[]'")
        )
        .await,
        1,
        "the stale node wrote nothing"
    );
    save_state(
        &app.db,
        late,
        &state(ConversationStatus::Offered, None, Some(second.epoch)),
        &[],
    )
    .await
    .unwrap();
    // A's takeover, come late (it lost the lease meanwhile), changes nothing: not b's offer,
    // and it has nothing to route.
    let late_claim = claim_workspace(&app.db, workspace_id, first.epoch)
        .await
        .unwrap();
    assert!(late_claim.is_empty(), "{late_claim:?}");
    assert_eq!(
        app.count(
            "conversations",
            &format!("id = '{late}' AND status = 'offered'")
        )
        .await,
        1
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
        app.scalar("conversations", "status", &format!("id = '{id}'"))
            .await,
        Some("resolved".to_owned())
    );
}

/// Who owns what, by node, as `GET /api/v1/cluster` says: (node, [(workspace, epoch)]).
pub(crate) async fn owners(app: &TestApp) -> Vec<(String, Vec<(String, u64)>)> {
    let view = app.get_ok("/api/v1/cluster", ADMIN_TOKEN).await;
    assert_eq!(view["clustered"], true, "{view}");
    let mut owners: Vec<(String, Vec<(String, u64)>)> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let held = node["workspaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        w["workspace_id"].as_str().unwrap().to_owned(),
                        w["epoch"].as_u64().unwrap(),
                    )
                })
                .collect();
            (node["node"].as_str().unwrap().to_owned(), held)
        })
        .collect();
    owners.sort();
    owners
}

/// How many workspaces each node holds, by node.
pub(crate) fn shares(owners: &[(String, Vec<(String, u64)>)]) -> Vec<(&str, usize)> {
    owners
        .iter()
        .map(|(node, held)| (node.as_str(), held.len()))
        .collect()
}

/// Node a (the app) holds every workspace while alone; node b joins on the same database and
/// the three workspaces split two and one, each held by exactly one node; a routing write
/// carries the owner's epoch; b leaves in order and a takes its workspace back at once.
async fn nodes_share_the_workspaces_and_hand_them_over(backend: Backend) {
    let prefix = format!("waos_test_own_{}", uuid::Uuid::new_v4().simple());
    let _bucket = Bucket(format!("{prefix}_leases"));
    let lease = Duration::from_millis(900);
    let app = spawn_app_with(backend, |settings, _| {
        settings.cluster.nats_url = nats_url();
        settings.cluster.prefix = prefix.clone();
        settings.cluster.node_id = "node-a".into();
        settings.cluster.lease_ms = 900;
    })
    .await;
    let ready = app.get_ok("/readyz", "").await;
    assert_eq!(ready["nats"], true, "{ready}");
    let mut workspaces = Vec::new();
    for name in ["North", "South", "East"] {
        workspaces.push(app.create_workspace(name).await);
    }
    workspaces.sort();
    eventually(Duration::from_secs(10), || async {
        shares(&owners(&app).await) == [("node-a", 3)]
    })
    .await;

    // A conversation's state write carries the lease's epoch.
    let team = app.create_team(&workspaces[0], "Support").await;
    app.create_channel(&workspaces[0], &team, PHONE_NUMBER_ID_1)
        .await;
    let now = chrono::Utc::now().timestamp();
    let response = app
        .post_webhook(&text_body_at("wamid.owned-1", 1, "hello", now))
        .await;
    assert_eq!(response.status(), 200);
    let (_, token) = app
        .create_agent(&workspaces[0], "ann@owned.example", "agent", &[&team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    socket.expect("offer").await;
    eventually(Duration::from_secs(5), || async {
        app.count("conversations", "status = 'offered' AND owner_epoch > 0")
            .await
            == 1
    })
    .await;

    let b = Node::join(
        ClusterConfig {
            nats_url: nats_url(),
            lease,
            node: "node-b".into(),
            prefix: prefix.clone(),
        },
        app.db.clone(),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(15), || async {
        shares(&owners(&app).await) == [("node-a", 2), ("node-b", 1)]
    })
    .await;
    let split = owners(&app).await;
    let mut held: Vec<&String> = split
        .iter()
        .flat_map(|(_, held)| held.iter().map(|(w, _)| w))
        .collect();
    held.sort();
    assert_eq!(
        held,
        workspaces.iter().collect::<Vec<_>>(),
        "each exactly once"
    );
    assert!(
        split
            .iter()
            .all(|(_, held)| held.iter().all(|(_, e)| *e > 0))
    );

    // b stops in order: its workspace is free at once, and a (alone again) takes it.
    let (_, taken_by_b) = split
        .iter()
        .find(|(node, _)| node == "node-b")
        .unwrap()
        .clone();
    b.leave().await;
    eventually(Duration::from_secs(5), || async {
        shares(&owners(&app).await) == [("node-a", 3)]
    })
    .await;
    let back = owners(&app).await;
    let (workspace, old_epoch) = &taken_by_b[0];
    let (_, new_epoch) = back[0].1.iter().find(|(w, _)| w == workspace).unwrap();
    assert!(new_epoch > old_epoch, "a new lease, a higher epoch");
}

/// A lease the bucket gives a node that does not know it holds it (its round was cut short
/// after the bucket took it): the node's next round holds it, renewed under a newer epoch,
/// rather than leaving the workspace routed by nobody until the lease lapses.
async fn a_lease_taken_by_a_round_cut_short_is_held_at_the_next(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace_id = WorkspaceId::parse(&app.create_workspace("Cut short").await).unwrap();
    let bucket = Bucket(format!("waos_test_cut_{}", uuid::Uuid::new_v4().simple()));
    // Long enough that a lapse cannot be what frees it.
    let lease = Duration::from_secs(30);
    let client = async_nats::connect(nats_url()).await.unwrap();
    let leases = Leases::open(client, &bucket.0, "node-a", lease)
        .await
        .unwrap();
    let cut = leases.acquire(workspace_id).await.unwrap().unwrap();

    let epochs = Arc::new(Epochs::default());
    let (changes, mut told) = tokio::sync::mpsc::unbounded_channel();
    let mut ownership =
        Ownership::new(leases.clone(), lease, app.db.clone(), epochs.clone()).with_changes(changes);
    let round = ownership.round().await.unwrap();
    let [held] = round.taken[..] else {
        panic!("one lease held, not {:?}", round.taken);
    };
    assert_eq!(held.workspace_id, workspace_id);
    assert!(held.epoch > cut.epoch, "renewed: {held:?} after {cut:?}");
    assert_eq!(epochs.get(workspace_id), Some(held.epoch));
    let mut taken = Vec::new();
    while let Ok(change) = told.try_recv() {
        if let Change::Taken(lease) = change {
            taken.push(lease);
        }
    }
    assert_eq!(taken, [held], "routing is told to claim it");
    let holders = leases.holders().await.unwrap();
    assert_eq!(
        holders
            .iter()
            .map(|holder| (holder.node.as_str(), holder.epoch))
            .collect::<Vec<_>>(),
        [("node-a", held.epoch)]
    );
    // Held, it is renewed as any other, and taken no second time.
    let again = ownership.round().await.unwrap();
    assert!(again.taken.is_empty(), "{again:?}");
    assert!(epochs.get(workspace_id) > Some(held.epoch));
}

/// One node: the cluster view is that node, owning every workspace, no NATS involved.
async fn one_node_owns_every_workspace(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Solo").await;
    let view = app.get_ok("/api/v1/cluster", ADMIN_TOKEN).await;
    assert_eq!(view["clustered"], false);
    assert_eq!(view["nodes"][0]["this"], true);
    assert_eq!(view["nodes"][0]["workspaces"][0]["workspace_id"], workspace);
    assert_eq!(app.get_ok("/readyz", "").await["nats"], Value::Null);
}

on_both_backends!(
    a_write_under_an_older_lease_is_refused,
    nodes_share_the_workspaces_and_hand_them_over,
    one_node_owns_every_workspace,
    a_lease_taken_by_a_round_cut_short_is_held_at_the_next,
);
