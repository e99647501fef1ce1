//! The routing life cycle over real websockets and the real server: offers, accept, decline,
//! timeout, auto-accept, capacity, disconnect grace, transfer, resolve and reopen, restart.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{ADMIN_TOKEN, Backend, TestApp, eventually, spawn_app};

use crate::concurrency::text_body;

/// A workspace with one team (timeout 10 units = 200 ms in tests) and its channel.
pub(crate) struct Floor {
    pub(crate) workspace: String,
    pub(crate) team: String,
}

pub(crate) async fn floor(app: &TestApp, team_settings: Value) -> Floor {
    let workspace = app.create_workspace("Routing Co").await;
    let mut body = json!({"name": "Support", "offer_timeout_secs": 10});
    body.as_object_mut()
        .unwrap()
        .extend(team_settings.as_object().unwrap().clone());
    let team = app.create_team_with(&workspace, body).await;
    app.create_channel(&workspace, &team, "115566778899001")
        .await;
    Floor { workspace, team }
}

pub(crate) async fn customer_writes(
    app: &TestApp,
    customer: usize,
    wamid: &str,
    text: &str,
) -> String {
    posted(app, &text_body(wamid, customer, text), wamid).await
}

/// The same, written now (inside the 24-hour window).
pub(crate) async fn customer_writes_now(
    app: &TestApp,
    customer: usize,
    wamid: &str,
    text: &str,
) -> String {
    let body =
        crate::concurrency::text_body_at(wamid, customer, text, chrono::Utc::now().timestamp());
    posted(app, &body, wamid).await
}

/// Posts a signed webhook `body` carrying message `wamid`; answers its conversation's id.
pub(crate) async fn posted(app: &TestApp, body: &[u8], wamid: &str) -> String {
    assert_eq!(app.post_webhook(body).await.status(), 200);
    app.scalar("messages", "conversation_id", &format!("wamid = '{wamid}'"))
        .await
        .unwrap()
}

pub(crate) async fn conversation(app: &TestApp, id: &str) -> Value {
    app.get_ok(&format!("/api/v1/conversations/{id}"), ADMIN_TOKEN)
        .await
}

/// The audit once an event of `kind` has been written (the audit writer batches).
async fn audit_after(app: &TestApp, id: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{kind}:");
    eventually(Duration::from_secs(5), || async {
        audit_texts(app, id)
            .await
            .iter()
            .any(|t| t.starts_with(&prefix))
    })
    .await;
    audit_texts(app, id).await
}

async fn audit_texts(app: &TestApp, id: &str) -> Vec<String> {
    app.get_ok(&format!("/api/v1/conversations/{id}/audit"), ADMIN_TOKEN)
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            format!(
                "{}: {}",
                event["kind"].as_str().unwrap(),
                event["text"].as_str().unwrap()
            )
        })
        .collect()
}

async fn offer_accept_and_resolve(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({"offer_timeout_secs": 500})).await;
    let (bea, token) = app
        .create_agent(&f.workspace, "bea@routing.example", "agent", &[&f.team])
        .await;
    let (mut socket, hello) = app.connect_agent(&token).await;
    assert_eq!(hello["agent_id"], bea);
    assert_eq!(hello["presence"], "online");

    let id = customer_writes(&app, 1, "wamid.route-1", "my order is late").await;
    let offer = socket.expect("offer").await;
    assert_eq!(offer["conversation_id"], id);
    // The decision was timed for /metrics.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("waos_assignment_decision_seconds_count 1"),
        "{metrics}"
    );
    assert_eq!(offer["last_message"]["text"], "my order is late");
    assert_eq!(offer["contact"]["phone"], "447700900001");
    assert!(offer["expires_at"].is_string());
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "offered"
    })
    .await;

    socket
        .send(json!({"type": "accept", "conversation_id": id}))
        .await;
    let assigned = socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], id);
    let message = socket.expect("message").await;
    assert_eq!(message["message"]["text"], "my order is late");
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "assigned"
    })
    .await;
    assert_eq!(conversation(&app, &id).await["assigned_agent_id"], bea);

    // A new customer message reaches the agent who holds the conversation.
    customer_writes(&app, 1, "wamid.route-2", "hello?").await;
    assert_eq!(socket.expect("message").await["message"]["text"], "hello?");

    socket
        .send(json!({"type": "resolve", "conversation_id": id}))
        .await;
    assert_eq!(socket.expect("unassigned").await["reason"], "resolved");
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "resolved"
    })
    .await;

    let audit = audit_after(&app, &id, "resolved").await;
    assert!(audit[0].starts_with("queued"), "{audit:?}");
    assert!(audit.iter().any(|t| t.contains("offered to bea@routing.example: least loaded (0/3) of 1 eligible")), "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|t| t.starts_with("accepted: accepted by bea@routing.example")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|t| t.starts_with("resolved")), "{audit:?}");
    let events = app
        .get_ok(&format!("/api/v1/conversations/{id}/audit"), ADMIN_TOKEN)
        .await;
    let offered = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "offered")
        .unwrap();
    assert_eq!(offered["reason"]["rule"], "least_loaded");
    assert_eq!(offered["reason"]["candidates"][0]["capacity"], 3);
}

async fn decline_and_timeout_move_to_the_next_agent(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let (a, a_token) = app
        .create_agent(&f.workspace, "a@routing.example", "agent", &[&f.team])
        .await;
    let (b, b_token) = app
        .create_agent(&f.workspace, "b@routing.example", "agent", &[&f.team])
        .await;
    let (mut a_socket, _) = app.connect_agent(&a_token).await;
    let (mut b_socket, _) = app.connect_agent(&b_token).await;
    let id = customer_writes(&app, 2, "wamid.decline-1", "hi").await;

    // Whoever is offered first declines; the other gets it.
    let (first, first_socket, second_socket) = if a < b {
        (a.clone(), &mut a_socket, &mut b_socket)
    } else {
        (b.clone(), &mut b_socket, &mut a_socket)
    };
    assert_eq!(first_socket.expect("offer").await["conversation_id"], id);
    first_socket
        .send(json!({"type": "decline", "conversation_id": id}))
        .await;
    assert_eq!(
        first_socket.expect("offer_withdrawn").await["conversation_id"],
        id
    );
    assert_eq!(second_socket.expect("offer").await["conversation_id"], id);
    // The second lets it lapse: it times out, and the decliner is cooling down, so it waits.
    let withdrawn = second_socket.expect("offer_withdrawn").await;
    assert!(
        withdrawn["reason"].as_str().unwrap().contains("timed out"),
        "{withdrawn}"
    );
    first_socket
        .expect_none("offer", Duration::from_millis(400))
        .await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "waiting"
    })
    .await;
    let audit = audit_after(&app, &id, "timed_out").await;
    assert!(audit.iter().any(|t| t.starts_with("declined")), "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|t| t.starts_with("timed_out") && t.contains("timed out after 0.2 s")),
        "{audit:?}"
    );
    assert!(
        audit.iter().filter(|t| t.starts_with("offered")).count() == 2,
        "{audit:?}"
    );
    let _ = first;
}

async fn auto_accept_and_capacity_drain(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let (agent, token) = app
        .create_agent_with(&f.workspace, "solo@routing.example", "agent", &[&f.team], 1)
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let first = customer_writes(&app, 3, "wamid.cap-1", "one").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], first);
    let second = customer_writes(&app, 4, "wamid.cap-2", "two").await;
    socket
        .expect_none("assigned", Duration::from_millis(300))
        .await;
    assert_eq!(conversation(&app, &second).await["status"], "waiting");
    // Manual assignment cannot push the agent over capacity either.
    let refused = app
        .post(
            &format!("/api/v1/conversations/{second}/assign"),
            ADMIN_TOKEN,
            &json!({"agent_id": agent}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "over_capacity"
    );
    // The moment the slot frees, the waiting conversation goes.
    socket
        .send(json!({"type": "resolve", "conversation_id": first}))
        .await;
    let assigned = socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], second);
    assert_eq!(assigned["reason"], "auto-accept");
}

async fn disconnect_grace_then_requeue(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let (_, a_token) = app
        .create_agent(&f.workspace, "leaver@routing.example", "agent", &[&f.team])
        .await;
    let (mut a_socket, _) = app.connect_agent(&a_token).await;
    let id = customer_writes(&app, 5, "wamid.grace-1", "hello").await;
    a_socket.expect("assigned").await;

    // Back within the grace period: the conversation is still there, in the hello.
    a_socket.close().await;
    let (again, hello) = app.connect_agent(&a_token).await;
    assert_eq!(hello["conversations"][0]["id"], id);
    again.close().await;

    // Gone for longer: it returns to the queue and goes to whoever is there.
    let (_, b_token) = app
        .create_agent(&f.workspace, "stayer@routing.example", "agent", &[&f.team])
        .await;
    let (mut b_socket, _) = app.connect_agent(&b_token).await;
    let assigned = b_socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], id);
    let audit = audit_after(&app, &id, "requeued").await;
    assert!(
        audit
            .iter()
            .any(|t| t.starts_with("requeued") && t.contains("disconnected")),
        "{audit:?}"
    );
}

async fn transfer_and_reopen(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let billing = app.create_team(&f.workspace, "Billing").await;
    let (_, a_token) = app
        .create_agent(&f.workspace, "first@routing.example", "agent", &[&f.team])
        .await;
    let (b, b_token) = app
        .create_agent(
            &f.workspace,
            "second@routing.example",
            "agent",
            &[&f.team, &billing],
        )
        .await;
    let (mut a_socket, _) = app.connect_agent(&a_token).await;
    let id = customer_writes(&app, 6, "wamid.transfer-1", "refund please").await;
    let (mut b_socket, _) = app.connect_agent(&b_token).await;
    // Least loaded: the first agent got it before the second was online.
    a_socket.expect("assigned").await;
    a_socket
        .send(json!({"type": "transfer", "conversation_id": id, "to_agent_id": b}))
        .await;
    assert_eq!(a_socket.expect("unassigned").await["conversation_id"], id);
    assert_eq!(b_socket.expect("assigned").await["conversation_id"], id);
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["assigned_agent_id"] == b
    })
    .await;

    // To a team: it queues there and (auto-accept off in Billing) is offered to its member.
    b_socket
        .send(json!({"type": "transfer", "conversation_id": id, "to_team_id": billing}))
        .await;
    assert_eq!(b_socket.expect("unassigned").await["conversation_id"], id);
    assert_eq!(b_socket.expect("offer").await["conversation_id"], id);
    b_socket
        .send(json!({"type": "accept", "conversation_id": id}))
        .await;
    b_socket.expect("assigned").await;
    assert_eq!(conversation(&app, &id).await["team_id"], billing);

    // Resolved, then the customer writes again within the reopen window: the same conversation.
    b_socket
        .send(json!({"type": "resolve", "conversation_id": id}))
        .await;
    b_socket.expect("unassigned").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "resolved"
    })
    .await;
    let again = customer_writes(&app, 6, "wamid.transfer-2", "one more thing").await;
    assert_eq!(again, id, "reopened, not a new conversation");
    let offer = b_socket.expect("offer").await;
    assert_eq!(offer["conversation_id"], id);
    assert_eq!(offer["last_message"]["text"], "one more thing");
    let audit = audit_after(&app, &id, "reopened").await;
    assert!(audit.iter().any(|t| t.starts_with("reopened")), "{audit:?}");
    assert!(
        audit
            .iter()
            .filter(|t| t.starts_with("transferred"))
            .count()
            == 2,
        "{audit:?}"
    );
}

async fn malformed_frames_get_errors_and_the_socket_lives(backend: Backend) {
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let (_, token) = app
        .create_agent(&f.workspace, "typo@routing.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    for bad in [
        "not json",
        "{}",
        r#"{"type":"teleport"}"#,
        r#"{"type":"accept"}"#,
    ] {
        socket.send_raw(bad).await;
        let error = socket.expect("error").await;
        assert_eq!(error["code"], "bad_request", "{bad}");
    }
    socket
        .send(json!({"type": "accept", "conversation_id": "00000000-0000-0000-0000-000000000000"}))
        .await;
    assert_eq!(socket.expect("error").await["code"], "not_found");
    socket
        .send(json!({"type": "presence", "status": "away"}))
        .await;
    assert_eq!(socket.expect("presence").await["status"], "away");
    // Away: no offers.
    let id = customer_writes(&app, 7, "wamid.away-1", "anyone?").await;
    socket
        .expect_none("offer", Duration::from_millis(300))
        .await;
    socket
        .send(json!({"type": "presence", "status": "online"}))
        .await;
    assert_eq!(socket.expect("offer").await["conversation_id"], id);
}

async fn unauthenticated_and_cross_origin_sockets_are_refused(backend: Backend) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app(backend).await;
    let f = floor(&app, json!({})).await;
    let (_, token) = app
        .create_agent(&f.workspace, "origin@routing.example", "agent", &[&f.team])
        .await;
    let url = format!("{}/ws/agent", app.address.replacen("http", "ws", 1));
    assert!(
        tokio_tungstenite::connect_async(url.clone()).await.is_err(),
        "no credentials"
    );
    let mut foreign = url.clone().into_client_request().unwrap();
    foreign
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    foreign
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(foreign).await.is_err(),
        "foreign origin"
    );
    // A ticket works once.
    let ticket = app
        .post_ok("/api/v1/auth/ws-ticket", &token, &json!({}), 200)
        .await["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let with_ticket = format!("{url}?ticket={ticket}");
    assert!(
        tokio_tungstenite::connect_async(with_ticket.clone())
            .await
            .is_ok()
    );
    assert!(
        tokio_tungstenite::connect_async(with_ticket).await.is_err(),
        "ticket reused"
    );
}

async fn idle_conversations_stop_and_come_back(backend: Backend) {
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        settings.routing.conversation_idle_ms = 100;
    })
    .await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let (_, token) = app
        .create_agent(&f.workspace, "patient@routing.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = customer_writes(&app, 8, "wamid.idle-1", "first").await;
    socket.expect("assigned").await;
    socket.expect("message").await;
    // Quiet for longer than the idle time: the actor stops; the next message rebuilds it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    customer_writes(&app, 8, "wamid.idle-2", "still there?").await;
    assert_eq!(
        socket.expect("message").await["message"]["text"],
        "still there?"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The agent's own action finds it too.
    socket
        .send(json!({"type": "resolve", "conversation_id": id}))
        .await;
    assert_eq!(socket.expect("unassigned").await["reason"], "resolved");
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &id).await["status"] == "resolved"
    })
    .await;
}

/// A customer who comes back after their conversation closed is routed to the agent who had
/// it, even when another agent is less loaded (the new conversation's rows come from ingest).
async fn a_returning_customer_goes_back_to_their_agent(backend: Backend) {
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        settings.routing.reopen_window_ms = 0;
    })
    .await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let (first, first_token) = app
        .create_agent(&f.workspace, "known@routing.example", "agent", &[&f.team])
        .await;
    let (_, other_token) = app
        .create_agent(&f.workspace, "idle@routing.example", "agent", &[&f.team])
        .await;
    let (mut socket, _) = app.connect_agent(&first_token).await;
    let before = customer_writes(&app, 7, "wamid.sticky-1", "hello").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], before);
    socket
        .send(json!({"type": "resolve", "conversation_id": before}))
        .await;
    socket.expect("unassigned").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &before).await["status"] == "resolved"
    })
    .await;
    // The known agent now holds someone else's conversation; the other agent holds none.
    let busy = customer_writes(&app, 9, "wamid.sticky-2", "me too").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], busy);
    let (mut other, _) = app.connect_agent(&other_token).await;

    let again = customer_writes(&app, 7, "wamid.sticky-3", "it is me again").await;
    assert_ne!(again, before, "a new conversation, not a reopened one");
    let assigned = socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], again);
    let audit = audit_after(&app, &again, "assigned").await;
    assert!(
        audit
            .iter()
            .any(|t| t.contains("the customer's last agent")),
        "{audit:?}"
    );
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &again).await["assigned_agent_id"] == first
    })
    .await;
    // A newcomer goes to the least loaded agent, as before.
    let newcomer = customer_writes(&app, 11, "wamid.sticky-4", "first time").await;
    assert_eq!(other.expect("assigned").await["conversation_id"], newcomer);
}

/// Under `routing.policy = "round_robin"` agents take turns whatever their load: after the
/// second agent resolves its conversation (so it holds fewer), the third still goes to the first.
async fn round_robin_takes_turns_whatever_the_load(backend: Backend) {
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        settings.routing.policy = waos_engine::routing::policy::PolicyKind::RoundRobin;
    })
    .await;
    let f = floor(&app, json!({"auto_accept": true})).await;
    let mut sockets = std::collections::HashMap::new();
    for email in ["turn-a@routing.example", "turn-b@routing.example"] {
        let (id, token) = app
            .create_agent(&f.workspace, email, "agent", &[&f.team])
            .await;
        sockets.insert(id, app.connect_agent(&token).await.0);
    }
    let holder = |id: String| {
        let app = &app;
        async move {
            eventually(Duration::from_secs(5), || async {
                conversation(app, &id).await["assigned_agent_id"].is_string()
            })
            .await;
            let agent = conversation(app, &id).await["assigned_agent_id"].clone();
            (id, agent.as_str().unwrap().to_owned())
        }
    };
    let (_, first) = holder(customer_writes(&app, 21, "wamid.turn-1", "one").await).await;
    let (second_id, second) = holder(customer_writes(&app, 22, "wamid.turn-2", "two").await).await;
    assert_ne!(
        first, second,
        "the second conversation is the other agent's turn"
    );
    let socket = sockets.get_mut(&second).unwrap();
    socket.expect("assigned").await;
    socket
        .send(json!({"type": "resolve", "conversation_id": second_id}))
        .await;
    socket.expect("unassigned").await;
    eventually(Duration::from_secs(5), || async {
        conversation(&app, &second_id).await["status"] == "resolved"
    })
    .await;
    let (third_id, third) = holder(customer_writes(&app, 23, "wamid.turn-3", "three").await).await;
    assert_eq!(
        third, first,
        "the first agent's turn, although it holds one and the other none"
    );
    let audit = audit_after(&app, &third_id, "assigned").await;
    assert!(
        audit.iter().any(|t| t.contains("next in turn (1/")),
        "{audit:?}"
    );
}

on_both_backends!(
    round_robin_takes_turns_whatever_the_load,
    a_returning_customer_goes_back_to_their_agent,
    idle_conversations_stop_and_come_back,
    offer_accept_and_resolve,
    decline_and_timeout_move_to_the_next_agent,
    auto_accept_and_capacity_drain,
    disconnect_grace_then_requeue,
    transfer_and_reopen,
    malformed_frames_get_errors_and_the_socket_lives,
    unauthenticated_and_cross_origin_sockets_are_refused,
);
