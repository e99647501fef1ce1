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

on_both_backends!(the_dashboard_follows_the_queue_live);
