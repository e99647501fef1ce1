//! The console and the dashboard in a real headless Chromium (Debian's, driven by chromedriver
//! through WebDriver): an agent takes a conversation from offer to resolve, a supervisor watches
//! the queue move and assigns by hand. The screenshots in the README come from this run.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use waos_web::testing::{
    ADMIN_TOKEN, Backend, FakeGraph, PASSWORD, TestApp, eventually, spawn_app_with,
};

use crate::concurrency::text_body_at;

/// A 1×1 PNG, for the attachment.
const PNG_PIXEL: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for anything to show in the page.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A chromedriver of the test's own, on a free port; killed on drop.
pub(crate) struct Driver {
    process: Child,
    url: String,
}

impl Driver {
    pub(crate) async fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "browser tests need Debian's chromium and chromium-driver (./test.sh installs them)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own, so that the browsers it starts go with it, even when the
        // test fails before closing its sessions.
        let process = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver {
            process,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A fresh headless browser with an empty profile.
    pub(crate) async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1440,900", format!("--user-data-dir={}", profile.display())]}),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.process.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub(crate) fn testid(id: &str) -> String {
    format!("[data-testid='{id}']")
}

/// Tries `attempt` every 50 ms until it gives a value, for at most [`PATIENCE`]; `what` says
/// in the panic what never came.
pub(crate) async fn until<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "{what} within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `selector` matches an element whose text contains `text`.
pub(crate) async fn wait_text(
    page: &Client,
    selector: &str,
    text: &str,
) -> fantoccini::elements::Element {
    until(&format!("no `{selector}` showing `{text}`"), || async {
        for element in page.find_all(Locator::Css(selector)).await.ok()? {
            if element.text().await.is_ok_and(|t| t.contains(text)) {
                return Some(element);
            }
        }
        None
    })
    .await
}

/// Waits until `selector` matches nothing.
pub(crate) async fn wait_gone(page: &Client, selector: &str) {
    until(&format!("`{selector}` is still there"), || async {
        page.find_all(Locator::Css(selector))
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await
}

pub(crate) async fn wait_find(page: &Client, selector: &str) -> fantoccini::elements::Element {
    until(&format!("no `{selector}`"), || async {
        page.find(Locator::Css(selector)).await.ok()
    })
    .await
}

/// Clicks `selector`, finding it again if the page re-rendered it meanwhile.
pub(crate) async fn click(page: &Client, selector: &str) {
    until(&format!("could not click `{selector}`"), || async {
        page.find(Locator::Css(selector))
            .await
            .ok()?
            .click()
            .await
            .ok()
    })
    .await
}

/// An attribute of `selector`'s first match, once it has one.
async fn attribute(page: &Client, selector: &str, name: &str) -> String {
    until(&format!("no `{name}` on `{selector}`"), || async {
        let element = page.find(Locator::Css(selector)).await.ok()?;
        element.attr(name).await.ok().flatten()
    })
    .await
}

/// Chooses `value` in the select `selector`, finding it again if it was re-rendered (a stats
/// delta that changes an agent's load rebuilds the options), until the choice holds.
async fn choose(page: &Client, selector: &str, value: &str) {
    until(
        &format!("could not choose `{value}` in `{selector}`"),
        || async {
            let element = page.find(Locator::Css(selector)).await.ok()?;
            element.select_by_value(value).await.ok()?;
            (element.prop("value").await.ok().flatten().as_deref() == Some(value)).then_some(())
        },
    )
    .await
}

pub(crate) async fn log_in(page: &Client, address: &str, path: &str, email: &str) {
    page.goto(&format!("{address}{path}")).await.unwrap();
    wait_find(page, &testid("login-email"))
        .await
        .send_keys(email)
        .await
        .unwrap();
    wait_find(page, &testid("login-password"))
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    wait_find(page, &testid("login-submit"))
        .await
        .click()
        .await
        .unwrap();
    wait_text(page, &testid("connection"), "live").await;
}

/// The screenshot goes where the README shows it from.
pub(crate) async fn screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(name), png).unwrap();
}

async fn agent(
    app: &TestApp,
    workspace: &str,
    name: &str,
    email: &str,
    role: &str,
    teams: &[&str],
) -> String {
    let created = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/agents"),
            ADMIN_TOKEN,
            &json!({"name": name, "email": email, "password": PASSWORD, "role": role,
                    "capacity": 3, "team_ids": teams}),
            201,
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

async fn token_of(app: &TestApp, email: &str) -> String {
    let session = app
        .post_ok(
            "/api/v1/auth/login",
            "",
            &json!({"email": email, "password": PASSWORD}),
            200,
        )
        .await;
    session["token"].as_str().unwrap().to_owned()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Runs `fetch` in the page with the page's own session; answers the HTTP status.
async fn fetch_status(page: &Client, method: &str, path: &str, body: Value) -> u64 {
    let script = r"
        const [method, path, body, done] = arguments;
        const session = JSON.parse(sessionStorage.getItem('waos.session'));
        fetch(path, {method, headers: {'Authorization': 'Bearer ' + session.token, 'Content-Type': 'application/json'},
                     body: method === 'GET' ? undefined : JSON.stringify(body)})
          .then((r) => done(r.status), () => done(0));";
    page.execute_async(script, vec![json!(method), json!(path), body])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[actix_web::test]
async fn an_agent_works_a_conversation_and_a_supervisor_assigns_one_in_real_chromium() {
    let graph = FakeGraph::start().await.unwrap();
    let graph_url = graph.url.clone();
    let app = spawn_app_with(Backend::Postgres, move |settings, _| {
        settings.meta.graph_url = graph_url;
        // Ben's API socket is read only now and then (while the browsers work), so it answers
        // pings late: let it live.
        settings.websocket.client_timeout_ms = 120_000;
        // A page reload takes longer than the suite's usual 300 ms grace.
        settings.routing.disconnect_grace_ms = 30_000;
    })
    .await;
    let workspace = app.create_workspace("Acme Retail").await;
    // Offers last long enough for a browser to click them (50 units of 20 ms here = 1 s is too
    // short): 1,000 units.
    let support = app
        .create_team_with(
            &workspace,
            json!({"name": "Support", "offer_timeout_secs": 1000}),
        )
        .await;
    let billing = app.create_team(&workspace, "Billing").await;
    app.create_channel(&workspace, &support, waos_web::testing::PHONE_NUMBER_ID_1)
        .await;
    let ana = agent(
        &app,
        &workspace,
        "Ana Duarte",
        "ana@acme.example",
        "agent",
        &[&support],
    )
    .await;
    let ben = agent(
        &app,
        &workspace,
        "Ben Okafor",
        "ben@acme.example",
        "agent",
        &[&support, &billing],
    )
    .await;
    agent(
        &app,
        &workspace,
        "Sue Park",
        "sue@acme.example",
        "supervisor",
        &[&support, &billing],
    )
    .await;
    // Ben works from an API socket, so that he is online to take a transfer.
    let (mut ben_socket, _) = app
        .connect_agent(&token_of(&app, "ben@acme.example").await)
        .await;
    ben_socket
        .send(json!({"type": "presence", "status": "away"}))
        .await;

    // Another workspace's conversation, which Ana must never reach.
    let other = app.create_workspace("Other Co").await;
    let other_team = app.create_team(&other, "Support").await;
    app.create_channel(&other, &other_team, "220000000000001")
        .await;
    let foreign = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100999", "phone_number_id": "220000000000001"},
        "contacts": [{"profile": {"name": "Elsewhere"}, "wa_id": "447700900999"}],
        "messages": [{"from": "447700900999", "id": "wamid.browser-foreign", "timestamp": now().to_string(), "type": "text", "text": {"body": "not yours"}}]
    }}]}]});
    assert_eq!(
        app.post_webhook(foreign.to_string().as_bytes())
            .await
            .status(),
        200
    );

    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let console = driver.browser(&profiles.join("console")).await;
    let dashboard = driver.browser(&profiles.join("dashboard")).await;

    // The agent signs in and is online.
    log_in(&console, &app.address, "/console", "ana@acme.example").await;
    wait_text(&console, &testid("presence-toggle"), "online").await;
    // The supervisor sees the team.
    log_in(&dashboard, &app.address, "/dashboard", "sue@acme.example").await;
    let team_card = format!("[data-testid='team-card'][data-team-id='{support}']");
    wait_text(
        &dashboard,
        &format!("{team_card} {}", testid("team-online")),
        "1",
    )
    .await;

    // A customer writes; the offer reaches the console with its countdown.
    assert_eq!(
        app.post_webhook(&text_body_at(
            "wamid.browser-1",
            1,
            "Where is my order #1042?",
            now()
        ))
        .await
        .status(),
        200
    );
    let conversation = attribute(&console, &testid("offer"), "data-conversation-id").await;
    wait_text(&console, &testid("offer-countdown"), "s").await;
    click(&console, &testid("offer-accept")).await;
    let item = format!("[data-testid='conversation-item'][data-conversation-id='{conversation}']");
    click(&console, &item).await;
    wait_text(
        &console,
        &testid("message-text"),
        "Where is my order #1042?",
    )
    .await;

    // The reply goes to Meta, and the delivery tick follows Meta's status webhook.
    let sent = reply_from_console(
        &console,
        &graph,
        "It ships today; here is the tracking link.",
    )
    .await;
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer EAAG-test-token")
    );
    let reply_wamid = wait_for_wamid(&app, &conversation).await;
    let delivered = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": waos_web::testing::PHONE_NUMBER_ID_1},
        "statuses": [{"id": reply_wamid, "status": "delivered", "timestamp": now().to_string(), "recipient_id": "447700900001"}]
    }}]}]});
    assert_eq!(
        app.post_webhook(delivered.to_string().as_bytes())
            .await
            .status(),
        200
    );
    wait_find(
        &console,
        "[data-testid='message'][data-direction='out'] [data-testid='message-status'][data-status='delivered']",
    )
    .await;
    // An attachment goes to Meta as an upload, then as an image message with Meta's media id.
    let picture = profiles.join("receipt.png");
    std::fs::write(&picture, PNG_PIXEL).unwrap();
    wait_find(&console, &testid("attach-input"))
        .await
        .send_keys(&picture.display().to_string())
        .await
        .unwrap();
    eventually(PATIENCE, || async {
        graph.sends().iter().any(|r| r.body["type"] == "image")
    })
    .await;
    let image = graph
        .sends()
        .into_iter()
        .find(|r| r.body["type"] == "image")
        .unwrap();
    let media_id = image.body["image"]["id"].as_str().unwrap().to_owned();
    assert!(media_id.starts_with("fake-upload-"), "{}", image.body);
    let uploads: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/media") && r.method == "POST")
        .collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].body["file_bytes"], json!(PNG_PIXEL));
    assert_eq!(uploads[0].body["multipart"], json!(true));

    // Opening the conversation told Meta the customer's message was read.
    eventually(PATIENCE, || async {
        graph.sends().iter().any(|r| r.body["status"] == "read")
    })
    .await;

    // Tags and a note, stored and audited.
    let tag_input = wait_find(&console, &testid("tag-input")).await;
    tag_input.send_keys("vip").await.unwrap();
    tag_input.send_keys("\u{E007}").await.unwrap();
    wait_text(&console, &testid("tag"), "vip").await;
    wait_find(&console, &testid("note-input"))
        .await
        .send_keys("Customer asked for a call back after 5 pm.")
        .await
        .unwrap();
    click(&console, &testid("note-add")).await;
    wait_text(&console, &testid("note"), "call back after 5 pm").await;
    let sue = token_of(&app, "sue@acme.example").await;
    let stored = app
        .get_ok(&format!("/api/v1/conversations/{conversation}"), &sue)
        .await;
    assert_eq!(stored["tags"], json!(["vip"]));
    let audit = app
        .get_ok(&format!("/api/v1/conversations/{conversation}/audit"), &sue)
        .await;
    let kinds: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"tags_changed") && kinds.contains(&"note_added"),
        "{kinds:?}"
    );
    screenshot(&console, "console.png").await;

    // Nothing of another workspace, nor of a team Ana is not in, is reachable from the page or
    // the socket.
    app.create_channel(&workspace, &billing, "115566778899009")
        .await;
    let billing_message = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100998", "phone_number_id": "115566778899009"},
        "contacts": [{"profile": {"name": "Billing customer"}, "wa_id": "447700900998"}],
        "messages": [{"from": "447700900998", "id": "wamid.browser-billing", "timestamp": now().to_string(), "type": "text", "text": {"body": "invoice?"}}]
    }}]}]});
    assert_eq!(
        app.post_webhook(billing_message.to_string().as_bytes())
            .await
            .status(),
        200
    );
    let of_phone = |phone: &'static str| {
        let app = &app;
        async move {
            app.scalar(
                "conversations",
                "id",
                &format!("contact_id IN (SELECT id FROM contacts WHERE phone = '{phone}')"),
            )
            .await
            .unwrap()
        }
    };
    let other_workspace = of_phone("447700900999").await;
    let other_team = of_phone("447700900998").await;
    for foreign_id in [&other_workspace, &other_team] {
        for (method, path, body) in [
            (
                "GET",
                format!("/api/v1/conversations/{foreign_id}"),
                Value::Null,
            ),
            (
                "GET",
                format!("/api/v1/conversations/{foreign_id}/messages"),
                Value::Null,
            ),
            (
                "GET",
                format!("/api/v1/conversations/{foreign_id}/audit"),
                Value::Null,
            ),
            (
                "PUT",
                format!("/api/v1/conversations/{foreign_id}/tags"),
                json!({"tags": ["vip"]}),
            ),
            (
                "POST",
                format!("/api/v1/conversations/{foreign_id}/notes"),
                json!({"text": "hello"}),
            ),
        ] {
            assert_eq!(
                fetch_status(&console, method, &path, body).await,
                404,
                "{method} {path}"
            );
        }
    }
    let (mut ana_api, _) = app
        .connect_agent(&token_of(&app, "ana@acme.example").await)
        .await;
    for foreign_id in [&other_workspace, &other_team] {
        ana_api
            .send(json!({"type": "accept", "conversation_id": foreign_id}))
            .await;
        assert_eq!(
            ana_api.expect("error").await["conversation_id"],
            json!(foreign_id)
        );
        ana_api
            .send(json!({"type": "send", "conversation_id": foreign_id, "client_id": "x", "text": "hi"}))
            .await;
        assert_eq!(
            ana_api.expect("error").await["conversation_id"],
            json!(foreign_id)
        );
    }
    ana_api.close().await;

    // Transfer to Ben: it leaves Ana's list and reaches Ben.
    ben_socket
        .send(json!({"type": "presence", "status": "online"}))
        .await;
    wait_find(
        &console,
        &format!("{} option[value='agent:{ben}']", testid("transfer-select")),
    )
    .await;
    choose(
        &console,
        &testid("transfer-select"),
        &format!("agent:{ben}"),
    )
    .await;
    click(&console, &testid("transfer-submit")).await;
    let assigned = ben_socket.expect("assigned").await;
    assert_eq!(assigned["conversation_id"], json!(conversation));
    wait_gone(&console, &item).await;
    ben_socket
        .send(json!({"type": "presence", "status": "away"}))
        .await;

    // A second customer: accepted, then resolved from the console.
    app.post_webhook(&text_body_at(
        "wamid.browser-2",
        2,
        "Can I change my address?",
        now(),
    ))
    .await;
    let second = attribute(&console, &testid("offer"), "data-conversation-id").await;
    click(&console, &testid("offer-accept")).await;
    let second_item = format!("[data-testid='conversation-item'][data-conversation-id='{second}']");
    click(&console, &second_item).await;
    wait_text(&console, &testid("message-text"), "change my address").await;
    click(&console, &testid("resolve")).await;
    wait_gone(&console, &second_item).await;
    eventually(PATIENCE, || async {
        app.scalar("conversations", "status", &format!("id = '{second}'"))
            .await
            .as_deref()
            == Some("resolved")
    })
    .await;

    // Ana steps away; a third customer waits, and the dashboard shows it live.
    click(&console, &testid("presence-toggle")).await;
    wait_text(&console, &testid("presence-toggle"), "away").await;
    app.post_webhook(&text_body_at(
        "wamid.browser-3",
        3,
        "Is the store open on Sunday?",
        now(),
    ))
    .await;
    wait_text(
        &dashboard,
        &format!("{team_card} {}", testid("team-waiting")),
        "1",
    )
    .await;
    // (Billing's customer waits too; this one is Support's.)
    let third = app
        .scalar(
            "conversations",
            "id",
            "contact_id IN (SELECT id FROM contacts WHERE phone = '447700900003')",
        )
        .await
        .unwrap();
    wait_find(
        &dashboard,
        &format!("[data-testid='waiting-row'][data-conversation-id='{third}']"),
    )
    .await;
    screenshot(&dashboard, "dashboard.png").await;

    // The supervisor assigns it to Ana by hand; the queue empties and Ana has it.
    let waiting_row = format!("[data-testid='waiting-row'][data-conversation-id='{third}']");
    choose(
        &dashboard,
        &format!("{waiting_row} {}", testid("assign-select")),
        &ana,
    )
    .await;
    click(
        &dashboard,
        &format!("{waiting_row} {}", testid("assign-submit")),
    )
    .await;
    wait_gone(&dashboard, &waiting_row).await;
    wait_text(
        &dashboard,
        &format!("{team_card} {}", testid("team-waiting")),
        "0",
    )
    .await;
    wait_find(
        &console,
        &format!("[data-testid='conversation-item'][data-conversation-id='{third}']"),
    )
    .await;
    let ana_row = format!(
        "[data-testid='agent-row'][data-agent-id='{ana}'] {}",
        testid("agent-load")
    );
    wait_text(&dashboard, &ana_row, "1/3").await;

    // A reload (or a dropped socket) resyncs from `hello` and keeps what the agent typed.
    let third_item = format!("[data-testid='conversation-item'][data-conversation-id='{third}']");
    click(&console, &third_item).await;
    wait_find(&console, &testid("reply-input"))
        .await
        .send_keys("Yes, 10 to 4")
        .await
        .unwrap();
    console.refresh().await.unwrap();
    wait_text(&console, &testid("connection"), "live").await;
    click(&console, &third_item).await;
    let started = Instant::now();
    loop {
        let draft = wait_find(&console, &testid("reply-input"))
            .await
            .prop("value")
            .await
            .unwrap();
        if draft.as_deref() == Some("Yes, 10 to 4") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "draft lost: {draft:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    console.close().await.unwrap();
    dashboard.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profiles);
}

/// The wamid Meta gave the agent's reply in `conversation`.
async fn wait_for_wamid(app: &TestApp, conversation: &str) -> String {
    let filter =
        format!("conversation_id = '{conversation}' AND direction = 'out' AND wamid IS NOT NULL");
    eventually(PATIENCE, || async {
        app.scalar("messages", "wamid", &filter).await.is_some()
    })
    .await;
    app.scalar("messages", "wamid", &filter).await.unwrap()
}

/// Types `text` into the open conversation's reply box and sends it; answers the request
/// Meta got for it.
pub(crate) async fn reply_from_console(
    console: &Client,
    graph: &FakeGraph,
    text: &str,
) -> waos_web::testing::GraphRequest {
    wait_find(console, &testid("reply-input"))
        .await
        .send_keys(text)
        .await
        .unwrap();
    click(console, &testid("reply-send")).await;
    let sent = || {
        graph
            .sends()
            .into_iter()
            .find(|r| r.body["type"] == "text" && r.body["text"]["body"] == text)
    };
    eventually(PATIENCE, || async { sent().is_some() }).await;
    sent().unwrap()
}

pub(crate) fn tempfile_dir() -> PathBuf {
    let folder =
        std::env::temp_dir().join(format!("waos-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// Time in the console and the dashboard: the held conversation's SLA counts down, turns to a
/// warning and then to a breach; the out-of-hours reply shows as automated and the team as
/// closed; the dashboard counts the team's breaches and marks the breached waiting conversation.
#[actix_web::test]
async fn sla_countdowns_breaches_and_automated_replies_show_in_real_chromium() {
    let graph = FakeGraph::start().await.unwrap();
    let graph_url = graph.url.clone();
    let app = spawn_app_with(Backend::Postgres, move |settings, _| {
        settings.meta.graph_url = graph_url;
        settings.routing.disconnect_grace_ms = 30_000;
    })
    .await;
    let workspace = app.create_workspace("Acme Hours").await;
    let today = chrono::Utc::now().date_naive().to_string();
    let calendar = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/calendars"),
            ADMIN_TOKEN,
            &json!({"name": "Closed today", "time_zone": "UTC", "weekly": {},
                    "overrides": [{"date": today, "intervals": [], "label": "Stocktake"}]}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // One second of a policy lasts 10 ms in tests: due in 8 s, warned 4 s before.
    let policy = app
        .post_ok(
            &format!("/api/v1/workspaces/{workspace}/sla-policies"),
            ADMIN_TOKEN,
            &json!({"name": "Gold", "first_response_secs": 800, "warn_before_secs": 400}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team = app
        .create_team_with(
            &workspace,
            json!({"name": "Support", "auto_accept": true, "calendar_id": calendar,
                   "sla_policy_id": policy, "out_of_hours_reply": "We open tomorrow at nine."}),
        )
        .await;
    app.create_channel(&workspace, &team, waos_web::testing::PHONE_NUMBER_ID_1)
        .await;
    // Capacity 1: the second customer waits, and breaches while waiting.
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/agents"),
        ADMIN_TOKEN,
        &json!({"name": "Ana Duarte", "email": "ana@hours.example", "password": PASSWORD,
                "role": "agent", "capacity": 1, "team_ids": [team]}),
        201,
    )
    .await;
    agent(
        &app,
        &workspace,
        "Sue Park",
        "sue@hours.example",
        "supervisor",
        &[&team],
    )
    .await;

    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let console = driver.browser(&profiles.join("console")).await;
    let dashboard = driver.browser(&profiles.join("dashboard")).await;
    log_in(&console, &app.address, "/console", "ana@hours.example").await;
    log_in(&dashboard, &app.address, "/dashboard", "sue@hours.example").await;

    for (customer, wamid) in [(1, "wamid.hours-1"), (2, "wamid.hours-2")] {
        let body = text_body_at(wamid, customer, "Is my order ready?", now());
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    // Ana holds the first: its countdown runs, the team is closed, the reply is automated.
    wait_text(&console, &testid("sla"), "First response in").await;
    wait_text(&console, &testid("outside-hours"), "Team closed").await;
    wait_text(&console, &testid("message-automated"), "Automated reply").await;
    wait_text(
        &console,
        &testid("message-text"),
        "We open tomorrow at nine.",
    )
    .await;
    let started = Instant::now();
    while attribute(
        &console,
        &format!("{}[data-sla-state]", testid("sla")),
        "data-sla-state",
    )
    .await
        != "warning"
    {
        assert!(started.elapsed() < PATIENCE, "no SLA warning shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_text(&console, &testid("sla"), "SLA breached: first response").await;
    screenshot(&console, "console-sla.png").await;

    // The dashboard: both breached, the waiting one marked.
    wait_text(&dashboard, &testid("team-sla-breached"), "2").await;
    wait_text(&dashboard, &testid("waiting-sla-breached"), "SLA breached").await;
    screenshot(&dashboard, "dashboard-sla.png").await;

    console.close().await.unwrap();
    dashboard.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profiles);
}

/// The agent's tools in the console: a conversation of last week found by one of its words,
/// a waiting conversation taken from the queue, and a canned reply picked by typing `/gr`,
/// filled in for the customer and sent.
#[actix_web::test]
async fn canned_replies_the_queue_and_search_work_in_real_chromium() {
    let app = spawn_app_with(Backend::Postgres, |settings, _| {
        settings.routing.disconnect_grace_ms = 30_000;
    })
    .await;
    let workspace = app.create_workspace("Acme Tools").await;
    let team = app
        .create_team_with(&workspace, json!({"name": "Support", "auto_accept": true}))
        .await;
    app.create_channel(&workspace, &team, waos_web::testing::PHONE_NUMBER_ID_1)
        .await;
    agent(
        &app,
        &workspace,
        "Cleo Ng",
        "cleo@tools.example",
        "agent",
        &[&team],
    )
    .await;
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/canned-replies"),
        ADMIN_TOKEN,
        &json!({"shortcut": "greeting", "text": "Hello {{contact.name|there}}, {{agent.name}} here. How can I help?"}),
        201,
    )
    .await;
    app.post_ok(
        &format!("/api/v1/workspaces/{workspace}/canned-replies"),
        ADMIN_TOKEN,
        &json!({"shortcut": "bye", "text": "Thanks for writing!"}),
        201,
    )
    .await;
    // Last week a customer wrote about a kettle; it waits until Cleo signs in.
    let week_ago = now() - 7 * 86_400;
    let old = text_body_at(
        "wamid.tools-1",
        1,
        "The blue kettle arrived cracked",
        week_ago,
    );
    assert_eq!(app.post_webhook(&old).await.status(), 200);

    let driver = Driver::start().await;
    let profiles = tempfile_dir();
    let console = driver.browser(&profiles.join("console")).await;
    log_in(&console, &app.address, "/console", "cleo@tools.example").await;
    // Online on connect: it is hers at once; she resolves it, then goes away.
    wait_text(&console, &testid("message-text"), "kettle").await;
    click(&console, &testid("resolve")).await;
    wait_gone(&console, &testid("conversation-item")).await;
    click(&console, &testid("presence-toggle")).await;
    wait_text(&console, &testid("presence-toggle"), "away").await;

    // Away: a new customer waits in the queue; she takes it.
    let body = text_body_at("wamid.tools-2", 2, "Do you deliver on Sundays?", now());
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    wait_text(&console, &testid("queue-item"), "Customer 2").await;
    click(&console, &testid("queue-take")).await;
    wait_text(&console, &testid("conversation-item"), "Customer 2").await;
    wait_text(&console, &testid("message-text"), "Sundays").await;

    // `/gr` offers the greeting, filled in; choosing it puts it in the box, Send sends it.
    wait_find(&console, &testid("reply-input"))
        .await
        .send_keys("/gr")
        .await
        .unwrap();
    wait_text(&console, &testid("canned-option"), "/greeting").await;
    screenshot(&console, "console-tools.png").await;
    click(
        &console,
        &format!("{}[data-shortcut='greeting']", testid("canned-option")),
    )
    .await;
    let filled = "Hello Customer 2, Cleo Ng here. How can I help?";
    let started = Instant::now();
    while wait_find(&console, &testid("reply-input"))
        .await
        .prop("value")
        .await
        .unwrap()
        .as_deref()
        != Some(filled)
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the canned reply was not filled in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    click(&console, &testid("reply-send")).await;
    wait_text(
        &console,
        &format!(".msg.out {}", testid("message-text")),
        filled,
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        app.count(
            "messages",
            &format!("direction = 'out' AND text = '{filled}'"),
        )
        .await
            == 1
    })
    .await;

    // Last week's conversation, found by a word of it.
    wait_find(&console, &testid("search-input"))
        .await
        .send_keys("KETTLE\u{e007}")
        .await
        .unwrap();
    wait_text(
        &console,
        &testid("search-result"),
        "The blue kettle arrived cracked",
    )
    .await;
    click(&console, &testid("search-result")).await;
    wait_text(
        &console,
        &testid("transcript-message"),
        "The blue kettle arrived cracked",
    )
    .await;
    click(&console, &testid("transcript-close")).await;
    wait_gone(&console, &testid("transcript")).await;

    console.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profiles);
}
