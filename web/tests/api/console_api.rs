//! What the agent console needs beside routing: Meta's templates (synced, checked, sent outside
//! the 24-hour window), read receipts on `open`, inbound media downloaded and served to those
//! who may see it, tags and internal notes, the workspace directory, and the sender's pacing
//! and exactly-once delivery when several senders (or restarts) share one outbox.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waos_engine::store::entity::outbox;
use waos_web::testing::{
    ADMIN_TOKEN, AgentSocket, Backend, FakeGraph, PASSWORD, PHONE_NUMBER_ID_1, TestApp, eventually,
    redis_url, spawn_app, spawn_app_with,
};
use waos_workers::pacing::Budget;
use waos_workers::sender::{Sender, SenderSettings};

use crate::concurrency::text_body_at;
use crate::outbound::{app_with_graph, holding, now, status_of};

/// The Graph token every channel here is created with.
const TOKEN: &str = "EAAG-test-token";
const BEARER: &str = "Bearer EAAG-test-token";
const WABA_ID: &str = "102290129340398";
/// A second number, on a team of its own.
const PHONE_NUMBER_ID_2: &str = "115566778899003";
const WAIT: Duration = Duration::from_secs(10);

/// The phone (`wa_id`) of customer `customer` in [`text_body_at`].
fn phone(customer: usize) -> String {
    format!("4477009{customer:05}")
}

/// Creates an agent with a proper name (not its e-mail) and signs it in: (agent id, token).
async fn named_agent(
    app: &TestApp,
    workspace: &str,
    name: &str,
    email: &str,
    role: &str,
    teams: &[&str],
) -> (String, String) {
    let created = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/agents"),
            ADMIN_TOKEN,
            &json!({"name": name, "email": email, "password": PASSWORD, "role": role,
                    "capacity": 3, "team_ids": teams}),
            201,
        )
        .await;
    let session = app
        .post_ok(
            "/api/v1/auth/login",
            "",
            &json!({"email": email, "password": PASSWORD}),
            200,
        )
        .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        session["token"].as_str().unwrap().to_owned(),
    )
}

async fn create_channel(
    app: &TestApp,
    workspace: &str,
    team: &str,
    phone_number_id: &str,
    waba_id: Option<&str>,
) -> String {
    let mut body = json!({"phone_number_id": phone_number_id, "display_phone_number": "+1 555 0100",
                          "access_token": TOKEN, "team_id": team});
    if let Some(waba_id) = waba_id {
        body["waba_id"] = json!(waba_id);
    }
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/channels"),
        ADMIN_TOKEN,
        &body,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A workspace whose agent "Ana Lima" (team Support, auto-accept) holds customer `customer`'s
/// conversation on [`PHONE_NUMBER_ID_1`], whose channel has `waba_id`.
struct Desk {
    workspace: String,
    team: String,
    channel: String,
    agent_id: String,
    token: String,
    socket: AgentSocket,
    conversation: String,
}

async fn desk(
    app: &TestApp,
    waba_id: Option<&str>,
    customer: usize,
    wamid: &str,
    timestamp: i64,
) -> Desk {
    let workspace = app.create_workspace("Console Co").await;
    let team = app
        .create_team_with(&workspace, json!({"name": "Support", "auto_accept": true}))
        .await;
    let channel = create_channel(app, &workspace, &team, PHONE_NUMBER_ID_1, waba_id).await;
    let (agent_id, token) = named_agent(
        app,
        &workspace,
        "Ana Lima",
        "ana@console.example",
        "agent",
        &[&team],
    )
    .await;
    let (mut socket, _) = app.connect_agent(&token).await;
    assert_eq!(
        app.post_webhook(&text_body_at(wamid, customer, "hello", timestamp))
            .await
            .status(),
        200
    );
    let conversation = socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    Desk {
        workspace,
        team,
        channel,
        agent_id,
        token,
        socket,
        conversation,
    }
}

async fn put(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Status and JSON body of a response.
async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The socket's `sent` or `error` answer to the frame with `client_id` (other frames dropped).
async fn answer_to(socket: &mut AgentSocket, client_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = socket
            .next_frame(left)
            .await
            .unwrap_or_else(|| panic!("no answer to `{client_id}`"));
        if (frame["type"] == "sent" || frame["type"] == "error") && frame["client_id"] == client_id
        {
            return frame;
        }
    }
}

/// Message sends (not read receipts) the fake received, in arrival order.
fn message_sends(graph: &FakeGraph) -> Vec<waos_web::testing::GraphRequest> {
    graph
        .sends()
        .into_iter()
        .filter(|r| r.body["status"] != "read")
        .collect()
}

/// The text bodies of the fake's message sends, in arrival order.
fn sent_texts(graph: &FakeGraph) -> Vec<String> {
    message_sends(graph)
        .iter()
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

// ---------- templates ----------

fn template(name: &str, language: &str, status: &str, body: &str) -> Value {
    json!({"name": name, "language": language, "status": status, "category": "UTILITY",
           "id": format!("{}", 900_000 + name.len() * 31 + language.len()),
           "components": [{"type": "HEADER", "format": "TEXT", "text": "Update"},
                          {"type": "BODY", "text": body},
                          {"type": "FOOTER", "text": "Reply STOP to opt out"}]})
}

fn template_request(name: &str, language: &str, parameters: &[&str]) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|text| json!({"type": "text", "text": text}))
        .collect();
    json!({"name": name, "language": {"code": language},
           "components": [{"type": "body", "parameters": parameters}]})
}

async fn templates_are_synced_checked_and_sent_outside_the_window(backend: Backend) {
    let graph = FakeGraph::start().await;
    let url = graph.url.clone();
    // Syncs only on demand, so that every template request the fake sees is the test's.
    let app = spawn_app_with(backend, move |settings, _| {
        settings.meta.graph_url = url;
        settings.outbound.template_sync_interval_ms = 0;
    })
    .await;
    // 119 templates: more than one page of 100. The ones the test sends come last, on page 2.
    let mut listed: Vec<Value> = (0..115)
        .map(|i| {
            let status = if i % 4 == 0 { "REJECTED" } else { "APPROVED" };
            template(
                &format!("filler_{i:03}"),
                "en_US",
                status,
                "Filler for {{1}}",
            )
        })
        .collect();
    listed.push(template(
        "order_update",
        "en_US",
        "APPROVED",
        "Hi {{1}}, your order is on its way.",
    ));
    listed.push(template(
        "order_update",
        "pt_BR",
        "APPROVED",
        "Olá {{1}}, seu pedido está a caminho.",
    ));
    listed.push(template(
        "spring_sale",
        "en_US",
        "PENDING",
        "Hi {{1}}, 20% off this week!",
    ));
    listed.push(template(
        "no_params",
        "en_US",
        "APPROVED",
        "Thanks for waiting.",
    ));
    graph.set_templates(listed.clone());
    let approved: HashSet<(String, String)> = listed
        .iter()
        .filter(|t| t["status"] == "APPROVED")
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["language"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    // The customer's last message is 25 hours old: the window is closed.
    let mut desk = desk(&app, Some(WABA_ID), 41, "wamid.tpl-in-1", now() - 25 * 3600).await;
    let id = desk.conversation.clone();
    let templates_path = format!("/api/v1/conversations/{id}/templates");
    assert_eq!(
        app.get_ok(&templates_path, &desk.token).await["items"],
        json!([]),
        "nothing synced yet"
    );

    // Only a workspace admin syncs.
    let sync_path = format!(
        "/api/v1/workspaces/{}/channels/{}/templates/sync",
        desk.workspace, desk.channel
    );
    let (status, _) = answer_of(app.post(&sync_path, &desk.token, &json!({})).await).await;
    assert_eq!(
        status, 403,
        "an agent of the workspace may not sync templates"
    );
    assert!(graph.requests().is_empty());

    let synced = app.post_ok(&sync_path, ADMIN_TOKEN, &json!({}), 200).await;
    assert_eq!(synced, json!({"synced": listed.len()}));
    let lookups: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/message_templates"))
        .collect();
    assert_eq!(lookups.len(), 2, "two pages of at most 100");
    for lookup in &lookups {
        assert_eq!(
            (lookup.method.as_str(), lookup.path.as_str()),
            (
                "GET",
                format!("/v25.0/{WABA_ID}/message_templates").as_str()
            )
        );
        assert_eq!(lookup.authorization.as_deref(), Some(BEARER));
    }
    assert_eq!(
        app.count("message_templates", &format!("waba_id = '{WABA_ID}'"))
            .await,
        i64::try_from(listed.len()).unwrap()
    );

    // The picker lists the approved ones only, by name.
    let items = app.get_ok(&templates_path, &desk.token).await["items"].clone();
    let items = items.as_array().unwrap();
    let got: HashSet<(String, String)> = items
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["language"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(items.len(), approved.len());
    assert_eq!(got, approved);
    assert!(items.iter().all(|t| t["status"] == "APPROVED"));
    let names: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.is_sorted(), "{names:?}");
    let order_update = items
        .iter()
        .find(|t| t["name"] == "order_update" && t["language"] == "en_US")
        .unwrap();
    assert_eq!(order_update["components"], listed[115]["components"]);
    assert_eq!(order_update["category"], "UTILITY");

    // Outside the window free text is refused before any call to Meta...
    let socket = &mut desk.socket;
    socket
        .send(
            json!({"type": "send", "conversation_id": id, "client_id": "free-1", "text": "Hello?"}),
        )
        .await;
    let refused = answer_to(socket, "free-1").await;
    assert_eq!(
        (refused["type"].clone(), refused["code"].clone()),
        (json!("error"), json!("window_closed"))
    );

    // ...while an approved template goes out.
    let request = template_request("order_update", "en_US", &["Ana"]);
    socket
        .send(json!({"type": "send_template", "conversation_id": id, "client_id": "tpl-1", "template": request}))
        .await;
    let sent = answer_to(socket, "tpl-1").await;
    assert_eq!(sent["type"], "sent", "{sent}");
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    eventually(WAIT, || async {
        status_of(&app, &message_id).await.as_deref() == Some("accepted")
    })
    .await;
    let sends = graph.sends();
    assert_eq!(sends.len(), 1, "the free-form text never reached Meta");
    let send = &sends[0];
    assert_eq!(send.path, format!("/v25.0/{PHONE_NUMBER_ID_1}/messages"));
    assert_eq!(send.authorization.as_deref(), Some(BEARER));
    assert_eq!(send.body["messaging_product"], "whatsapp");
    assert_eq!(send.body["to"], phone(41));
    assert_eq!(send.body["type"], "template");
    assert_eq!(send.body["template"]["name"], "order_update");
    assert_eq!(send.body["template"]["language"]["code"], "en_US");
    assert_eq!(send.body["template"]["components"], request["components"]);
    assert!(send.body.get("text").is_none());
    let filter = format!("id = '{message_id}'");
    assert_eq!(
        app.scalar("messages", "kind", &filter).await.as_deref(),
        Some("template")
    );
    assert_eq!(
        app.scalar("messages", "text", &filter).await.as_deref(),
        Some("Hi Ana, your order is on its way.")
    );
    assert_eq!(
        app.scalar("messages", "direction", &filter)
            .await
            .as_deref(),
        Some("out")
    );

    // What the sync does not allow is refused before anything is stored or sent.
    let refusals = [
        (
            "unknown",
            template_request("order_updates", "en_US", &["Ana"]),
        ),
        (
            "unsynced-language",
            template_request("order_update", "es_ES", &["Ana"]),
        ),
        ("too-few", template_request("order_update", "en_US", &[])),
        (
            "too-many",
            template_request("order_update", "en_US", &["Ana", "#42"]),
        ),
        (
            "pending",
            template_request("spring_sale", "en_US", &["Ana"]),
        ),
        (
            "rejected",
            template_request("filler_000", "en_US", &["Ana"]),
        ),
        (
            "bad-name",
            template_request("Order Update", "en_US", &["Ana"]),
        ),
        ("no-language", json!({"name": "order_update"})),
    ];
    for (client_id, template) in &refusals {
        socket
            .send(json!({"type": "send_template", "conversation_id": id, "client_id": client_id, "template": template}))
            .await;
        let error = answer_to(socket, client_id).await;
        assert_eq!(
            (error["type"].clone(), error["code"].clone()),
            (json!("error"), json!("validation_failed")),
            "{client_id}: {error}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 1, "no refused template reached Meta");
    assert_eq!(
        app.count(
            "messages",
            &format!("conversation_id = '{id}' AND direction = 'out'")
        )
        .await,
        1
    );

    // The REST API sends templates by the same rules.
    let created = app
        .post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("order_update", "pt_BR", &["Bruno"])}),
            201,
        )
        .await;
    assert_eq!(
        (
            created["kind"].clone(),
            created["text"].clone(),
            created["direction"].clone()
        ),
        (
            json!("template"),
            json!("Olá Bruno, seu pedido está a caminho."),
            json!("out")
        )
    );
    let created = app
        .post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": {"name": "no_params", "language": {"code": "en_US"}}}),
            201,
        )
        .await;
    assert_eq!(created["text"], "Thanks for waiting.");
    eventually(WAIT, || async { graph.sends().len() == 3 }).await;
    let sends = graph.sends();
    assert_eq!(sends[1].body["template"]["language"]["code"], "pt_BR");
    assert_eq!(
        sends[1].body["template"]["components"][0]["parameters"][0]["text"],
        "Bruno"
    );
    assert_eq!(sends[2].body["template"]["name"], "no_params");
    let (status, body) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("spring_sale", "en_US", &["Ana"])}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("validation_failed"))
    );
    let (status, body) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"text": "Hello?"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("window_closed"))
    );

    // A new sync replaces what was stored.
    graph.set_templates(vec![listed[115].clone()]);
    assert_eq!(
        app.post_ok(&sync_path, ADMIN_TOKEN, &json!({}), 200).await,
        json!({"synced": 1})
    );
    let items = app.get_ok(&templates_path, &desk.token).await["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(
        (items[0]["name"].clone(), items[0]["language"].clone()),
        (json!("order_update"), json!("en_US"))
    );
    let (status, _) = answer_of(
        app.post(
            &format!("/api/v1/conversations/{id}/messages"),
            &desk.token,
            &json!({"template": template_request("order_update", "pt_BR", &["Bruno"])}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "pt_BR is no longer on the account");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(graph.sends().len(), 3);
}

// ---------- read receipts ----------

async fn opening_a_conversation_sends_one_read_receipt(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let (mut socket, id, workspace, _) = holding(&app, 51, "wamid.rr-1", now()).await;
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.rr-2", 51, "are you there?", now()))
            .await
            .status(),
        200
    );
    let inbound = |status: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            app.count(
                "messages",
                &format!("conversation_id = '{id}' AND direction = 'in' AND status = '{status}'"),
            )
            .await
        }
    };
    assert_eq!(inbound("received").await, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        graph.sends().is_empty(),
        "nothing is read before it is opened"
    );

    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    eventually(WAIT, || async { !graph.sends().is_empty() }).await;
    let receipt = graph.sends()[0].clone();
    assert_eq!(
        receipt.body,
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.rr-2"}),
        "one receipt, for the latest inbound message"
    );
    assert_eq!(receipt.path, format!("/v25.0/{PHONE_NUMBER_ID_1}/messages"));
    assert_eq!(receipt.authorization.as_deref(), Some(BEARER));
    assert_eq!(inbound("read").await, 2);
    assert_eq!(inbound("received").await, 0);
    eventually(WAIT, || async {
        app.count("outbox", "kind = 'read' AND status = 'sent'")
            .await
            == 1
    })
    .await;

    // Opened again with nothing new: nothing more for Meta.
    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(graph.sends().len(), 1);
    assert_eq!(app.count("outbox", "kind = 'read'").await, 1);
    socket.expect_none("error", Duration::from_millis(50)).await;

    // A new message, opened: one more receipt, for it.
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.rr-3", 51, "hello?", now()))
            .await
            .status(),
        200
    );
    assert_eq!(inbound("received").await, 1);
    socket
        .send(json!({"type": "open", "conversation_id": id}))
        .await;
    eventually(WAIT, || async { graph.sends().len() == 2 }).await;
    assert_eq!(graph.sends()[1].body["message_id"], "wamid.rr-3");
    assert_eq!(inbound("read").await, 3);

    // A conversation another agent holds is not this agent's to open.
    let other_team = app
        .create_team_with(&workspace, json!({"name": "Other", "auto_accept": true}))
        .await;
    create_channel(&app, &workspace, &other_team, PHONE_NUMBER_ID_2, None).await;
    let (_, other_token) = named_agent(
        &app,
        &workspace,
        "Omar Reis",
        "omar@replies.example",
        "agent",
        &[&other_team],
    )
    .await;
    let (mut other_socket, _) = app.connect_agent(&other_token).await;
    let body = String::from_utf8(text_body_at("wamid.rr-other-1", 52, "hi", now()))
        .unwrap()
        .replace(PHONE_NUMBER_ID_1, PHONE_NUMBER_ID_2);
    assert_eq!(app.post_webhook(body.as_bytes()).await.status(), 200);
    let theirs = other_socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    socket
        .send(json!({"type": "open", "conversation_id": theirs}))
        .await;
    // Another agent's conversation and no conversation at all are answered alike.
    let error = socket.expect("error").await;
    assert_eq!(
        (error["code"].clone(), error["conversation_id"].clone()),
        (json!("not_found"), json!(theirs))
    );
    let unknown = "0190f0f0-0000-7000-8000-000000000000";
    socket
        .send(json!({"type": "open", "conversation_id": unknown}))
        .await;
    assert_eq!(socket.expect("error").await["code"], "not_found");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 2);
    assert_eq!(
        app.count(
            "messages",
            &format!("conversation_id = '{theirs}' AND status = 'received'")
        )
        .await,
        1,
        "the other agent's customer is not marked read"
    );
}

// ---------- media ----------

fn image_body(wamid: &str, customer: usize, media_id: &str, caption: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "109876543210987", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": phone(customer)}],
        "messages": [{"from": phone(customer), "id": wamid, "timestamp": now().to_string(), "type": "image",
            "image": {"caption": caption, "mime_type": "image/jpeg",
                      "sha256": "173VRfCdinPCuZAzfIIR1wigTM2XSGJ2heT8ecwDgDk=", "id": media_id,
                      "url": format!("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}")}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn inbound_media_is_downloaded_and_served_to_those_who_may_see_it(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let desk = desk(&app, None, 61, "wamid.media-0", now()).await;
    let id = desk.conversation.clone();
    let media_id = "1127175522581514";
    let mut bytes = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
    ];
    bytes.extend((0..4000u32).map(|i| u8::try_from((i * 7919) % 251).unwrap()));
    bytes.extend([0xFF, 0xD9]);
    graph.add_media(media_id, "image/jpeg", &bytes);

    assert_eq!(
        app.post_webhook(&image_body(
            "wamid.media-1",
            61,
            media_id,
            "This is the damaged box"
        ))
        .await
        .status(),
        200
    );
    let message_id = app
        .scalar("messages", "id", "wamid = 'wamid.media-1'")
        .await
        .unwrap();
    let filter = format!("message_id = '{message_id}'");
    eventually(WAIT, || async {
        app.scalar("media_files", "status", &filter)
            .await
            .as_deref()
            == Some("stored")
    })
    .await;
    assert_eq!(
        app.scalar("messages", "kind", &format!("id = '{message_id}'"))
            .await
            .as_deref(),
        Some("image")
    );
    assert_eq!(
        app.scalar("media_files", "media_id", &filter)
            .await
            .as_deref(),
        Some(media_id)
    );
    assert_eq!(
        app.scalar("media_files", "sha256", &filter).await,
        Some({
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        })
    );
    // Meta was asked with the channel's token, for the URL and then the bytes.
    let requests = graph.requests();
    let lookup = requests
        .iter()
        .find(|r| r.path == format!("/v25.0/{media_id}"))
        .expect("the media URL was looked up");
    assert_eq!(lookup.authorization.as_deref(), Some(BEARER));
    let download = requests
        .iter()
        .find(|r| r.path == format!("/media-bytes/{media_id}"))
        .expect("the bytes were fetched");
    assert_eq!(download.authorization.as_deref(), Some(BEARER));

    let media_path = format!("/api/v1/conversations/{id}/messages/{message_id}/media");
    let response = app.get(&media_path, &desk.token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The workspace's admin sees it too; nobody outside the conversation's scope does.
    let (_, admin) = named_agent(
        &app,
        &desk.workspace,
        "Ada Admin",
        "ada@console.example",
        "admin",
        &[&desk.team],
    )
    .await;
    assert_eq!(app.get(&media_path, &admin).await.status(), 200);
    let billing = app.create_team(&desk.workspace, "Billing").await;
    let (_, other_team_agent) = named_agent(
        &app,
        &desk.workspace,
        "Bruno Costa",
        "bruno@console.example",
        "agent",
        &[&billing],
    )
    .await;
    let (_, other_team_supervisor) = named_agent(
        &app,
        &desk.workspace,
        "Carla Dias",
        "carla@console.example",
        "supervisor",
        &[&billing],
    )
    .await;
    let elsewhere = app.create_workspace("Elsewhere").await;
    let elsewhere_team = app.create_team(&elsewhere, "Support").await;
    let (_, outsider) = named_agent(
        &app,
        &elsewhere,
        "Dora Enes",
        "dora@elsewhere.example",
        "admin",
        &[&elsewhere_team],
    )
    .await;
    for (who, token) in [
        ("an agent of another team", &other_team_agent),
        ("a supervisor of another team", &other_team_supervisor),
        ("an admin of another workspace", &outsider),
    ] {
        let (status, body) = answer_of(app.get(&media_path, token).await).await;
        assert_eq!(status, 404, "{who}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{who}");
    }
    let text_message = app
        .scalar("messages", "id", "wamid = 'wamid.media-0'")
        .await
        .unwrap();
    let (status, _) = answer_of(
        app.get(
            &format!("/api/v1/conversations/{id}/messages/{text_message}/media"),
            &desk.token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "a message without media");

    // A media id Meta does not know is given up, and never served.
    assert_eq!(
        app.post_webhook(&image_body("wamid.media-2", 61, "998877665544", "blurry"))
            .await
            .status(),
        200
    );
    let lost = app
        .scalar("messages", "id", "wamid = 'wamid.media-2'")
        .await
        .unwrap();
    let lost_filter = format!("message_id = '{lost}'");
    eventually(WAIT, || async {
        app.scalar("media_files", "status", &lost_filter)
            .await
            .as_deref()
            == Some("failed")
    })
    .await;
    assert_eq!(app.scalar("media_files", "path", &lost_filter).await, None);
    let (status, _) = answer_of(
        app.get(
            &format!("/api/v1/conversations/{id}/messages/{lost}/media"),
            &desk.token,
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

// ---------- tags, notes, directory ----------

async fn tags_and_notes_are_scoped_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let desk = desk(&app, None, 71, "wamid.tags-1", now()).await;
    let id = desk.conversation.clone();
    let billing = app.create_team(&desk.workspace, "Billing").await;
    let (other_team_agent_id, other_team_agent) = named_agent(
        &app,
        &desk.workspace,
        "Bruno Costa",
        "bruno@console.example",
        "agent",
        &[&billing],
    )
    .await;
    let (_, other_team_supervisor) = named_agent(
        &app,
        &desk.workspace,
        "Carla Dias",
        "carla@console.example",
        "supervisor",
        &[&billing],
    )
    .await;
    let elsewhere = app.create_workspace("Elsewhere").await;
    let elsewhere_team = app.create_team(&elsewhere, "Support").await;
    let (outsider_id, outsider) = named_agent(
        &app,
        &elsewhere,
        "Dora Enes",
        "dora@elsewhere.example",
        "admin",
        &[&elsewhere_team],
    )
    .await;

    // Tags: trimmed, deduplicated ignoring case, first spelling kept.
    let tags_path = format!("/api/v1/conversations/{id}/tags");
    let (status, body) = answer_of(
        put(
            &app,
            &tags_path,
            &desk.token,
            &json!({"tags": [" vip", "VIP", "billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"tags": ["vip", "billing"]})));
    let conversation_path = format!("/api/v1/conversations/{id}");
    let tags_now = || async { app.get_ok(&conversation_path, &desk.token).await["tags"].clone() };
    assert_eq!(tags_now().await, json!(["vip", "billing"]));
    let many: Vec<String> = (0..21).map(|i| format!("tag-{i}")).collect();
    let (status, body) =
        answer_of(put(&app, &tags_path, &desk.token, &json!({"tags": many})).await).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("validation_failed"))
    );
    let twenty: Vec<String> = (0..20).map(|i| format!("tag-{i}")).collect();
    let (status, _) = answer_of(
        put(
            &app,
            &format!("/api/v1/conversations/{}/tags", desk.conversation),
            ADMIN_TOKEN,
            &json!({"tags": twenty}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "twenty tags are allowed");
    let (status, body) = answer_of(
        put(
            &app,
            &tags_path,
            &desk.token,
            &json!({"tags": [" vip", "VIP", "billing"]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"tags": ["vip", "billing"]})));

    // Notes.
    let notes_path = format!("/api/v1/conversations/{id}/notes");
    let first = app
        .post_ok(
            &notes_path,
            &desk.token,
            &json!({"text": "  Prefers e-mail.  "}),
            201,
        )
        .await;
    assert!(!first["id"].as_str().unwrap().is_empty());
    assert_eq!(first["author_id"], json!(desk.agent_id));
    assert_eq!(first["author_name"], "Ana Lima");
    assert_eq!(first["text"], "Prefers e-mail.");
    assert!(
        chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).is_ok(),
        "{first}"
    );
    let second = app
        .post_ok(
            &notes_path,
            &desk.token,
            &json!({"text": "Refund approved."}),
            201,
        )
        .await;
    let (status, _) = answer_of(
        app.post(&notes_path, &desk.token, &json!({"text": "   "}))
            .await,
    )
    .await;
    assert_eq!(status, 422, "an empty note");
    let listed = app.get_ok(&notes_path, &desk.token).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|n| (n["id"].clone(), n["text"].clone(), n["author_name"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                first["id"].clone(),
                json!("Prefers e-mail."),
                json!("Ana Lima")
            ),
            (
                second["id"].clone(),
                json!("Refund approved."),
                json!("Ana Lima")
            ),
        ]
    );

    // Both are in the audit, without the note's words.
    let audit = app
        .get_ok(&format!("/api/v1/conversations/{id}/audit"), &desk.token)
        .await;
    let events = audit["items"].as_array().unwrap();
    let of_kind = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let tag_changes = of_kind("tags_changed");
    assert_eq!(tag_changes.len(), 3, "{events:?}");
    assert_eq!(tag_changes[0]["agent_id"], json!(desk.agent_id));
    assert_eq!(tag_changes[0]["reason"]["tags"], json!(["vip", "billing"]));
    let notes_added = of_kind("note_added");
    assert_eq!(
        notes_added
            .iter()
            .map(|e| e["reason"]["note_id"].clone())
            .collect::<Vec<_>>(),
        vec![first["id"].clone(), second["id"].clone()]
    );
    assert!(
        notes_added
            .iter()
            .all(|e| e["agent_id"] == json!(desk.agent_id))
    );
    assert!(!audit.to_string().contains("Refund approved"));

    // Anyone who may not see the conversation gets 404 on all of it, and changes nothing.
    for (who, token) in [
        ("an agent of another team", &other_team_agent),
        ("a supervisor of another team", &other_team_supervisor),
        ("an admin of another workspace", &outsider),
    ] {
        let statuses = [
            put(&app, &tags_path, token, &json!({"tags": ["spam"]}))
                .await
                .status()
                .as_u16(),
            app.post(&notes_path, token, &json!({"text": "sneaky"}))
                .await
                .status()
                .as_u16(),
            app.get(&notes_path, token).await.status().as_u16(),
            app.get(&conversation_path, token).await.status().as_u16(),
            app.get(&format!("/api/v1/conversations/{id}/audit"), token)
                .await
                .status()
                .as_u16(),
        ];
        assert_eq!(statuses, [404; 5], "{who}");
    }
    assert_eq!(tags_now().await, json!(["vip", "billing"]));
    assert_eq!(
        app.get_ok(&notes_path, &desk.token).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The directory: the caller's workspace's teams and people, by name, without e-mails.
    let directory = app.get_ok("/api/v1/directory", &desk.token).await;
    assert_eq!(directory["workspace_id"], json!(desk.workspace));
    let mut teams: Vec<(String, String)> = directory["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    teams.sort();
    let mut expected_teams = vec![
        (desk.team.clone(), "Support".to_owned()),
        (billing.clone(), "Billing".to_owned()),
    ];
    expected_teams.sort();
    assert_eq!(teams, expected_teams);
    let agents = directory["agents"].as_array().unwrap();
    let mut names: Vec<&str> = agents.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["Ana Lima", "Bruno Costa", "Carla Dias"]);
    let ana = agents.iter().find(|a| a["name"] == "Ana Lima").unwrap();
    assert_eq!(ana["id"], json!(desk.agent_id));
    assert_eq!(ana["role"], "agent");
    assert_eq!(ana["team_ids"], json!([desk.team]));
    let bruno = agents.iter().find(|a| a["name"] == "Bruno Costa").unwrap();
    assert_eq!(bruno["id"], json!(other_team_agent_id));
    assert_eq!(bruno["team_ids"], json!([billing]));
    assert!(agents.iter().all(|a| a.get("email").is_none()));
    let text = directory.to_string();
    assert!(!text.contains('@'), "no e-mail addresses: {text}");
    assert!(!text.contains(&outsider_id));

    let theirs = app.get_ok("/api/v1/directory", &outsider).await;
    assert_eq!(theirs["workspace_id"], json!(elsewhere));
    assert_eq!(
        theirs["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].clone())
            .collect::<Vec<_>>(),
        vec![json!("Dora Enes")]
    );
    assert_eq!(app.get("/api/v1/directory", "").await.status(), 401);
}

// ---------- the sender: ordering, pacing, exactly once ----------

/// Settings for a sender of the test's own, sending to `graph`.
fn sender_settings(
    graph: &FakeGraph,
    number: Budget,
    customer: Budget,
    batch: u64,
) -> SenderSettings {
    SenderSettings {
        graph_url: graph.url.clone(),
        batch,
        claim_for: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_attempts: 4,
        concurrency: 16,
        number_budget: number,
        customer_budget: customer,
    }
}

/// A running sender and how to stop it.
struct RunningSender {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningSender {
    /// Starts a sender on its own connection to the app's database, with the app's key.
    async fn start(
        app: &TestApp,
        settings: SenderSettings,
        redis: Option<(redis::aio::ConnectionManager, &str)>,
    ) -> RunningSender {
        let db = waos_web::testing::connect_database(&app.database.url, 8).await;
        let key = waos_web::startup::secret_key(&app.settings).unwrap();
        let sealer = waos_engine::crypto::Sealer::from_hex(&key).unwrap();
        let sender = Sender::new(db, sealer, settings).unwrap();
        let sender = match redis {
            Some((connection, prefix)) => sender.with_redis(connection, prefix),
            None => sender,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sender.run(stopped));
        RunningSender { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the sender stops when told")
            .unwrap();
    }
}

/// Deletes every Redis key under a prefix when dropped (also when the test fails).
struct RedisPrefix(String);

impl RedisPrefix {
    fn keys(&self) -> Vec<String> {
        let mut redis = redis::Client::open(redis_url())
            .and_then(|client| client.get_connection())
            .unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut redis)
            .unwrap()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut redis) =
            redis::Client::open(redis_url()).and_then(|client| client.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.0))
                .query(&mut redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut redis);
            }
        }
    }
}

async fn replies_to_one_customer_arrive_in_the_order_sent(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let (_socket, id, _, token) = holding(&app, 81, "wamid.order-1", now()).await;
    // More than the customer's burst (5), so that some wait for their slot.
    let texts: Vec<String> = (1..=7).map(|i| format!("part {i} of 7")).collect();
    for text in &texts {
        app.post_ok(
            &format!("/api/v1/conversations/{id}/messages"),
            &token,
            &json!({"text": text}),
            201,
        )
        .await;
    }
    eventually(WAIT, || async { graph.sends().len() == texts.len() }).await;
    assert_eq!(sent_texts(&graph), texts);
    assert!(graph.sends().iter().all(|s| s.body["to"] == phone(81)));
    eventually(WAIT, || async {
        app.count("messages", "direction = 'out' AND status = 'accepted'")
            .await
            == 7
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(graph.sends().len(), texts.len(), "each sent once");
}

async fn queued_replies_survive_restarts_and_dead_claims_exactly_once(backend: Backend) {
    let (mut app, graph) = app_with_graph(backend).await;
    let (_socket, id, _, token) = holding(&app, 91, "wamid.restart-1", now()).await;
    // The app's own sender stops: from here on only the test's senders run.
    drop(app.background.take());
    let reply = |text: &'static str| {
        let (app, token, id) = (&app, token.clone(), id.clone());
        async move {
            app.post_ok(
                &format!("/api/v1/conversations/{id}/messages"),
                &token,
                &json!({"text": text}),
                201,
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let settings = || {
        sender_settings(
            &graph,
            Budget::per_second(1000, 100),
            Budget {
                interval: Duration::from_millis(10),
                burst: 10,
            },
            50,
        )
    };

    // Queued while no sender runs: nothing goes out.
    for text in ["one", "two", "three"] {
        reply(text).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(graph.sends().is_empty(), "no sender runs");
    assert_eq!(app.count("outbox", "status = 'pending'").await, 3);

    // A sender starts: each goes out once, in order.
    let first = RunningSender::start(&app, settings(), None).await;
    eventually(WAIT, || async {
        app.count("outbox", "status = 'sent'").await == 3
    })
    .await;
    assert_eq!(sent_texts(&graph), ["one", "two", "three"]);
    first.stop().await;

    // Stopped: more queue up; one is claimed by a sender that died (its claim has lapsed),
    // one by a sender still alive (its claim runs 2 s more).
    let four = reply("four").await;
    reply("five").await;
    reply("six").await;
    let seven = reply("seven").await;
    let claim = |message_id: String, by: &'static str, until: chrono::DateTime<chrono::Utc>| {
        let db = app.db.clone();
        async move {
            let updated = outbox::Entity::update_many()
                .col_expr(outbox::Column::ClaimedBy, Expr::value(by))
                .col_expr(outbox::Column::ClaimedUntil, Expr::value(until))
                .filter(outbox::Column::MessageId.eq(message_id))
                .exec(&db)
                .await
                .unwrap();
            assert_eq!(updated.rows_affected, 1);
        }
    };
    claim(
        four.clone(),
        "dead-sender",
        chrono::Utc::now() - chrono::Duration::seconds(60),
    )
    .await;
    let lease = Duration::from_secs(2);
    let lease_ends = Instant::now() + lease;
    claim(
        seven.clone(),
        "busy-sender",
        chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 3, "the stopped sender sends nothing");

    let second = RunningSender::start(&app, settings(), None).await;
    eventually(WAIT, || async { graph.sends().len() >= 6 }).await;
    assert_eq!(
        sent_texts(&graph)[3..6],
        ["four", "five", "six"],
        "the dead sender's row is taken over, in order"
    );
    eventually(WAIT, || async { graph.sends().len() >= 7 }).await;
    let sends = message_sends(&graph);
    let late = sends
        .iter()
        .find(|s| s.body["text"]["body"] == "seven")
        .unwrap();
    assert!(
        late.at + Duration::from_millis(50) >= lease_ends,
        "a live claim is respected until it lapses ({:?} early)",
        lease_ends.saturating_duration_since(late.at)
    );
    eventually(WAIT, || async {
        app.count("outbox", "status = 'sent'").await == 7
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.stop().await;
    assert_eq!(
        sent_texts(&graph),
        ["one", "two", "three", "four", "five", "six", "seven"],
        "each exactly once"
    );
    assert_eq!(app.count("outbox", "attempts = 1").await, 7);
    assert_eq!(
        app.count("messages", "direction = 'out' AND status = 'accepted'")
            .await,
        7
    );
    let four_claimed_by = app
        .scalar("outbox", "claimed_by", &format!("message_id = '{four}'"))
        .await;
    assert_ne!(four_claimed_by.as_deref(), Some("dead-sender"));
}

/// Pacing is one decision per send: a send the number's budget refuses spends nothing of the
/// customer's. Two customers with one reply each, on a number allowed 1 message a second: the
/// second reply waits about a second (the number), never the customer's 6 s interval.
async fn a_customer_waiting_for_the_number_keeps_their_own_budget(backend: Backend) {
    let graph = FakeGraph::start().await;
    let url = graph.url.clone();
    let app = spawn_app_with(backend, move |settings, _| {
        settings.meta.graph_url = url;
        settings.outbound.number_rate_per_sec = 1;
        settings.outbound.number_burst = 1;
        settings.outbound.customer_interval_ms = 6000;
        settings.outbound.customer_burst = 1;
    })
    .await;
    let mut desk = desk(&app, None, 101, "wamid.budget-a", now()).await;
    assert_eq!(
        app.post_webhook(&text_body_at("wamid.budget-b", 102, "hi", now()))
            .await
            .status(),
        200
    );
    let second = desk.socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (conversation, text) in [(&desk.conversation, "for A"), (&second, "for B")] {
        app.post_ok(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &desk.token,
            &json!({"text": text}),
            201,
        )
        .await;
    }
    eventually(Duration::from_secs(15), || async {
        graph.sends().len() == 2
    })
    .await;
    let sends = graph.sends();
    let to: HashSet<Value> = sends.iter().map(|s| s.body["to"].clone()).collect();
    assert_eq!(to, HashSet::from([json!(phone(101)), json!(phone(102))]));
    let gap = sends[1].at - sends[0].at;
    assert!(
        gap >= Duration::from_millis(700),
        "the number's budget (1/s) spaces them: {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(3),
        "the second customer's only reply waited {gap:?}: the number's refusal spent the \
         customer's budget"
    );
}

on_both_backends!(
    a_customer_waiting_for_the_number_keeps_their_own_budget,
    templates_are_synced_checked_and_sent_outside_the_window,
    opening_a_conversation_sends_one_read_receipt,
    inbound_media_is_downloaded_and_served_to_those_who_may_see_it,
    tags_and_notes_are_scoped_and_audited,
    replies_to_one_customer_arrive_in_the_order_sent,
    queued_replies_survive_restarts_and_dead_claims_exactly_once,
);

/// How late a send may arrive after its slot was granted, on a loaded test machine.
const STALL: Duration = Duration::from_millis(400);

/// The worst window over budget among sorted `times` (seconds): (sends, window, excess over
/// `rate × window + burst + slack`), or `None` when every window is within it.
fn over_budget(times: &[f64], rate: u32, burst: u32, slack: f64) -> Option<(usize, f64, f64)> {
    let mut worst: Option<(usize, f64, f64)> = None;
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let window = times[j] - times[i];
            let count = j - i + 1;
            let allowed = f64::from(rate) * window + f64::from(burst) + slack;
            let excess = f64::from(u32::try_from(count).unwrap()) - allowed;
            if excess > 0.0 && worst.is_none_or(|(_, _, e)| excess > e) {
                worst = Some((count, window, excess));
            }
        }
    }
    worst
}

/// Records every slot the shared budget grants: Redis's time (seconds) of each write of a
/// number's cell under `prefix`, which the pacing script makes only when it grants a send
/// (seen through MONITOR, so the times are the server's, whatever this thread's delays).
async fn watch_grants(prefix: &str) -> (Arc<Mutex<Vec<f64>>>, JoinHandle<()>) {
    use futures_util::StreamExt;
    let monitor = redis::Client::open(redis_url())
        .unwrap()
        .get_async_monitor()
        .await
        .unwrap();
    let needle = format!("lua] \"SET\" \"{prefix}pace:number:");
    let grants: Arc<Mutex<Vec<f64>>> = Arc::default();
    let task = tokio::spawn({
        let grants = grants.clone();
        async move {
            let mut lines = monitor.into_on_message::<String>();
            while let Some(line) = lines.next().await {
                if line.contains(&needle)
                    && let Some(at) = line.split(' ').next().and_then(|t| t.parse().ok())
                {
                    grants.lock().unwrap().push(at);
                }
            }
        }
    });
    (grants, task)
}

/// Two senders share one outbox and, through Redis, one number's budget: every reply goes out
/// exactly once, and no window of time holds more sends than the budget allows. (Postgres and
/// Redis only: shared pacing is what Redis is for.)
#[actix_web::test]
async fn two_senders_share_one_number_budget_postgres() {
    const RATE: u32 = 20;
    const BURST: u32 = 5;
    const REPLIES: usize = 60;
    // The senders run on this thread: their warnings (a fall back to in-process pacing) show
    // in the output of a failure.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("waos_workers=warn")
            .finish(),
    );
    let graph = FakeGraph::start().await;
    // The app's sender polls once at start (nothing is queued then), then sleeps for an hour;
    // its Graph URL stays unreachable, so a stray send of its own could never reach the fake.
    let mut app = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.outbound.poll_interval_ms = 3_600_000;
    })
    .await;
    let workspace = app.create_workspace("Pacing").await;
    let team = app.create_team(&workspace, "Support").await;
    let channel = create_channel(&app, &workspace, &team, PHONE_NUMBER_ID_1, None).await;
    let bodies: Vec<Vec<u8>> = (0..REPLIES)
        .map(|i| text_body_at(&format!("wamid.pace-{i}"), 200 + i, "hi", now()))
        .collect();
    let app_ref = &app;
    let statuses = futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| async move { app_ref.post_webhook(body).await.status().as_u16() }),
    )
    .await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // And then it stops for good.
    drop(app.background.take());

    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT c.id AS id, k.phone AS phone FROM conversations c \
             JOIN contacts k ON k.id = c.contact_id"
                .to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), REPLIES);
    let mut recipients = HashSet::new();
    for row in rows {
        let conversation: String = row.try_get("", "id").unwrap();
        let phone: String = row.try_get("", "phone").unwrap();
        let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": phone,
                          "type": "text", "text": {"preview_url": false, "body": format!("Hello {phone}")}});
        waos_engine::outbound::queue_reply(
            &app.db,
            waos_engine::outbound::ReplyTarget {
                conversation_id: waos_engine::ids::ConversationId::parse(&conversation).unwrap(),
                workspace_id: &workspace,
                channel_id: &channel,
                phone_number_id: PHONE_NUMBER_ID_1,
                automated: false,
            },
            "text",
            Some(format!("Hello {phone}")),
            body,
        )
        .await
        .unwrap();
        recipients.insert(phone);
    }
    assert_eq!(recipients.len(), REPLIES);

    let prefix = RedisPrefix(format!(
        "waos:test:pacing:{}:",
        uuid::Uuid::new_v4().simple()
    ));
    let (grants, monitor) = watch_grants(&prefix.0).await;
    let mut senders = Vec::new();
    for _ in 0..2 {
        let connection =
            redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
                .await
                .unwrap();
        let settings = sender_settings(
            &graph,
            Budget::per_second(RATE, BURST),
            Budget::per_second(10, 5),
            10,
        );
        senders.push(RunningSender::start(&app, settings, Some((connection, &prefix.0))).await);
    }
    eventually(WAIT, || async { !graph.sends().is_empty() }).await;
    assert!(
        !prefix.keys().is_empty(),
        "the budget lives in Redis under the shared prefix"
    );
    eventually(Duration::from_secs(30), || async {
        app.count("outbox", "status = 'sent'").await == i64::try_from(REPLIES).unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sender in senders {
        sender.stop().await;
    }

    // Exactly once.
    let sends = graph.sends();
    assert_eq!(sends.len(), REPLIES);
    let to: HashSet<String> = sends
        .iter()
        .map(|s| s.body["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(to, recipients);
    assert_eq!(
        app.count("outbox", "status = 'sent' AND attempts = 1")
            .await,
        i64::try_from(REPLIES).unwrap()
    );
    assert_eq!(
        app.count("messages", "direction = 'out' AND status = 'accepted'")
            .await,
        i64::try_from(REPLIES).unwrap()
    );
    // Both senders took part.
    let claimants = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT DISTINCT claimed_by AS claimant FROM outbox".to_owned(),
        ))
        .await
        .unwrap();
    assert_eq!(claimants.len(), 2, "both senders sent some");

    // Paced where the budget is kept: Redis granted exactly one slot per send, and in every
    // window W between two grants (Redis's own clock) at most RATE × W + BURST (+1 for timing).
    eventually(WAIT, || async { grants.lock().unwrap().len() >= REPLIES }).await;
    monitor.abort();
    let mut granted = grants.lock().unwrap().clone();
    granted.sort_by(f64::total_cmp);
    assert_eq!(
        granted.len(),
        REPLIES,
        "one slot of the shared budget per send"
    );
    assert_eq!(
        over_budget(&granted, RATE, BURST, 1.0),
        None,
        "Redis granted over budget"
    );

    // And as Meta saw them. Arrival times add the test machine's scheduling delays (a slot
    // granted before a stall of this thread is sent after it, with the next ones), so the
    // window here is widened by STALL; two unshared budgets (twice the rate) still fail it.
    let mut times: Vec<Instant> = sends.iter().map(|s| s.at).collect();
    times.sort();
    let arrivals: Vec<f64> = times
        .iter()
        .map(|t| (*t - times[0]).as_secs_f64())
        .collect();
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    let stall = f64::from(RATE) * STALL.as_secs_f64();
    assert_eq!(
        over_budget(&arrivals, RATE, BURST, 1.0 + stall),
        None,
        "sends arrived over budget; gaps between arrivals (ms): {gaps:?}"
    );
    let total = arrivals[arrivals.len() - 1];
    let least =
        f64::from(u32::try_from(REPLIES).unwrap() - BURST) / f64::from(RATE) - STALL.as_secs_f64();
    assert!(
        total >= least,
        "{REPLIES} sends took only {total:.2}s (at least {least:.2}s at {RATE}/s)"
    );
}
