//! The agent's everyday tools over the real server: canned replies (kept by admins, listed by
//! team, filled in for a conversation, sent like any reply) and taking a waiting conversation
//! from the queue with `pick` (capacity exact, nothing outside the agent's teams).

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use waos_web::testing::{ADMIN_TOKEN, Backend, spawn_app};

use crate::concurrency::text_body_at;
use crate::routing::{Floor, conversation, customer_writes_now as writes, floor};

fn shortcuts(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["shortcut"].as_str().unwrap().to_owned())
        .collect()
}

async fn canned_replies_are_scoped_by_team_filled_in_and_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let f: Floor = floor(&app, json!({"auto_accept": true})).await;
    let billing = app.create_team(&f.workspace, "Billing").await;
    let path = format!("/api/v1/workspaces/{}/canned-replies", f.workspace);
    app.post_ok(
        &path,
        ADMIN_TOKEN,
        &json!({"shortcut": "/Greeting", "text": "Hello {{contact.name|there}}, {{agent.name}} from {{team.name}} here."}),
        201,
    )
    .await;
    app.post_ok(
        &path,
        ADMIN_TOKEN,
        &json!({"shortcut": "group-hours", "text": "We are open 9 to 5.", "team_id": f.team}),
        201,
    )
    .await;
    app.post_ok(
        &path,
        ADMIN_TOKEN,
        &json!({"shortcut": "refund", "text": "Refunds take 5 days.", "team_id": billing}),
        201,
    )
    .await;
    // Bad input, each named.
    for (body, status, needle) in [
        (
            json!({"shortcut": "greeting", "text": "again"}),
            409,
            "already exists",
        ),
        (
            json!({"shortcut": "no spaces", "text": "x"}),
            422,
            "shortcut",
        ),
        (
            json!({"shortcut": "ok", "text": "Hi {{contact.email}}"}),
            422,
            "contact.email",
        ),
        (
            json!({"shortcut": "ok", "text": "x", "team_id": "0191e0a4-0000-7000-8000-000000000000"}),
            422,
            "team_id",
        ),
        (
            json!({"shortcut": "ok", "text": "x", "colour": "red"}),
            422,
            "colour",
        ),
    ] {
        let response = app.post(&path, ADMIN_TOKEN, &body).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {error}"
        );
    }
    // An agent of Support lists the workspace's and Support's, not Billing's.
    let (_, token) = app
        .create_agent(&f.workspace, "gus@canned.example", "agent", &[&f.team])
        .await;
    assert_eq!(
        shortcuts(&app.get_ok(&path, &token).await),
        ["greeting", "group-hours"]
    );
    assert_eq!(
        shortcuts(&app.get_ok(&path, ADMIN_TOKEN).await),
        ["greeting", "group-hours", "refund"]
    );
    // In a conversation: filtered by what was typed after `/`, filled in for it.
    let (mut socket, _) = app.connect_agent(&token).await;
    let id = writes(&app, 1, "wamid.canned-1", "hi").await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], id);
    let found = app
        .get_ok(
            &format!("/api/v1/conversations/{id}/canned-replies?q=/gr"),
            &token,
        )
        .await;
    assert_eq!(shortcuts(&found), ["greeting", "group-hours"]);
    let greeting = found["items"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(
        greeting,
        "Hello Customer 1, gus@canned.example from Support here."
    );
    // Sent as any reply.
    socket
        .send(json!({"type": "send", "conversation_id": id, "client_id": "c1", "text": greeting}))
        .await;
    assert_eq!(socket.expect("sent").await["client_id"], "c1");
    assert_eq!(
        app.scalar("messages", "text", "direction = 'out'")
            .await
            .unwrap(),
        greeting
    );
    // Another workspace's admin cannot see them.
    let elsewhere = app.create_workspace("Elsewhere").await;
    let (_, outsider) = app
        .create_agent(&elsewhere, "olga@elsewhere.example", "admin", &[])
        .await;
    assert_eq!(app.get(&path, &outsider).await.status(), 404);
    assert_eq!(
        app.get(
            &format!("/api/v1/conversations/{id}/canned-replies"),
            &outsider
        )
        .await
        .status(),
        404
    );
}

/// Nobody is offered anything (the team does not offer by itself: its agents are away), so
/// conversations wait; an agent takes them with `pick`, up to its capacity.
async fn an_agent_picks_waiting_conversations_up_to_capacity(backend: Backend) {
    let app = spawn_app(backend).await;
    let f: Floor = floor(&app, json!({})).await;
    let elsewhere_team = app.create_team(&f.workspace, "Elsewhere").await;
    // A rule sends "elsewhere" to a team she is not in.
    app.post_ok(
        &format!("/api/v1/workspaces/{}/automations", f.workspace),
        ADMIN_TOKEN,
        &json!({"name": "Away team", "trigger": {"event": "message_received"},
                "conditions": {"field": "message.text", "op": "equals", "value": "elsewhere"},
                "actions": [{"type": "assign_team", "team_id": elsewhere_team}]}),
        201,
    )
    .await;
    let (_, token) = app
        .create_agent_with(&f.workspace, "pia@pick.example", "agent", &[&f.team], 1)
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    socket
        .send(json!({"type": "presence", "status": "away"}))
        .await;
    socket.expect("presence").await;
    let first = writes(&app, 1, "wamid.pick-1", "hello").await;
    let second = writes(&app, 2, "wamid.pick-2", "hello").await;
    let outside = writes(&app, 3, "wamid.pick-3", "elsewhere").await;
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        conversation(&app, &outside).await["team_id"] == elsewhere_team
    })
    .await;

    // Away, nothing is offered; she takes the first herself.
    socket
        .expect_none("offer", Duration::from_millis(300))
        .await;
    socket
        .send(json!({"type": "pick", "conversation_id": first}))
        .await;
    let assigned = socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], first);
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        conversation(&app, &first).await["status"] == "assigned"
    })
    .await;
    // Full (capacity 1): the second is refused.
    socket
        .send(json!({"type": "pick", "conversation_id": second}))
        .await;
    let error = socket.expect("error").await;
    assert_eq!(error["code"], "over_capacity");
    assert_eq!(error["conversation_id"], second);
    // Outside her teams, or no conversation at all: not found, the same either way.
    for id in [outside.clone(), "not-an-id".to_owned()] {
        socket
            .send(json!({"type": "pick", "conversation_id": id}))
            .await;
        let error = socket.expect("error").await;
        assert_eq!(error["code"], "not_found", "{id}");
    }
    // One of her team's that is no longer waiting: a conflict.
    socket
        .send(json!({"type": "pick", "conversation_id": first}))
        .await;
    assert_eq!(socket.expect("error").await["code"], "conflict");
    let audit = app
        .get_ok(&format!("/api/v1/conversations/{first}/audit"), ADMIN_TOKEN)
        .await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "picked"),
        "{audit}"
    );
    // Resolved, she has room again and takes the second.
    socket
        .send(json!({"type": "resolve", "conversation_id": first}))
        .await;
    socket.expect("unassigned").await;
    socket
        .send(json!({"type": "pick", "conversation_id": second}))
        .await;
    assert_eq!(socket.expect("assigned").await["conversation_id"], second);
}

/// Contacts by the start of a name or number, a contact's conversations, and messages by their
/// words: each scoped like conversations (an agent of another team finds nothing of these).
async fn contacts_and_messages_are_found_within_the_callers_scope(backend: Backend) {
    // No reopening: the customer's next message opens a new conversation.
    let app = waos_web::testing::spawn_app_with(backend, |settings, _| {
        settings.routing.reopen_window_ms = 0;
    })
    .await;
    let f: Floor = floor(&app, json!({"auto_accept": true})).await;
    let billing = app.create_team(&f.workspace, "Billing").await;
    let (_, token) = app
        .create_agent(&f.workspace, "ida@find.example", "agent", &[&f.team])
        .await;
    let (_, stranger) = app
        .create_agent(&f.workspace, "ned@find.example", "agent", &[&billing])
        .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    // Last week's conversation, resolved; then today's, from the same customer.
    let week_ago = Utc::now().timestamp() - 7 * 86_400;
    let old = text_body_at(
        "wamid.find-1",
        1,
        "My parcel arrived damaged, I want a refund",
        week_ago,
    );
    assert_eq!(app.post_webhook(&old).await.status(), 200);
    let first = socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    socket
        .send(json!({"type": "resolve", "conversation_id": first}))
        .await;
    socket.expect("unassigned").await;
    let second = writes(&app, 1, "wamid.find-2", "Hello again").await;
    assert_ne!(second, first);
    socket.expect("assigned").await;
    writes(&app, 2, "wamid.find-3", "where is my REFUND?").await;

    // Words, any case, every word required; newest first.
    let found = app.get_ok("/api/v1/search?q=refund", &token).await;
    let texts: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "where is my REFUND?",
            "My parcel arrived damaged, I want a refund"
        ]
    );
    assert_eq!(found["items"][1]["conversation_id"], first);
    let found = app
        .get_ok("/api/v1/search?q=damaged%20refund", &token)
        .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    // Query syntax in the words is only words.
    for q in [
        "refund%22%20OR%20*",
        "NEAR(refund)",
        "%27%3B--",
        "%D8%A7%D8%B3%D8%AA%D8%B1%D8%AF%D8%A7%D8%AF",
    ] {
        let response = app.get(&format!("/api/v1/search?q={q}"), &token).await;
        assert_eq!(response.status(), 200, "{q}");
    }
    assert_eq!(app.get("/api/v1/search?q=%20", &token).await.status(), 422);
    // Another team's agent sees none of it.
    let found = app.get_ok("/api/v1/search?q=refund", &stranger).await;
    assert_eq!(found["items"], json!([]));

    // Contacts by the start of a name or a number.
    let by_name = app.get_ok("/api/v1/contacts?q=custom", &token).await;
    assert_eq!(by_name["items"].as_array().unwrap().len(), 2);
    let by_phone = app.get_ok("/api/v1/contacts?q=%2B4477009000", &token).await;
    assert_eq!(by_phone["items"].as_array().unwrap().len(), 2);
    let one = app.get_ok("/api/v1/contacts?q=447700900001", &token).await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let contact = one["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_ok("/api/v1/contacts?q=custom", &stranger).await["items"],
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/contacts?q=50%25_", &token).await.status(),
        200
    );
    // The contact with both conversations, newest first.
    let detail = app
        .get_ok(&format!("/api/v1/contacts/{contact}"), &token)
        .await;
    let ids: Vec<&str> = detail["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(detail["contact"]["name"], "Customer 1");
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{contact}"), &stranger)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/api/v1/contacts/nobody", &token).await.status(),
        404
    );
    let _ = conversation(&app, &second).await;
}

on_both_backends!(
    canned_replies_are_scoped_by_team_filled_in_and_sent,
    an_agent_picks_waiting_conversations_up_to_capacity,
    contacts_and_messages_are_found_within_the_callers_scope,
);
