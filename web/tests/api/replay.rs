//! `waos replay` on a history made live: the recorded waits come back under the recorded policy,
//! more agents or slots shorten them, and nothing is written.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use waos_engine::ids::WorkspaceId;
use waos_engine::replay::{self, Options, simulate::Setup};
use waos_engine::routing::policy::PolicyKind;
use waos_web::testing::{Backend, eventually};

use crate::concurrency::text_body;

const WAOS: &str = env!("CARGO_BIN_EXE_waos");

/// Everything a replay could write to, counted.
async fn counts(app: &waos_web::testing::TestApp) -> Vec<i64> {
    let mut counts = app.snapshot().await;
    for table in ["audit_events", "conversation_facts", "rollups", "agents"] {
        counts.push(app.count(table, "").await);
    }
    counts
}

/// Agent one takes the first conversation; the second waits until agent two comes online
/// (about 400 ms); the third goes to agent one again. Replayed: the same waits, and none
/// worth the name with one agent or one slot more.
async fn a_recorded_range_replays_to_its_own_waits_and_more_staff_shortens_them(backend: Backend) {
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        // Sockets are read one at a time here: the idle one must not be taken for gone.
        settings.routing.presence_ttl_ms = 60_000;
        settings.websocket.client_timeout_ms = 60_000;
    })
    .await;
    let workspace = app.create_workspace("Replayed").await;
    let team = app.create_team(&workspace, "Support").await;
    app.create_channel(&workspace, &team, "115566778899001")
        .await;
    let (one_id, one_token) = app
        .create_agent_with(&workspace, "one@replay.example", "agent", &[&team], 1)
        .await;
    let (two_id, two_token) = app
        .create_agent_with(&workspace, "two@replay.example", "agent", &[&team], 1)
        .await;
    let from = Utc::now() - chrono::Duration::seconds(1);

    let (mut one, _) = app.connect_agent(&one_token).await;
    let take = async |agent: &mut waos_web::testing::AgentSocket| {
        let offer = agent.expect("offer").await;
        agent
            .send(json!({"type": "accept", "conversation_id": offer["conversation_id"]}))
            .await;
        agent.expect("assigned").await;
        offer["conversation_id"].clone()
    };
    app.post_webhook(&text_body("wamid.replay-1", 1, "hi"))
        .await;
    let first = take(&mut one).await;
    app.post_webhook(&text_body("wamid.replay-2", 2, "hello"))
        .await;
    one.expect_none("offer", Duration::from_millis(400)).await;
    let (mut two, _) = app.connect_agent(&two_token).await;
    let second = take(&mut two).await;
    for (agent, conversation) in [(&mut one, &first), (&mut two, &second)] {
        agent
            .send(json!({"type": "resolve", "conversation_id": conversation}))
            .await;
        agent.expect("unassigned").await;
    }
    app.post_webhook(&text_body("wamid.replay-3", 3, "again"))
        .await;
    let third = take(&mut one).await;
    one.send(json!({"type": "resolve", "conversation_id": third}))
        .await;
    one.expect("unassigned").await;
    eventually(Duration::from_secs(10), || async {
        app.count("audit_events", "kind = 'resolved'").await == 3
    })
    .await;
    let to = Utc::now() + chrono::Duration::seconds(1);
    let before = counts(&app).await;

    let options = |setup: Setup| Options {
        workspace_id: WorkspaceId::parse(&workspace).unwrap(),
        from,
        to,
        setup,
    };
    let setup = Setup {
        policy: PolicyKind::LeastLoaded,
        sticky: false,
        capacity_delta: 0,
        agents_delta: 0,
        decline_cooldown: Duration::from_secs(300),
        window_warning: chrono::Duration::hours(2),
    };
    let same = replay::replay(&app.db, &options(setup)).await.unwrap();
    assert_eq!(same.cycles, 3);
    let (recorded, replayed) = (&same.recorded, &same.replayed);
    assert_eq!(recorded.queue_wait.count, 3, "{:?}", recorded);
    assert_eq!(recorded.never_assigned, 0);
    // The 90th percentile of three is the longest: the second conversation's.
    let longest = recorded.queue_wait.p90_ms.unwrap();
    assert!(longest >= 400.0, "{recorded:?}");
    let replayed_longest = replayed.queue_wait.p90_ms.unwrap();
    assert!(
        (replayed_longest - longest).abs() <= longest * 0.1,
        "recorded {longest} ms, replayed {replayed_longest} ms"
    );
    let (p50, replayed_p50) = (
        recorded.queue_wait.p50_ms.unwrap(),
        replayed.queue_wait.p50_ms.unwrap(),
    );
    assert!(
        (replayed_p50 - p50).abs() <= 50.0,
        "{p50} against {replayed_p50}"
    );
    let assigned = |figures: &replay::Figures| {
        let mut by_agent: Vec<(String, u32)> = figures
            .per_agent_load
            .agents
            .iter()
            .map(|a| (a.agent_id.to_string(), a.assigned))
            .collect();
        by_agent.sort();
        by_agent
    };
    let mut expected = vec![(one_id.clone(), 2), (two_id.clone(), 1)];
    expected.sort();
    assert_eq!(assigned(recorded), expected);
    assert_eq!(assigned(replayed), expected);

    for staffed in [
        Setup {
            agents_delta: 1,
            ..setup
        },
        Setup {
            capacity_delta: 1,
            ..setup
        },
    ] {
        let outcome = replay::replay(&app.db, &options(staffed)).await.unwrap();
        let waited = outcome.replayed.queue_wait.p90_ms.unwrap();
        assert!(
            waited < longest / 2.0,
            "{staffed:?}: {waited} ms against {longest} ms recorded"
        );
        assert_eq!(outcome.recorded.queue_wait, same.recorded.queue_wait);
    }
    let nobody = replay::replay(
        &app.db,
        &options(Setup {
            agents_delta: -2,
            ..setup
        }),
    )
    .await
    .unwrap();
    assert_eq!(nobody.replayed.never_assigned, 3);

    // The command: the same figures as JSON, and the report with its plots.
    let folder = std::env::temp_dir().join(format!("waos-replay-{}", uuid::Uuid::new_v4()));
    let output = Command::new(WAOS)
        .args(["replay", "--workspace", &workspace])
        .args(["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()])
        .args([
            "--policy",
            "round_robin",
            "--agents-delta",
            "-1",
            "--report",
        ])
        .arg(&folder)
        .env("WAOS__DATABASE__URL", &app.database.url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["setup"]["policy"], "round_robin");
    assert_eq!(printed["setup"]["agents_delta"], -1);
    assert_eq!(printed["cycles"], 3);
    let printed_longest = printed["recorded"]["queue_wait"]["p90_ms"]
        .as_f64()
        .unwrap();
    assert!(
        (printed_longest - longest).abs() < 1e-6,
        "{printed_longest} against {longest}"
    );
    // One agent fewer: the waits can only grow.
    assert!(
        printed["replayed"]["queue_wait"]["p90_ms"]
            .as_f64()
            .unwrap()
            >= longest * 0.9
    );
    let page = std::fs::read_to_string(folder.join("replay.html")).unwrap();
    assert_eq!(
        page.matches("<polyline").count(),
        4,
        "two plots of two lines"
    );
    assert!(page.contains("round_robin"));
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("replay.json")).unwrap())
            .unwrap();
    assert_eq!(written, printed);
    std::fs::remove_dir_all(&folder).unwrap();

    let refused = Command::new(WAOS)
        .args(["replay", "--workspace", &workspace])
        .args(["--from", &to.to_rfc3339(), "--to", &from.to_rfc3339()])
        .env("WAOS__DATABASE__URL", &app.database.url)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("after `--from`"));

    assert_eq!(counts(&app).await, before, "a replay writes nothing");
}

on_both_backends!(a_recorded_range_replays_to_its_own_waits_and_more_staff_shortens_them);
