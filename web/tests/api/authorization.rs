//! The authorization matrix: every operation of the OpenAPI document, as every kind of caller,
//! gets exactly the answer this table says; so does opening each socket, and every client
//! frame. An operation of the document missing from the table fails the test, and so does a
//! row of the table the document no longer has.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, AgentSocket, Backend, PASSWORD, TestApp, VERIFY_TOKEN, connect_socket_at,
    spawn_app,
};

use crate::concurrency::text_body;

/// The callers, in the order of every row's statuses.
const ACTORS: [&str; 8] = [
    "nobody",
    "agent",
    "supervisor",
    "admin",
    "supervisor token",
    "admin token",
    "bootstrap",
    "outsider",
];

/// `METHOD path` → the status each of [`ACTORS`] gets. "outsider" is the admin of another
/// workspace: what is not its own is not found.
const MATRIX: &[(&str, [u16; 8])] = &[
    // Open to all: Meta's signature or nothing guards these.
    ("GET /webhooks/whatsapp", [200; 8]),
    ("POST /webhooks/whatsapp", [200; 8]),
    ("GET /healthz", [200; 8]),
    ("GET /readyz", [200; 8]),
    ("GET /metrics", [200; 8]),
    // Which node owns which workspace: the installation's.
    (
        "GET /api/v1/cluster",
        [401, 403, 403, 403, 403, 403, 200, 403],
    ),
    ("POST /api/v1/auth/login", [200; 8]),
    // Sessions.
    (
        "POST /api/v1/auth/ws-ticket",
        [401, 200, 200, 200, 403, 403, 403, 200],
    ),
    (
        "POST /api/v1/auth/logout",
        [401, 204, 204, 204, 204, 204, 204, 204],
    ),
    // People change their own password; tokens have none.
    (
        "POST /api/v1/auth/password",
        [401, 204, 204, 204, 403, 403, 403, 204],
    ),
    // First run: whether to set up is no secret; setting up is the bootstrap token's.
    ("GET /api/v1/setup", [200; 8]),
    (
        "POST /api/v1/setup",
        [401, 403, 403, 403, 403, 403, 201, 403],
    ),
    // Administration.
    (
        "POST /api/v1/workspaces",
        [401, 403, 403, 403, 403, 403, 201, 403],
    ),
    (
        "GET /api/v1/workspaces/{id}",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/teams",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/teams",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/teams/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    // Time: configuration like teams (read by members, changed by admins).
    (
        "POST /api/v1/workspaces/{workspace_id}/calendars",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/calendars",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/calendars/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/calendars/{id}/schedule",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/sla-policies",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/sla-policies",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/sla-policies/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    // Automation: configuration too; the dry run changes nothing, so members may run it.
    (
        "POST /api/v1/workspaces/{workspace_id}/automations",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/automations",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/automations/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    // Each caller deletes a rule of its own (made for it), so a second delete is not a 404.
    (
        "DELETE /api/v1/workspaces/{workspace_id}/automations/{id}",
        [401, 403, 403, 204, 403, 204, 204, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/automations/{id}/test",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    // Canned replies: admins keep them, members list them.
    (
        "POST /api/v1/workspaces/{workspace_id}/canned-replies",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/canned-replies",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/canned-replies/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    (
        "DELETE /api/v1/workspaces/{workspace_id}/canned-replies/{id}",
        [401, 403, 403, 204, 403, 204, 204, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/channels",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/channels",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/channels/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    // Meta is unreachable from the test app: those who may sync get 502.
    (
        "POST /api/v1/workspaces/{workspace_id}/channels/{id}/templates/sync",
        [401, 403, 403, 502, 403, 502, 502, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/agents",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/agents",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "PATCH /api/v1/workspaces/{workspace_id}/agents/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    (
        "POST /api/v1/workspaces/{workspace_id}/api-tokens",
        [401, 403, 403, 201, 403, 403, 201, 404],
    ),
    (
        "GET /api/v1/workspaces/{workspace_id}/api-tokens",
        [401, 403, 403, 200, 403, 403, 200, 404],
    ),
    (
        "DELETE /api/v1/workspaces/{workspace_id}/api-tokens/{id}",
        [401, 403, 403, 204, 403, 403, 204, 404],
    ),
    // Conversations: the waiting one is in the agent's team, so every member sees it.
    (
        "GET /api/v1/conversations",
        [401, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        "GET /api/v1/conversations/{id}",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/conversations/{id}/messages",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/conversations/{id}/audit",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    // Only people hold conversations; nobody holds this one yet.
    (
        "POST /api/v1/conversations/{id}/messages",
        [401, 409, 409, 409, 403, 403, 403, 404],
    ),
    (
        "POST /api/v1/conversations/{id}/media",
        [401, 409, 409, 409, 403, 403, 403, 404],
    ),
    // The body names no agent of the workspace: those who may assign are told so.
    (
        "POST /api/v1/conversations/{id}/assign",
        [401, 403, 404, 404, 404, 404, 404, 404],
    ),
    (
        "PUT /api/v1/conversations/{id}/tags",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/conversations/{id}/notes",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "POST /api/v1/conversations/{id}/notes",
        [401, 201, 201, 201, 201, 201, 201, 404],
    ),
    (
        "GET /api/v1/conversations/{id}/canned-replies",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/conversations/{id}/templates",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    // A text message has no media: 404 for those who may see it too.
    (
        "GET /api/v1/conversations/{id}/messages/{message_id}/media",
        [401, 404, 404, 404, 404, 404, 404, 404],
    ),
    (
        "GET /api/v1/directory",
        [401, 200, 200, 200, 200, 200, 403, 200],
    ),
    // People's data.
    (
        "GET /api/v1/contacts",
        [401, 403, 200, 200, 200, 200, 200, 200],
    ),
    // Finding: a contact through a conversation the caller may see; words in such messages.
    (
        "GET /api/v1/contacts/{id}",
        [401, 200, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/search",
        [401, 200, 200, 200, 200, 200, 200, 200],
    ),
    // Reports (of the world's workspace, named): a supervisor's of its teams.
    (
        "GET /api/v1/reports/summary",
        [401, 403, 200, 200, 200, 200, 200, 404],
    ),
    (
        "GET /api/v1/reports/daily",
        [401, 403, 200, 200, 200, 200, 200, 404],
    ),
    (
        "POST /api/v1/data-requests",
        [401, 403, 403, 201, 403, 201, 201, 404],
    ),
    (
        "GET /api/v1/data-requests",
        [401, 403, 403, 200, 403, 200, 200, 200],
    ),
    (
        "GET /api/v1/data-requests/{id}",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
    (
        "GET /api/v1/data-requests/{id}/export",
        [401, 403, 403, 200, 403, 200, 200, 404],
    ),
];

/// The ids a request's path and body are filled from.
struct World {
    workspace: String,
    team: String,
    channel: String,
    agent: String,
    conversation: String,
    message: String,
    contact: String,
    data_request: String,
    spare_token: String,
    calendar: String,
    sla_policy: String,
    automation: String,
    /// One rule per caller, for the deletes.
    spare_automations: Vec<String>,
    canned_reply: String,
    spare_canned_replies: Vec<String>,
    /// Bearer tokens of [`ACTORS`] (none for "nobody").
    tokens: Vec<Option<String>>,
}

async fn build_world(app: &TestApp) -> World {
    let workspace = app.create_workspace("Acme").await;
    let team = app.create_team(&workspace, "Support").await;
    let channel = app
        .create_channel(&workspace, &team, waos_web::testing::PHONE_NUMBER_ID_1)
        .await;
    let patched = app
        .patch(
            &format!("/api/v1/workspaces/{workspace}/channels/{channel}"),
            ADMIN_TOKEN,
            &json!({"waba_id": "102290129340398"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    // Capacity 0: nobody is offered the conversation when their socket opens, so it stays
    // waiting, seen by all, held by none.
    let (agent, agent_token) = app
        .create_agent_with(&workspace, "agent@acme.example", "agent", &[&team], 0)
        .await;
    let (_, supervisor_token) = app
        .create_agent_with(&workspace, "lead@acme.example", "supervisor", &[&team], 0)
        .await;
    let (_, admin_token) = app
        .create_agent_with(&workspace, "admin@acme.example", "admin", &[&team], 0)
        .await;
    let tokens_path = format!("/api/v1/workspaces/{workspace}/api-tokens");
    let token = |role: &'static str| {
        let path = tokens_path.clone();
        async move {
            app.post_ok(
                &path,
                ADMIN_TOKEN,
                &json!({"name": role, "role": role}),
                201,
            )
            .await["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let supervisor_api = token("supervisor").await;
    let admin_api = token("admin").await;
    let spare = app
        .post_ok(
            &tokens_path,
            ADMIN_TOKEN,
            &json!({"name": "spare", "role": "admin"}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let calendar = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/calendars"),
            ADMIN_TOKEN,
            &json!({"name": "Office", "time_zone": "Europe/London", "weekly": {"mon": [["09:00", "17:00"]]}}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sla_policy = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/sla-policies"),
            ADMIN_TOKEN,
            &json!({"name": "Gold", "first_response_secs": 600}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rule = |name: String| {
        let path = format!("/api/v1/workspaces/{workspace}/automations");
        async move {
            app.post_ok(
                &path,
                ADMIN_TOKEN,
                &json!({"name": name, "trigger": {"event": "conversation_resolved"},
                        "actions": [{"type": "add_tags", "tags": ["done"]}]}),
                201,
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let automation = rule("Done".into()).await;
    let mut spare_automations = Vec::new();
    for n in 0..ACTORS.len() {
        spare_automations.push(rule(format!("Spare {n}")).await);
    }
    let canned = |shortcut: String| {
        let path = format!("/api/v1/workspaces/{workspace}/canned-replies");
        async move {
            app.post_ok(
                &path,
                ADMIN_TOKEN,
                &json!({"shortcut": shortcut, "text": "Hello {{contact.name}}"}),
                201,
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let canned_reply = canned("hello".into()).await;
    let mut spare_canned_replies = Vec::new();
    for n in 0..ACTORS.len() {
        spare_canned_replies.push(canned(format!("spare-{n}")).await);
    }
    let elsewhere = app.create_workspace("Elsewhere").await;
    let (_, outsider_token) = app
        .create_agent(&elsewhere, "admin@elsewhere.example", "admin", &[])
        .await;

    // A customer writes; nobody is online, so the conversation waits in the team.
    assert_eq!(
        app.post_webhook(&text_body("wamid.matrix-1", 1, "hello"))
            .await
            .status(),
        200
    );
    let listed = app.get_ok("/api/v1/conversations", ADMIN_TOKEN).await;
    let conversation = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let messages = app
        .get_ok(
            &format!("/api/v1/conversations/{conversation}/messages"),
            ADMIN_TOKEN,
        )
        .await;
    let message = messages["items"][0]["id"].as_str().unwrap().to_owned();
    let contacts = app
        .get_ok("/api/v1/contacts?phone=447700900001", ADMIN_TOKEN)
        .await;
    let contact = contacts["items"][0]["id"].as_str().unwrap().to_owned();
    let request = app
        .post_ok(
            "/api/v1/data-requests",
            ADMIN_TOKEN,
            &json!({"contact_id": contact, "kind": "access"}),
            201,
        )
        .await;
    World {
        workspace,
        team,
        channel,
        agent,
        conversation,
        message,
        contact,
        data_request: request["id"].as_str().unwrap().to_owned(),
        spare_token: spare,
        calendar,
        sla_policy,
        automation,
        spare_automations,
        canned_reply,
        spare_canned_replies,
        tokens: vec![
            None,
            Some(agent_token),
            Some(supervisor_token),
            Some(admin_token),
            Some(supervisor_api),
            Some(admin_api),
            Some(ADMIN_TOKEN.to_owned()),
            Some(outsider_token),
        ],
    }
}

/// The path with its parameters filled, and its query.
fn concrete_path(world: &World, operation: &str, actor: usize) -> String {
    let (method, path) = operation.split_once(' ').unwrap();
    let id = if path.contains("/automations/") && method == "DELETE" {
        &world.spare_automations[actor]
    } else if path.contains("/automations/") {
        &world.automation
    } else if path.contains("/canned-replies/") && method == "DELETE" {
        &world.spare_canned_replies[actor]
    } else if path.contains("/workspaces/") && path.contains("/canned-replies/") {
        &world.canned_reply
    } else if path.contains("/teams/") {
        &world.team
    } else if path.contains("/channels/") {
        &world.channel
    } else if path.contains("/agents/") {
        &world.agent
    } else if path.contains("/api-tokens/") {
        &world.spare_token
    } else if path.contains("/calendars/") {
        &world.calendar
    } else if path.contains("/sla-policies/") {
        &world.sla_policy
    } else if path.contains("/conversations/") {
        &world.conversation
    } else if path.contains("/contacts/") {
        &world.contact
    } else if path.contains("/data-requests/") {
        &world.data_request
    } else {
        &world.workspace
    };
    let filled = path
        .replace("{workspace_id}", &world.workspace)
        .replace("{message_id}", &world.message)
        .replace("{id}", id);
    match operation {
        "GET /webhooks/whatsapp" => {
            format!("{filled}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42")
        }
        "GET /api/v1/contacts" => format!("{filled}?phone=447700900001"),
        "GET /api/v1/search" => format!("{filled}?q=hello"),
        "GET /api/v1/reports/summary" | "GET /api/v1/reports/daily" => {
            format!("{filled}?workspace_id={}", world.workspace)
        }
        _ => filled,
    }
}

/// A body that passes validation, made different per caller where it must be unique.
fn body(world: &World, operation: &str, actor: usize) -> Option<Value> {
    let n = actor;
    Some(match operation {
        "POST /api/v1/auth/login" => json!({"email": "agent@acme.example", "password": PASSWORD}),
        "POST /api/v1/workspaces" => json!({"name": format!("New {n}")}),
        // The same password again: it stays what every other row signs in with.
        "POST /api/v1/auth/password" => json!({"current": PASSWORD, "new": PASSWORD}),
        "POST /api/v1/setup" => json!({"workspace": {"name": format!("Set up {n}")},
            "admin": {"name": "First", "email": format!("first{n}@setup.example"), "password": PASSWORD}}),
        "PATCH /api/v1/workspaces/{id}" => json!({"name": "Acme"}),
        "POST /api/v1/workspaces/{workspace_id}/teams" => json!({"name": format!("Team {n}")}),
        "PATCH /api/v1/workspaces/{workspace_id}/teams/{id}" => json!({"offer_timeout_secs": 30}),
        "POST /api/v1/workspaces/{workspace_id}/channels" => json!({
            "phone_number_id": format!("20000000000{n}"), "display_phone_number": "+1 555 0199",
            "access_token": "EAAG-matrix", "team_id": world.team}),
        "POST /api/v1/workspaces/{workspace_id}/calendars" => json!({"name": format!("Hours {n}"),
            "time_zone": "Asia/Dubai", "weekly": {"sun": [["08:00", "16:00"]]}}),
        "PATCH /api/v1/workspaces/{workspace_id}/calendars/{id}" => json!({"name": "Office"}),
        "POST /api/v1/workspaces/{workspace_id}/sla-policies" => {
            json!({"name": format!("Policy {n}"), "resolution_secs": 86400})
        }
        "PATCH /api/v1/workspaces/{workspace_id}/sla-policies/{id}" => json!({"name": "Gold"}),
        "POST /api/v1/workspaces/{workspace_id}/automations" => json!({"name": format!("Rule {n}"),
            "trigger": {"event": "message_received"}, "actions": [{"type": "add_tags", "tags": ["x"]}]}),
        "PATCH /api/v1/workspaces/{workspace_id}/automations/{id}" => json!({"name": "Renamed"}),
        "POST /api/v1/workspaces/{workspace_id}/canned-replies" => {
            json!({"shortcut": format!("matrix-{n}"), "text": "Thanks!"})
        }
        "PATCH /api/v1/workspaces/{workspace_id}/canned-replies/{id}" => json!({"text": "Hi!"}),
        "POST /api/v1/workspaces/{workspace_id}/automations/{id}/test" => json!({
            "message": {"text": "hello"}, "channel_id": world.channel, "contact_phone": "447700900001"}),
        "PATCH /api/v1/workspaces/{workspace_id}/channels/{id}" => {
            json!({"display_phone_number": "+1 555 0100"})
        }
        "POST /api/v1/workspaces/{workspace_id}/agents" => json!({"name": format!("New {n}"),
            "email": format!("new{n}@acme.example"), "password": PASSWORD, "role": "agent"}),
        "PATCH /api/v1/workspaces/{workspace_id}/agents/{id}" => json!({"capacity": 0}),
        "POST /api/v1/workspaces/{workspace_id}/api-tokens" => {
            json!({"name": format!("Token {n}"), "role": "supervisor"})
        }
        "POST /api/v1/conversations/{id}/messages" => json!({"text": "hello"}),
        "POST /api/v1/conversations/{id}/assign" => {
            json!({"agent_id": "0191e0a4-0000-7000-8000-000000000000"})
        }
        "PUT /api/v1/conversations/{id}/tags" => json!({"tags": ["vip"]}),
        "POST /api/v1/conversations/{id}/notes" => json!({"text": "called back"}),
        "POST /api/v1/data-requests" => json!({"contact_id": world.contact, "kind": "access"}),
        "POST /api/v1/auth/ws-ticket" | "POST /api/v1/auth/logout" => json!({}),
        "POST /api/v1/workspaces/{workspace_id}/channels/{id}/templates/sync" => json!({}),
        _ => return None,
    })
}

async fn call(app: &TestApp, world: &World, operation: &str, actor: usize) -> u16 {
    let (method, _) = operation.split_once(' ').unwrap();
    let url = app.url(&concrete_path(world, operation, actor));
    let mut request = app.client.request(method.parse().unwrap(), url);
    if let Some(token) = &world.tokens[actor] {
        request = request.bearer_auth(token);
    }
    request = match operation {
        "POST /webhooks/whatsapp" => {
            let signed = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
            request
                .header("x-hub-signature-256", waos_web::testing::sign(&signed))
                .body(signed)
        }
        "POST /api/v1/conversations/{id}/media" => request
            .header("content-type", "image/png")
            .body(vec![0x89, b'P', b'N', b'G']),
        _ => match body(world, operation, actor) {
            Some(body) => request.json(&body),
            None => request,
        },
    };
    request.send().await.unwrap().status().as_u16()
}

/// The document's operations as `METHOD path`.
async fn documented_operations(app: &TestApp) -> Vec<String> {
    let document = app.get_ok("/api/v1/openapi.json", "").await;
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    operations
}

async fn every_operation_as_every_caller_gets_exactly_its_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let world = build_world(&app).await;
    let table: BTreeMap<&str, [u16; 8]> = MATRIX.iter().copied().collect();
    assert_eq!(
        table.len(),
        MATRIX.len(),
        "each operation once in the table"
    );

    let documented = documented_operations(&app).await;
    let missing: Vec<&String> = documented
        .iter()
        .filter(|op| !table.contains_key(op.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "operations with no row in the authorization matrix: {missing:?}"
    );
    let stale: Vec<&&str> = table
        .keys()
        .filter(|op| !documented.iter().any(|d| d == *op))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for operations the document no longer has: {stale:?}"
    );

    // Signing out ends the callers' sessions: it goes last.
    let mut order: Vec<&str> = table
        .keys()
        .copied()
        .filter(|op| !op.ends_with("/logout"))
        .collect();
    order.push("POST /api/v1/auth/logout");
    let mut wrong = Vec::new();
    for operation in order {
        for (actor, expected) in table[operation].iter().enumerate() {
            let got = call(&app, &world, operation, actor).await;
            if got != *expected {
                wrong.push(format!(
                    "{operation} as {}: {got}, expected {expected}",
                    ACTORS[actor]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Opening each socket: the upgrade's status for each caller (101: it opened).
const SOCKETS: [(&str, [u16; 8]); 2] = [
    ("/ws/agent", [401, 101, 101, 101, 403, 403, 403, 101]),
    ("/ws/supervisor", [401, 403, 101, 101, 101, 101, 403, 101]),
];

async fn upgrade_status(app: &TestApp, path: &str, token: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
    let url = format!("{}{path}", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{path}: {other}"),
    }
}

/// Each client frame an agent may send, about a conversation it neither holds nor is offered,
/// and the `error` code it is answered with (`None`: no error). A socket cannot tell another
/// agent's conversation, or another workspace's, from none: `not_found` for each.
fn frames(world: &World) -> Vec<(Value, Option<&'static str>)> {
    let id = &world.conversation;
    vec![
        (
            json!({"type": "accept", "conversation_id": id}),
            Some("not_found"),
        ),
        (
            json!({"type": "decline", "conversation_id": id}),
            Some("not_found"),
        ),
        (
            json!({"type": "resolve", "conversation_id": id}),
            Some("not_found"),
        ),
        (
            json!({"type": "open", "conversation_id": id}),
            Some("not_found"),
        ),
        (
            json!({"type": "transfer", "conversation_id": id, "to_team_id": world.team}),
            Some("not_found"),
        ),
        (
            json!({"type": "send", "conversation_id": id, "text": "hi"}),
            Some("not_found"),
        ),
        (
            json!({"type": "send_template", "conversation_id": id,
                "template": {"name": "x", "language": {"code": "en"}}}),
            Some("not_found"),
        ),
        (
            json!({"type": "send_media", "conversation_id": id,
                "media": {"kind": "image", "link": "https://example.com/a.png"}}),
            Some("not_found"),
        ),
        (json!({"type": "presence", "status": "away"}), None),
    ]
}

/// The `error` frame's code a frame is answered with, or `None` when no error comes within a
/// second (other frames are passed over).
async fn answer(socket: &mut AgentSocket, frame: Value) -> Option<String> {
    socket.send(frame).await;
    let error = socket
        .expect_within("error", std::time::Duration::from_secs(1))
        .await?;
    Some(error["code"].as_str().unwrap_or("").to_owned())
}

async fn every_socket_and_client_frame_as_every_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let world = build_world(&app).await;
    let mut wrong = Vec::new();
    for (path, expected) in SOCKETS {
        for (actor, status) in expected.iter().enumerate() {
            let got = upgrade_status(&app, path, world.tokens[actor].as_deref()).await;
            if got != *status {
                wrong.push(format!(
                    "{path} as {}: {got}, expected {status}",
                    ACTORS[actor]
                ));
            }
        }
    }
    // Every agent frame, as every caller who may open the agent socket.
    for actor in [1, 2, 3, 7] {
        let token = world.tokens[actor].as_deref().unwrap();
        let mut socket = connect_socket_at(&app.address, "/ws/agent", token).await;
        socket.expect("hello").await;
        for (frame, expected) in frames(&world) {
            let kind = frame["type"].as_str().unwrap().to_owned();
            let got = answer(&mut socket, frame).await;
            if got.as_deref() != expected {
                wrong.push(format!(
                    "`{kind}` frame as {}: {got:?}, expected {expected:?}",
                    ACTORS[actor]
                ));
            }
        }
    }
    // Taking the waiting conversation: those of its team are full (capacity 0); the outsider
    // learns nothing of it.
    for (actor, expected) in [
        (1, "over_capacity"),
        (2, "over_capacity"),
        (3, "over_capacity"),
        (7, "not_found"),
    ] {
        let token = world.tokens[actor].as_deref().unwrap();
        let mut socket = connect_socket_at(&app.address, "/ws/agent", token).await;
        socket.expect("hello").await;
        let frame = json!({"type": "pick", "conversation_id": world.conversation});
        let got = answer(&mut socket, frame).await;
        if got.as_deref() != Some(expected) {
            wrong.push(format!("`pick` frame as {}: {got:?}", ACTORS[actor]));
        }
    }
    // The dashboard's one client frame, as every caller who may watch it.
    for actor in [2, 3, 4, 5, 7] {
        let token = world.tokens[actor].as_deref().unwrap();
        let mut socket = connect_socket_at(&app.address, "/ws/supervisor", token).await;
        socket.expect("stats").await;
        let frame = json!({"type": "assign", "conversation_id": world.conversation,
                           "agent_id": "0191e0a4-0000-7000-8000-000000000000"});
        let got = answer(&mut socket, frame).await;
        if got.as_deref() != Some("not_found") {
            wrong.push(format!("`assign` frame as {}: {got:?}", ACTORS[actor]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

on_both_backends!(
    every_operation_as_every_caller_gets_exactly_its_answer,
    every_socket_and_client_frame_as_every_caller,
);
