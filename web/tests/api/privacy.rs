//! A contact's rights over their data, through the API: look-up, access and export (JSON and a
//! readable page), correction, restriction, objection, erasure (everything that held their data,
//! media files included), and retention by workspace.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, FakeGraph, PHONE_NUMBER_ID_1, TestApp, eventually, spawn_app_with,
};

use crate::concurrency::text_body_at;

async fn app_with_graph(backend: Backend) -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await.unwrap();
    let url = graph.url.clone();
    let app = spawn_app_with(backend, move |settings, _| settings.meta.graph_url = url).await;
    (app, graph)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn image_body(wamid: &str, customer: usize, media_id: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": PHONE_NUMBER_ID_1},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": format!("4477009{customer:05}")}],
        "messages": [{"from": format!("4477009{customer:05}"), "id": wamid, "timestamp": now().to_string(),
                      "type": "image", "image": {"id": media_id, "mime_type": "image/jpeg", "caption": "my receipt"}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// An agent's reply to the conversation is refused with 422, saying `why`.
async fn reply_is_refused(app: &TestApp, conversation: &str, agent: &str, why: &str) {
    let (status, refused) = post(
        app,
        &format!("/api/v1/conversations/{conversation}/messages"),
        agent,
        json!({"text": "hello?"}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains(why),
        "{refused}"
    );
}

async fn requests_are_carried_out_and_erasure_leaves_nothing(backend: Backend) {
    let (app, graph) = app_with_graph(backend).await;
    let workspace = app.create_workspace("Privacy Co").await;
    let team = app
        .create_team_with(&workspace, json!({"name": "Support", "auto_accept": true}))
        .await;
    app.create_channel(&workspace, &team, PHONE_NUMBER_ID_1)
        .await;
    let (_, admin) = app
        .create_agent(&workspace, "dpo@privacy.example", "admin", &[&team])
        .await;
    let (_, agent) = app
        .create_agent(&workspace, "agent@privacy.example", "agent", &[&team])
        .await;
    let (mut socket, _) = app.connect_agent(&agent).await;

    // The customer writes, sends a photo; the agent keeps a note.
    graph.add_media("media-privacy-1", "image/jpeg", b"\xff\xd8\xffjpeg-bytes");
    app.post_webhook(&text_body_at(
        "wamid.privacy-1",
        7,
        "My address is 1 Main St <b>",
        now(),
    ))
    .await;
    let conversation = socket.expect("assigned").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_webhook(&image_body("wamid.privacy-2", 7, "media-privacy-1"))
        .await;
    eventually(Duration::from_secs(10), || async {
        app.scalar("media_files", "status", "media_id = 'media-privacy-1'")
            .await
            .as_deref()
            == Some("stored")
    })
    .await;
    let media_path = app
        .scalar("media_files", "path", "media_id = 'media-privacy-1'")
        .await
        .unwrap();
    let media_file = std::path::Path::new(&app.settings.media.dir).join(&media_path);
    assert!(media_file.exists());
    let (status, _) = post(
        &app,
        &format!("/api/v1/conversations/{conversation}/notes"),
        &agent,
        json!({"text": "Prefers calls after 5 pm"}),
    )
    .await;
    assert_eq!(status, 201);

    // Look-up: supervisors and admins only; agents are told why.
    let (status, found) = get(&app, "/api/v1/contacts?phone=%2B44%207700900007", &admin).await;
    assert_eq!(status, 200, "{found}");
    let found: Value = serde_json::from_str(&found).unwrap();
    let contact = found["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(found["items"][0]["phone"], "447700900007");
    assert_eq!(
        get(&app, "/api/v1/contacts?phone=447700900007", &agent)
            .await
            .0,
        403
    );

    // Access: everything held, as JSON and as a page, with the customer's words escaped.
    let (status, access) = post(
        &app,
        "/api/v1/data-requests",
        &admin,
        json!({"contact_id": contact, "kind": "access"}),
    )
    .await;
    assert_eq!(status, 201, "{access}");
    assert_eq!(access["status"], "completed");
    let access_id = access["id"].as_str().unwrap().to_owned();
    let (status, export) = get(
        &app,
        &format!("/api/v1/data-requests/{access_id}/export"),
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    let export: Value = serde_json::from_str(&export).unwrap();
    let texts: Vec<&str> = export["conversations"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.contains(&"My address is 1 Main St <b>"), "{texts:?}");
    assert_eq!(
        export["conversations"][0]["notes"][0]["text"],
        "Prefers calls after 5 pm"
    );
    let (_, page) = get(
        &app,
        &format!("/api/v1/data-requests/{access_id}/export?format=html"),
        &admin,
    )
    .await;
    assert!(
        page.contains("1 Main St &lt;b&gt;") && !page.contains("St <b>"),
        "{page}"
    );
    // Only admins of the workspace see requests; others' ids are 404.
    let other = app.create_workspace("Elsewhere").await;
    let other_team = app.create_team(&other, "Support").await;
    let (_, outsider) = app
        .create_agent(&other, "dpo@elsewhere.example", "admin", &[&other_team])
        .await;
    assert_eq!(
        get(
            &app,
            &format!("/api/v1/data-requests/{access_id}"),
            &outsider
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &app,
            "/api/v1/data-requests",
            &outsider,
            json!({"contact_id": contact, "kind": "erasure"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &app,
            "/api/v1/data-requests",
            &agent,
            json!({"contact_id": contact, "kind": "access"})
        )
        .await
        .0,
        403
    );

    // Correction: the name, never the number.
    let (status, _) = post(
        &app,
        "/api/v1/data-requests",
        &admin,
        json!({"contact_id": contact, "kind": "correction", "changes": {"name": "Ana Corrected"}}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        app.scalar("contacts", "name", &format!("id = '{contact}'"))
            .await
            .as_deref(),
        Some("Ana Corrected")
    );
    assert_eq!(
        post(
            &app,
            "/api/v1/data-requests",
            &admin,
            json!({"contact_id": contact, "kind": "correction", "changes": {"phone": "1"}})
        )
        .await
        .0,
        422
    );

    // Restriction: kept, but no replies go out.
    assert_eq!(
        post(
            &app,
            "/api/v1/data-requests",
            &admin,
            json!({"contact_id": contact, "kind": "restriction"})
        )
        .await
        .0,
        201
    );
    reply_is_refused(&app, &conversation, &agent, "restricted").await;

    // Erasure: the words, the names, the number, the notes, the media, gone; the record stays.
    let (status, erased) = post(
        &app,
        "/api/v1/data-requests",
        &admin,
        json!({"contact_id": contact, "kind": "erasure"}),
    )
    .await;
    assert_eq!(status, 201, "{erased}");
    // Nothing can be sent to an erased contact, although its conversation is still held.
    reply_is_refused(&app, &conversation, &agent, "erased").await;
    assert_eq!(
        app.scalar("contacts", "phone", &format!("id = '{contact}'"))
            .await,
        None
    );
    assert_eq!(
        app.scalar("contacts", "name", &format!("id = '{contact}'"))
            .await,
        None
    );
    assert!(
        app.scalar(
            "contacts",
            "CAST(erased_at AS TEXT)",
            &format!("id = '{contact}'")
        )
        .await
        .is_some()
    );
    let filter = format!("conversation_id = '{conversation}' AND text IS NOT NULL");
    assert_eq!(
        app.scalar("messages", "id", &filter).await,
        None,
        "message text survived erasure"
    );
    // Wamids encode the number: they are keyed tags now, and Meta's retry is still a duplicate
    // (it neither stores the message again nor brings the number back).
    assert_eq!(
        app.count(
            "messages",
            &format!("conversation_id = '{conversation}' AND wamid NOT LIKE 'erased:%'")
        )
        .await,
        0
    );
    let stored_before = app.count("messages", "").await;
    let retry = app
        .post_webhook(&text_body_at(
            "wamid.privacy-1",
            7,
            "My address is 1 Main St <b>",
            now(),
        ))
        .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(
        app.count("messages", "").await,
        stored_before,
        "a retry of an erased message is a duplicate"
    );
    assert_eq!(
        app.count("contacts", "phone = '447700900007'").await,
        0,
        "the retry brought the number back"
    );
    assert_eq!(
        app.scalar(
            "conversation_notes",
            "id",
            &format!("conversation_id = '{conversation}'")
        )
        .await,
        None
    );
    assert_eq!(
        app.scalar("media_files", "path", "media_id = 'media-privacy-1'")
            .await,
        None
    );
    assert!(!media_file.exists(), "the media file survived erasure");
    let (_, export) = get(
        &app,
        &format!("/api/v1/data-requests/{access_id}/export"),
        &admin,
    )
    .await;
    assert!(!export.contains("Main St"), "{export}");
    // Nothing more can be asked of an erased contact but what is left.
    assert_eq!(
        post(
            &app,
            "/api/v1/data-requests",
            &admin,
            json!({"contact_id": contact, "kind": "restriction"})
        )
        .await
        .0,
        409
    );
    // The audit says what was done, never with the data.
    let audit = app
        .scalar("audit_events", "text", "kind = 'data_request.erasure'")
        .await
        .unwrap();
    assert!(
        !audit.contains("Main St") && !audit.contains("447700900007"),
        "{audit}"
    );
    let (status, list) = get(&app, "/api/v1/data-requests", &admin).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
    assert_eq!(get(&app, "/api/v1/data-requests", ADMIN_TOKEN).await.0, 200);
}

async fn retention_removes_what_a_workspace_keeps_no_longer(backend: Backend) {
    let (app, _graph) = app_with_graph(backend).await;
    let world = app.seed_world().await;
    app.post_webhook(&text_body_at("wamid.retention-old", 8, "old words", now()))
        .await;
    app.post_webhook(&text_body_at("wamid.retention-new", 9, "new words", now()))
        .await;
    eventually(Duration::from_secs(5), || async {
        app.scalar("messages", "id", "wamid = 'wamid.retention-new'")
            .await
            .is_some()
    })
    .await;
    // Age one message past a 30-day retention.
    let aged = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    app.execute(&format!(
        "UPDATE messages SET created_at = '{aged}' WHERE wamid = 'wamid.retention-old'"
    ))
    .await;
    let patch = app
        .client
        .patch(format!(
            "{}/api/v1/workspaces/{}",
            app.address, world.workspace_id
        ))
        .bearer_auth(&world.admin_token)
        .json(&json!({"retention": {"message_days": 30, "media_days": 30, "audit_days": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let report = waos_engine::privacy::apply_retention(&app.db, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(report.messages, 1);
    assert_eq!(
        app.scalar("messages", "id", "wamid = 'wamid.retention-old'")
            .await,
        None
    );
    assert!(
        app.scalar("messages", "id", "wamid = 'wamid.retention-new'")
            .await
            .is_some()
    );
}

on_both_backends!(
    requests_are_carried_out_and_erasure_leaves_nothing,
    retention_removes_what_a_workspace_keeps_no_longer,
);
