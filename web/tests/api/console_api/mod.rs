//! What the agent console needs beside routing: Meta's templates (synced, checked, sent outside
//! the 24-hour window), read receipts on `open`, inbound media downloaded and served to those
//! who may see it, tags and internal notes, the workspace directory, and the sender's pacing
//! and exactly-once delivery when several senders (or restarts) share one outbox.
//!
//! - [`templates`]: synced from Meta, checked, sent outside the window.
//! - [`read_receipts`]: one read receipt when a conversation is opened.
//! - [`media`]: inbound media downloaded and served to those who may see it.
//! - [`tags_and_notes`]: tags, internal notes and the workspace directory, scoped and audited.
//! - [`sender`]: ordering, pacing and exactly-once delivery across senders and restarts.

mod media;
mod read_receipts;
mod sender;
mod tags_and_notes;
mod templates;

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
