//! Agents' replies reach Meta (the fake Graph API), by Meta's rules: inside the 24-hour window
//! only, retried or given up by Meta's error code, statuses following.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, APP_SECRET, AgentSocket, Backend, FakeGraph, StatusDelivery, TestApp, eventually,
    spawn_app_with,
};

use crate::concurrency::{text_body, text_body_at};

pub(crate) async fn app_with_graph(backend: Backend) -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await.unwrap();
    let url = graph.url.clone();
    let app = spawn_app_with(backend, move |settings, _| settings.meta.graph_url = url).await;
    (app, graph)
}

/// A workspace whose one agent holds customer `customer`'s conversation (auto-accept).
pub(crate) async fn holding(
    app: &TestApp,
    customer: usize,
    wamid: &str,
    timestamp: i64,
) -> (AgentSocket, String, String, String) {
    let workspace = app.create_workspace("Replies").await;
    let team = app
        .create_team_with(&workspace, json!({"name": "Support", "auto_accept": true}))
        .await;
    app.create_channel(&workspace, &team, "115566778899001")
        .await;
    let (_, token) = app
        .create_agent(&workspace, "replier@replies.example", "agent", &[&team])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    assert_eq!(
        app.post_webhook(&text_body_at(wamid, customer, "hello", timestamp))
            .await
            .status(),
        200
    );
    let id = socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (socket, id, workspace, token)
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) async fn status_of(app: &TestApp, message_id: &str) -> Option<String> {
    app.scalar("messages", "status", &format!("id = '{message_id}'"))
        .await
}

async fn a_reply_reaches_meta_and_its_statuses_follow(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let (mut socket, id, _, token) = holding(&app, 1, "wamid.reply-in-1", now()).await;
    socket.expect("message").await;
    socket
        .send(json!({"type": "send", "conversation_id": id, "client_id": "c-1", "text": "On it!"}))
        .await;
    let sent = socket.expect("sent").await;
    assert_eq!(sent["client_id"], "c-1");
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    let echoed = socket.expect("message").await;
    assert_eq!(
        (
            echoed["message"]["direction"].clone(),
            echoed["message"]["text"].clone()
        ),
        (json!("out"), json!("On it!"))
    );

    eventually(Duration::from_secs(5), || async {
        status_of(&app, &message_id).await.as_deref() == Some("accepted")
    })
    .await;
    let requests = graph.sends();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v25.0/115566778899001/messages");
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer EAAG-test-token")
    );
    assert_eq!(requests[0].body["to"], "447700900001");
    assert_eq!(requests[0].body["type"], "text");
    assert_eq!(requests[0].body["text"]["body"], "On it!");
    assert_eq!(requests[0].body["messaging_product"], "whatsapp");
    let wamid = app
        .scalar("messages", "wamid", &format!("id = '{message_id}'"))
        .await
        .unwrap();
    assert_eq!(wamid, "wamid.FAKE1");
    // The agent sees Meta accept it.
    let accepted = socket.expect("status").await;
    assert_eq!(
        (accepted["status"].clone(), accepted["wamid"].clone()),
        (json!("accepted"), json!(wamid))
    );

    // Meta's status webhooks move it forward, never back.
    let status = |name: &str, ts: i64| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "metadata": {"display_phone_number": "15550100123", "phone_number_id": "115566778899001"},
            "statuses": [{"id": wamid, "status": name, "timestamp": ts.to_string(), "recipient_id": "447700900001"}]
        }}]}]})
        .to_string()
    };
    app.post_webhook(status("read", now()).as_bytes()).await;
    let frame = socket.expect("status").await;
    assert_eq!(
        (frame["message_id"].clone(), frame["status"].clone()),
        (json!(message_id), json!("read"))
    );
    app.post_webhook(status("delivered", now()).as_bytes())
        .await;
    assert_eq!(status_of(&app, &message_id).await.as_deref(), Some("read"));
    socket
        .expect_none("status", Duration::from_millis(300))
        .await;

    // Integrations reply through the REST API, by the same rules.
    let created = app
        .post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &token,
            &json!({"text": "Also by API"}),
            201,
        )
        .await;
    assert_eq!(created["direction"], "out");
    eventually(Duration::from_secs(5), || async {
        graph.sends().len() == 2
    })
    .await;
    assert_eq!(graph.sends()[1].body["text"]["body"], "Also by API");
    let refused = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            ADMIN_TOKEN,
            &json!({"text": "x"}),
        )
        .await;
    // The bootstrap token is no person: it may never reply (agents who do not hold it: 409).
    assert_eq!(refused.status(), 403, "only the agent holding it replies");
}

async fn outside_the_window_a_reply_is_refused_before_any_call(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    // The customer's last message is months old.
    let (mut socket, id, _, token) = holding(&app, 2, "wamid.reply-old-1", 1_781_600_000).await;
    socket.send(json!({"type": "send", "conversation_id": id, "client_id": "c-9", "text": "Hello again"})).await;
    let error = socket.expect("error").await;
    assert_eq!(
        (error["code"].clone(), error["client_id"].clone()),
        (json!("window_closed"), json!("c-9"))
    );
    assert!(error["message"].as_str().unwrap().contains("template"));
    let refused = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &token,
            &json!({"text": "Hello"}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "window_closed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(graph.sends().is_empty());
    assert_eq!(app.count("messages", "direction = 'out'").await, 0);
    // The same for a conversation the agent does not hold, and for an empty text.
    socket.send(json!({"type": "send", "conversation_id": "00000000-0000-0000-0000-000000000000", "client_id": "x", "text": "hi"})).await;
    assert_eq!(socket.expect("error").await["code"], "not_found");
    let _ = text_body;
}

async fn meta_errors_are_retried_or_given_up_by_code(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let (mut socket, id, workspace, _) = holding(&app, 3, "wamid.reply-err-1", now()).await;
    let send = |text: &'static str| {
        let id = id.clone();
        async move { (id, text) }
    };
    // 130429 (throughput) is retried, then goes through.
    graph.fail_next(400, 130429);
    let (conversation, text) = send("first").await;
    socket.send(json!({"type": "send", "conversation_id": conversation, "client_id": "a", "text": text})).await;
    let first = socket.expect("sent").await["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        status_of(&app, &first).await.as_deref() == Some("accepted")
    })
    .await;
    assert_eq!(socket.expect("status").await["status"], "accepted");
    assert_eq!(graph.sends().len(), 2, "one refusal, one retry");

    // 131047 (re-engagement) is never retried; the message fails with Meta's reason.
    graph.fail_next(400, 131047);
    let (conversation, text) = send("second").await;
    socket.send(json!({"type": "send", "conversation_id": conversation, "client_id": "b", "text": text})).await;
    let second = socket.expect("sent").await["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        status_of(&app, &second).await.as_deref() == Some("failed")
    })
    .await;
    // The agent sees the dead letter, with Meta's reason.
    let failed = socket.expect("status").await;
    assert_eq!(
        (failed["message_id"].clone(), failed["status"].clone()),
        (json!(second), json!("failed"))
    );
    assert_eq!(failed["error"]["code"], 131047);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 3, "not retried");
    let error = app
        .scalar(
            "messages",
            "CAST(error AS TEXT)",
            &format!("id = '{second}'"),
        )
        .await
        .unwrap();
    assert!(error.contains("131047"), "{error}");

    // 190 (token rejected) pauses the channel and keeps the message for when it resumes.
    graph.fail_next(401, 190);
    let (conversation, text) = send("third").await;
    socket.send(json!({"type": "send", "conversation_id": conversation, "client_id": "c", "text": text})).await;
    let third = socket.expect("sent").await["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let channels = || async {
        app.get_ok(
            &format!("/api/v1/workspaces/{workspace}/channels"),
            ADMIN_TOKEN,
        )
        .await
    };
    eventually(Duration::from_secs(5), || async {
        channels().await["items"][0]["paused"] == json!(true)
    })
    .await;
    let channel: Value = channels().await["items"][0].clone();
    assert!(channel["pause_reason"].as_str().unwrap().contains("190"));
    assert_eq!(status_of(&app, &third).await.as_deref(), Some("queued"));
    // Rotated and resumed: it goes out.
    let channel_id = channel["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/workspaces/{workspace}/channels/{channel_id}"),
        ADMIN_TOKEN,
        &json!({"access_token": "EAAG-rotated", "paused": false}),
    )
    .await;
    eventually(Duration::from_secs(5), || async {
        status_of(&app, &third).await.as_deref() == Some("accepted")
    })
    .await;
    assert_eq!(
        graph.sends().last().unwrap().authorization.as_deref(),
        Some("Bearer EAAG-rotated")
    );
}

/// The fake Meta the demo runs on posts a send's statuses back to the webhook, signed, as Meta
/// does: the agent sees the reply go accepted, sent, delivered, read, and the database keeps each.
async fn the_fake_meta_posts_each_sends_statuses_back(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    graph.deliver_statuses(StatusDelivery::sent_delivered_read(
        &app.url("/webhooks/whatsapp"),
        APP_SECRET,
        Duration::from_millis(150),
    ));
    let (mut socket, id, _, _) = holding(&app, 1, "wamid.fake-statuses-in", now()).await;
    socket.expect("message").await;
    socket
        .send(json!({"type": "send", "conversation_id": id, "client_id": "c-1", "text": "On it!"}))
        .await;
    let message_id = socket.expect("sent").await["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("read") {
        let frame = socket.expect("status").await;
        assert_eq!(frame["message_id"], json!(message_id), "{frame}");
        seen.push(frame["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["accepted", "sent", "delivered", "read"]);
    assert_eq!(status_of(&app, &message_id).await.as_deref(), Some("read"));
    let wamid = app
        .scalar("messages", "wamid", &format!("id = '{message_id}'"))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        app.count("message_statuses", &format!("wamid = '{wamid}'"))
            .await
            == 3
    })
    .await;
}

on_both_backends!(
    a_reply_reaches_meta_and_its_statuses_follow,
    outside_the_window_a_reply_is_refused_before_any_call,
    meta_errors_are_retried_or_given_up_by_code,
    the_fake_meta_posts_each_sends_statuses_back,
);
