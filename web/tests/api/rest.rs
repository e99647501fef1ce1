//! The REST core: administration, sign-in and tokens, scoping by workspace and role, errors,
//! OpenAPI, health and metrics.

use std::time::Duration;

use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, FaultProxy, PASSWORD, TestApp, eventually, redis_url, spawn_app,
    spawn_app_with,
};

use crate::concurrency::text_body;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn administration_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let base = format!("/api/v1/workspaces/{workspace}");
    let team = app
        .post_ok(
            &format!("{base}/teams"),
            ADMIN_TOKEN,
            &json!({"name": "Billing", "offer_timeout_secs": 20, "auto_accept": true}),
            201,
        )
        .await;
    assert_eq!(team["offer_timeout_secs"], 20);
    assert_eq!(team["auto_accept"], true);
    let team_id = team["id"].as_str().unwrap();
    let patched = app
        .patch(
            &format!("{base}/teams/{team_id}"),
            ADMIN_TOKEN,
            &json!({"offer_timeout_secs": 45}),
        )
        .await;
    assert_eq!(
        patched.json::<Value>().await.unwrap()["offer_timeout_secs"],
        45
    );

    // Channels: the Graph token is write-only and sealed at rest.
    let channel = app
        .post_ok(&format!("{base}/channels"), ADMIN_TOKEN,
            &json!({"phone_number_id": "115566778899001", "display_phone_number": "+1 555 0100", "waba_id": "109876543210987",
                    "access_token": "EAAG-secret-token", "team_id": team_id, "required_skills": ["Arabic", "billing"]}), 201)
        .await;
    assert!(channel.get("access_token").is_none());
    assert_eq!(channel["required_skills"], json!(["arabic", "billing"]));
    let listed = app.get_ok(&format!("{base}/channels"), ADMIN_TOKEN).await;
    assert!(!listed.to_string().contains("EAAG-secret-token"));
    assert_eq!(
        app.count(
            "channels",
            "CAST(access_token_sealed AS TEXT) LIKE '%EAAG%'"
        )
        .await,
        0
    );
    let channel_id = channel["id"].as_str().unwrap();
    let paused = app
        .patch(
            &format!("{base}/channels/{channel_id}"),
            ADMIN_TOKEN,
            &json!({"paused": true}),
        )
        .await;
    assert_eq!(paused.json::<Value>().await.unwrap()["paused"], true);
    let resumed = app
        .patch(
            &format!("{base}/channels/{channel_id}"),
            ADMIN_TOKEN,
            &json!({"paused": false, "access_token": "EAAG-rotated"}),
        )
        .await;
    let resumed = resumed.json::<Value>().await.unwrap();
    assert_eq!(resumed["paused"], false);
    assert!(resumed["pause_reason"].is_null());
    // A number belongs to one channel only.
    let (status, body) = status_and_body(
        app.post(&format!("{base}/channels"), ADMIN_TOKEN,
            &json!({"phone_number_id": "115566778899001", "display_phone_number": "x", "access_token": "t", "team_id": team_id}))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (409, "conflict"));

    // Agents: emails unique across the installation, passwords hashed with argon2id.
    let (agent_id, token) = app
        .create_agent(&workspace, "Rita@Acme.example", "agent", &[team_id])
        .await;
    assert_eq!(
        app.count("agents", "password_hash LIKE '$argon2id$%'")
            .await,
        1
    );
    assert_eq!(
        app.count("agents", &format!("password_hash LIKE '%{PASSWORD}%'"))
            .await,
        0
    );
    let other = app.create_workspace("Other").await;
    let (status, body) = status_and_body(
        app.post(&format!("/api/v1/workspaces/{other}/agents"), ADMIN_TOKEN,
            &json!({"name": "Rita", "email": "rita@acme.example", "password": PASSWORD, "role": "agent"}))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (409, "conflict"));
    let agents = app.get_ok(&format!("{base}/agents"), ADMIN_TOKEN).await;
    assert_eq!(agents["items"][0]["team_ids"], json!([team_id]));
    assert!(agents["items"][0].get("password_hash").is_none());
    let updated = app
        .patch(
            &format!("{base}/agents/{agent_id}"),
            ADMIN_TOKEN,
            &json!({"capacity": 7, "skills": ["French"], "team_ids": []}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        (
            updated["capacity"].clone(),
            updated["skills"].clone(),
            updated["team_ids"].clone()
        ),
        (json!(7), json!(["french"]), json!([]))
    );

    // An agent is no admin.
    let (status, body) = status_and_body(
        app.post(&format!("{base}/teams"), &token, &json!({"name": "x"}))
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    // Deactivation ends the agent's sessions at once.
    app.patch(
        &format!("{base}/agents/{agent_id}"),
        ADMIN_TOKEN,
        &json!({"active": false}),
    )
    .await;
    assert_eq!(
        app.get(&format!("{base}/teams"), &token).await.status(),
        401
    );
    let (status, _) = status_and_body(
        app.post(
            "/api/v1/auth/login",
            "",
            &json!({"email": "rita@acme.example", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);

    // Retention per workspace.
    let retention = app
        .patch(
            &base,
            ADMIN_TOKEN,
            &json!({"retention": {"message_days": 30, "media_days": 7, "audit_days": 365}}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(retention["retention"]["media_days"], 7);
}

async fn bad_input_gets_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let workspace = app.create_workspace("Acme").await;
    let base = format!("/api/v1/workspaces/{workspace}");
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            format!("{base}/teams"),
            json!({"name": ""}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/teams"),
            json!({"name": "x", "offer_timeout_secs": 0}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/teams"),
            json!({"name": "x", "colour": "red"}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/agents"),
            json!({"name": "x", "email": "not-an-email", "password": PASSWORD, "role": "agent"}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/agents"),
            json!({"name": "x", "email": "a@b.example", "password": "short", "role": "agent"}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/agents"),
            json!({"name": "x", "email": "a@b.example", "password": PASSWORD, "role": "root"}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/teams"),
            json!({"name": "nul\u{0}byte"}),
            422,
            "validation_failed",
        ),
        (
            format!("{base}/channels"),
            json!({"phone_number_id": "12ab", "display_phone_number": "x", "access_token": "t", "team_id": "x"}),
            404,
            "not_found",
        ),
    ];
    for (path, body, status, expected) in cases {
        let (got, answer) = status_and_body(app.post(&path, ADMIN_TOKEN, &body).await).await;
        assert_eq!(
            (got, code(&answer)),
            (status, expected),
            "{path} {body}: {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let broken = app
        .client
        .post(app.url(&format!("{base}/teams")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(broken).await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let (status, body) = status_and_body(
        app.get("/api/v1/conversations?limit=9999", ADMIN_TOKEN)
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    let (status, body) = status_and_body(
        app.get("/api/v1/conversations?status=lost", ADMIN_TOKEN)
            .await,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    let (status, body) = status_and_body(app.get("/api/v1/nowhere", ADMIN_TOKEN).await).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) =
        status_and_body(app.get(&format!("{base}/teams"), "wrong-token").await).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, _) = status_and_body(
        app.client
            .get(app.url(&format!("{base}/teams")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
}

/// Seeds two workspaces; in A, two teams with a conversation each.
struct Tenancy {
    a_admin: String,
    a_supervisor: String,
    a_agent: String,
    b_admin: String,
    b_workspace: String,
    sales_conversation: String,
    support_conversation: String,
}

async fn seed_tenancy(app: &TestApp) -> Tenancy {
    let a = app.create_workspace("A").await;
    let support = app.create_team(&a, "Support").await;
    let sales = app.create_team(&a, "Sales").await;
    app.create_channel(&a, &support, "115566778899001").await;
    app.create_channel(&a, &sales, "115566778899003").await;
    let (_, a_admin) = app.create_agent(&a, "admin@a.example", "admin", &[]).await;
    let (_, a_supervisor) = app
        .create_agent(&a, "sup@a.example", "supervisor", &[&support])
        .await;
    let (_, a_agent) = app
        .create_agent(&a, "agent@a.example", "agent", &[&support])
        .await;
    let b = app.create_workspace("B").await;
    let (_, b_admin) = app.create_agent(&b, "admin@b.example", "admin", &[]).await;

    assert_eq!(
        app.post_webhook(&text_body("wamid.support-1", 1, "help"))
            .await
            .status(),
        200
    );
    let sales_body = String::from_utf8(text_body("wamid.sales-1", 2, "buy"))
        .unwrap()
        .replace("115566778899001", "115566778899003");
    assert_eq!(app.post_webhook(sales_body.as_bytes()).await.status(), 200);
    let support_conversation = app
        .scalar("conversations", "id", &format!("team_id = '{support}'"))
        .await
        .unwrap();
    let sales_conversation = app
        .scalar("conversations", "id", &format!("team_id = '{sales}'"))
        .await
        .unwrap();
    Tenancy {
        a_admin,
        a_supervisor,
        a_agent,
        b_admin,
        b_workspace: b,
        sales_conversation,
        support_conversation,
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn conversations_are_scoped_by_workspace_and_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = seed_tenancy(&app).await;

    let admin_view = app.get_ok("/api/v1/conversations", &t.a_admin).await;
    assert_eq!(ids(&admin_view).len(), 2);
    let supervisor_view = ids(&app.get_ok("/api/v1/conversations", &t.a_supervisor).await);
    assert_eq!(supervisor_view, vec![t.support_conversation.clone()]);
    let agent_view = ids(&app
        .get_ok("/api/v1/conversations?status=waiting", &t.a_agent)
        .await);
    assert_eq!(agent_view, vec![t.support_conversation.clone()]);
    // Another team's conversation is invisible to the agent: 404, not 403.
    let (status, body) = status_and_body(
        app.get(
            &format!("/api/v1/conversations/{}", t.sales_conversation),
            &t.a_agent,
        )
        .await,
    )
    .await;
    assert_eq!((status, code(&body)), (404, "not_found"));

    // Workspace B sees nothing of A, through every route.
    assert!(ids(&app.get_ok("/api/v1/conversations", &t.b_admin).await).is_empty());
    for path in [
        format!("/api/v1/conversations/{}", t.support_conversation),
        format!("/api/v1/conversations/{}/messages", t.support_conversation),
        format!("/api/v1/conversations/{}/audit", t.support_conversation),
    ] {
        let (status, body) = status_and_body(app.get(&path, &t.b_admin).await).await;
        assert_eq!((status, code(&body)), (404, "not_found"), "{path}");
    }
    let a_workspace = app
        .scalar(
            "conversations",
            "workspace_id",
            &format!("id = '{}'", t.support_conversation),
        )
        .await
        .unwrap();
    for path in ["", "/teams", "/agents", "/channels"] {
        let (status, body) = status_and_body(
            app.get(
                &format!("/api/v1/workspaces/{a_workspace}{path}"),
                &t.b_admin,
            )
            .await,
        )
        .await;
        assert_eq!((status, code(&body)), (404, "not_found"), "workspace{path}");
    }
    let (status, _) = status_and_body(
        app.post(
            &format!("/api/v1/workspaces/{a_workspace}/teams"),
            &t.b_admin,
            &json!({"name": "intruders"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        app.get_ok(
            &format!("/api/v1/workspaces/{}/teams", t.b_workspace),
            &t.b_admin
        )
        .await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // What an agent may see, it sees whole: the conversation, its contact and its messages.
    let conversation = app
        .get_ok(
            &format!("/api/v1/conversations/{}", t.support_conversation),
            &t.a_agent,
        )
        .await;
    assert_eq!(conversation["status"], "waiting");
    assert_eq!(conversation["contact"]["phone"], "447700900001");
    assert!(conversation["window_expires_at"].is_string());
    let messages = app
        .get_ok(
            &format!("/api/v1/conversations/{}/messages", t.support_conversation),
            &t.a_agent,
        )
        .await;
    assert_eq!(messages["items"][0]["text"], "help");
    assert_eq!(messages["items"][0]["direction"], "in");
    assert_eq!(messages["items"][0]["wamid"], "wamid.support-1");
}

async fn lists_page_with_cursors(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed_world().await;
    for i in 0..5 {
        app.post_webhook(&text_body(&format!("wamid.page-{i}"), i, "x"))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/conversations?limit=2&cursor={cursor}"),
            None => "/api/v1/conversations?limit=2".to_owned(),
        };
        let page = app.get_ok(&path, ADMIN_TOKEN).await;
        let batch = ids(&page);
        assert!(batch.len() <= 2);
        seen.extend(batch);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
}

async fn sessions_expire_and_tickets_are_single_use(backend: Backend) {
    let app = spawn_app_with(backend, |settings, _| {
        settings.security.session_ttl_ms = 1500;
    })
    .await;
    let workspace = app.create_workspace("Acme").await;
    let (_, token) = app
        .create_agent(&workspace, "a@acme.example", "agent", &[])
        .await;
    assert_eq!(
        app.count("auth_tokens", &format!("token_hash = '{token}'"))
            .await,
        0,
        "only hashes are stored"
    );
    let login = app
        .post_ok(
            "/api/v1/auth/login",
            "",
            &json!({"email": "a@acme.example", "password": PASSWORD}),
            200,
        )
        .await;
    assert!(login["expires_at"].is_string());
    assert_eq!(login["role"], "agent");
    let (status, body) = status_and_body(
        app.post(
            "/api/v1/auth/login",
            "",
            &json!({"email": "a@acme.example", "password": "wrong password!"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    assert_eq!(
        app.count("audit_events", "kind = 'security.login_failed'")
            .await,
        1
    );

    let ticket = app
        .post_ok("/api/v1/auth/ws-ticket", &token, &json!({}), 200)
        .await;
    let ticket = ticket["ticket"].as_str().unwrap();
    assert!(
        waos_engine::auth::redeem_ticket(&app.db, ticket)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        waos_engine::auth::redeem_ticket(&app.db, ticket)
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    // The bootstrap token is no agent: it gets no ticket.
    assert_eq!(
        app.post("/api/v1/auth/ws-ticket", ADMIN_TOKEN, &json!({}))
            .await
            .status(),
        403
    );

    let logout = app.post("/api/v1/auth/logout", &token, &json!({})).await;
    assert_eq!(logout.status(), 204);
    assert_eq!(app.get("/api/v1/conversations", &token).await.status(), 401);
    let other = login["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/conversations", &other).await.status(), 200);
    eventually(Duration::from_secs(5), || async {
        app.get("/api/v1/conversations", &other).await.status() == 401
    })
    .await;
}

async fn openapi_health_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    let document: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/webhooks/whatsapp",
        "/api/v1/workspaces/{workspace_id}/agents",
        "/api/v1/conversations/{id}/audit",
        "/api/v1/auth/login",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(
        document["components"]["schemas"]
            .get("NewChannel")
            .is_some()
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.seed_world().await;
    app.post_webhook(&text_body("wamid.metrics-1", 1, "x"))
        .await;
    app.post_webhook_signed(b"{}", None).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("waos_webhook_requests_total{outcome=\"stored\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("waos_webhook_requests_total{outcome=\"bad_signature\"} 1"));
    assert!(metrics.contains("waos_ingest_commit_seconds_count 1"));
}

on_both_backends!(
    administration_round_trip,
    bad_input_gets_clear_errors,
    conversations_are_scoped_by_workspace_and_role,
    lists_page_with_cursors,
    sessions_expire_and_tickets_are_single_use,
    openapi_health_and_metrics,
);

#[actix_web::test]
async fn readiness_follows_redis() {
    let redis_addr = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = FaultProxy::start(redis_addr).await;
    let port = proxy.port;
    let app = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.redis.url = format!("redis://127.0.0.1:{port}");
    })
    .await;
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], true);
    proxy.cut();
    eventually(Duration::from_secs(10), || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 503
    })
    .await;
    proxy.restore();
    eventually(Duration::from_secs(10), || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}
