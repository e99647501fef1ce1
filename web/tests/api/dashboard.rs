//! The supervisor socket: a `stats` snapshot, then coalesced deltas, and manual assignment.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use waos_web::testing::{Backend, connect_socket_at, spawn_app};

use crate::concurrency::text_body;

fn team_of<'a>(stats: &'a Value, team: &str) -> &'a Value {
    stats["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team_id"] == team)
        .unwrap()
}

async fn the_dashboard_follows_the_queue_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Watched").await;
    let team = app
        .create_team_with(&workspace, json!({"name": "Support", "auto_accept": true}))
        .await;
    app.create_channel(&workspace, &team, "115566778899001")
        .await;
    let (_, supervisor_token) = app
        .create_agent(&workspace, "sup@watched.example", "supervisor", &[&team])
        .await;
    let (agent, agent_token) = app
        .create_agent_with(&workspace, "one@watched.example", "agent", &[&team], 1)
        .await;

    // Agents may not watch the queues.
    assert!(
        tokio_tungstenite::connect_async({
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("{}/ws/supervisor", app.address.replacen("http", "ws", 1))
                .into_client_request()
                .unwrap();
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {agent_token}").parse().unwrap(),
            );
            request
        })
        .await
        .is_err()
    );

    let mut dashboard = connect_socket_at(&app.address, "/ws/supervisor", &supervisor_token).await;
    let snapshot = dashboard.expect("stats").await;
    assert_eq!(team_of(&snapshot, &team)["waiting"], 0);
    assert_eq!(team_of(&snapshot, &team)["agents_online"], 0);
    let listed = snapshot["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == agent)
        .unwrap()
        .clone();
    assert_eq!(
        (listed["presence"].clone(), listed["capacity"].clone()),
        (json!("offline"), json!(1))
    );

    let (mut socket, _) = app.connect_agent(&agent_token).await;
    let delta = dashboard.expect("stats_delta").await;
    assert_eq!(team_of(&delta, &team)["agents_online"], 1, "{delta}");
    assert_eq!(delta["agents"][0]["presence"], "online");

    let first = {
        app.post_webhook(&text_body("wamid.watch-1", 1, "a")).await;
        socket.expect("assigned").await["conversation_id"].clone()
    };
    app.post_webhook(&text_body("wamid.watch-2", 2, "b")).await;
    let waiting = loop {
        let delta = dashboard.expect("stats_delta").await;
        if let Some(added) = delta["waiting_added"].as_array().and_then(|w| w.first()) {
            break added["conversation_id"].as_str().unwrap().to_owned();
        }
    };
    // The agent is full: assigning by hand is refused, and says why.
    dashboard
        .send(json!({"type": "assign", "conversation_id": waiting, "agent_id": agent}))
        .await;
    assert_eq!(dashboard.expect("error").await["code"], "over_capacity");
    socket
        .send(json!({"type": "resolve", "conversation_id": first}))
        .await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], waiting);
    loop {
        let delta = dashboard.expect("stats_delta").await;
        if delta["waiting_removed"]
            .as_array()
            .is_some_and(|r| r.iter().any(|id| id == &json!(waiting)))
        {
            break;
        }
    }

    // A burst is coalesced: far fewer frames than changes.
    join_all((10..30).map(|i| {
        let app = &app;
        async move {
            app.post_webhook(&text_body(&format!("wamid.burst-{i}"), i, "x"))
                .await
        }
    }))
    .await;
    let mut frames = 0;
    while dashboard
        .expect_within("stats_delta", Duration::from_millis(300))
        .await
        .is_some()
    {
        frames += 1;
    }
    assert!(
        (1..20).contains(&frames),
        "{frames} frames for 20 new conversations"
    );
}

/// The latest `stats` or `stats_delta` team entry of `team` and waiting entries, until `done`
/// holds of them (deltas carry only what changed).
async fn watch_until(
    dashboard: &mut waos_web::testing::AgentSocket,
    team: &str,
    waiting: &mut std::collections::HashMap<String, Value>,
    done: impl Fn(&Value, &std::collections::HashMap<String, Value>) -> bool,
) -> Value {
    let mut last = Value::Null;
    loop {
        let frame = dashboard
            .next_frame(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no frame; last {last}, waiting {waiting:?}"));
        if let Some(entry) = frame["teams"]
            .as_array()
            .and_then(|teams| teams.iter().find(|t| t["team_id"] == team))
        {
            last = entry.clone();
        }
        for entry in frame["waiting"]
            .as_array()
            .into_iter()
            .chain(frame["waiting_added"].as_array())
            .flatten()
        {
            waiting.insert(
                entry["conversation_id"].as_str().unwrap().to_owned(),
                entry.clone(),
            );
        }
        for id in frame["waiting_removed"].as_array().into_iter().flatten() {
            waiting.remove(id.as_str().unwrap());
        }
        if !last.is_null() && done(&last, waiting) {
            return last;
        }
    }
}

/// Expected wait: nothing said without history (a full team and no conversation ended yet),
/// then, once enough have ended, the median and 90th percentile for the next arrival from how
/// long the agent held them; each waiting entry and offer carries its place in the queue.
async fn the_expected_wait_follows_the_service_rate(backend: Backend) {
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        settings.routing.expected_wait_min_samples = 3;
        // The test reads one socket at a time: the other must not be taken for gone (it does
        // not answer pings while unread).
        settings.routing.presence_ttl_ms = 60_000;
        settings.websocket.client_timeout_ms = 60_000;
    })
    .await;
    let workspace = app.create_workspace("Timed").await;
    let team = app.create_team(&workspace, "Support").await;
    app.create_channel(&workspace, &team, "115566778899001")
        .await;
    let (_, supervisor_token) = app
        .create_agent(&workspace, "sup@timed.example", "supervisor", &[&team])
        .await;
    let (_, agent_token) = app
        .create_agent_with(&workspace, "one@timed.example", "agent", &[&team], 1)
        .await;
    let mut dashboard = connect_socket_at(&app.address, "/ws/supervisor", &supervisor_token).await;
    let mut waiting = std::collections::HashMap::new();
    let (mut agent, _) = app.connect_agent(&agent_token).await;
    // Free: no wait, history or not.
    let free = watch_until(&mut dashboard, &team, &mut waiting, |t, _| {
        t["agents_online"] == 1
    })
    .await;
    assert_eq!(free["expected_wait_ms"], json!({"p50": 0, "p90": 0}));

    // Three conversations held a while each, one after the other.
    let mut held_ms = Vec::new();
    for customer in 1..=3 {
        app.post_webhook(&text_body(
            &format!("wamid.timed-{customer}"),
            customer,
            "hi",
        ))
        .await;
        let offer = agent.expect("offer").await;
        assert_eq!(offer["position"], 1, "{offer}");
        let started = std::time::Instant::now();
        agent
            .send(json!({"type": "accept", "conversation_id": offer["conversation_id"]}))
            .await;
        agent.expect("assigned").await;
        if customer == 1 {
            // Full, with no conversation ended yet: nothing to go on.
            let full = watch_until(&mut dashboard, &team, &mut waiting, |t, _| {
                t["agents_available"] == 0
            })
            .await;
            assert_eq!(full["expected_wait_ms"], Value::Null, "{full}");
        }
        // Held 150 ms, reading the socket meanwhile.
        agent.expect_none("none", Duration::from_millis(150)).await;
        agent
            .send(json!({"type": "resolve", "conversation_id": offer["conversation_id"]}))
            .await;
        agent.expect("unassigned").await;
        held_ms.push(started.elapsed().as_millis() as f64);
    }
    // The agent takes a fourth; two more wait, first and second in line.
    app.post_webhook(&text_body("wamid.timed-4", 4, "hi")).await;
    let offer = agent.expect("offer").await;
    agent
        .send(json!({"type": "accept", "conversation_id": offer["conversation_id"]}))
        .await;
    agent.expect("assigned").await;
    app.post_webhook(&text_body("wamid.timed-5", 5, "hi")).await;
    app.post_webhook(&text_body("wamid.timed-6", 6, "hi")).await;
    let busy = watch_until(&mut dashboard, &team, &mut waiting, |t, w| {
        t["waiting"] == 2 && w.len() == 2
    })
    .await;
    let mut places: Vec<i64> = waiting
        .values()
        .map(|w| w["position"].as_i64().unwrap())
        .collect();
    places.sort();
    assert_eq!(places, [1, 2]);
    // The next arrival is third in line behind a full agent: three slots to wait for, each
    // freeing at one per mean hold (Erlang(3): median 2.67 holds, 90th percentile 5.32).
    let mean = held_ms.iter().sum::<f64>() / held_ms.len() as f64;
    let wait = &busy["expected_wait_ms"];
    let (p50, p90) = (wait["p50"].as_f64().unwrap(), wait["p90"].as_f64().unwrap());
    // The server's holds start at the offer, a little before the test's clock: within 25%.
    assert!(
        (p50 / mean - 2.67).abs() < 2.67 * 0.25,
        "p50 {p50} ms, mean hold {mean} ms"
    );
    assert!(
        (p90 / mean - 5.32).abs() < 5.32 * 0.25,
        "p90 {p90} ms, mean hold {mean} ms"
    );
}

on_both_backends!(
    the_dashboard_follows_the_queue_live,
    the_expected_wait_follows_the_service_rate
);
