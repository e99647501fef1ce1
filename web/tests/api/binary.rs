//! The `waos` binary itself: help, settings from the environment, and the embedded default.

use std::process::{Command, Stdio};
use std::time::Duration;

const WAOS: &str = env!("CARGO_BIN_EXE_waos");

fn scratch() -> std::path::PathBuf {
    let folder = std::env::temp_dir().join(format!("waos-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

#[test]
fn help_names_every_subcommand() {
    let output = Command::new(WAOS).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "workers", "migrate", "demo", "reports", "replay"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn unknown_setting_keys_are_rejected_by_name() {
    let folder = scratch();
    let output = Command::new(WAOS)
        .arg("migrate")
        .current_dir(&folder)
        .env("WAOS__SERVER__PROT", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("prot"), "{error}");
    std::fs::remove_dir_all(folder).unwrap();
}

#[actix_web::test]
async fn serve_with_no_configuration_runs_on_the_embedded_default() {
    let folder = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(WAOS)
        .arg("serve")
        .current_dir(&folder)
        .env("WAOS__SERVER__PORT", port.to_string())
        .env("WAOS__META__APP_SECRET", "s3cret-never-logged")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = waos_web::testing::http_client();
    let mut healthy = false;
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            healthy = response.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readyz = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(healthy, "{log}");
    assert_eq!(readyz.status(), 200);
    assert!(
        folder.join("data/waos.sqlite").exists(),
        "the SQLite file is created"
    );
    // The generated admin token is in a private file; the log names the file, never the token.
    let token_file = folder.join("data/admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(log.contains("admin-token"));
    assert!(
        !log.contains(token.trim()),
        "the admin token leaked into the log"
    );
    assert!(
        !log.contains("s3cret-never-logged"),
        "the app secret leaked into the log"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the token file is readable by its owner only"
        );
    }
    std::fs::remove_dir_all(folder).unwrap();
}

/// `waos demo` on a fresh folder: it prints the logins, and within seconds simulated customers'
/// conversations are taken by simulated agents, who reply (and the replies are delivered).
#[actix_web::test]
async fn the_demo_seeds_and_moves_by_itself() {
    use std::io::{BufRead, BufReader};

    let folder = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(WAOS)
        .args(["demo", "--speed", "10"])
        .current_dir(&folder)
        .env("WAOS__SERVER__PORT", port.to_string())
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(folder.join("demo.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(6)
        .map(Result::unwrap)
        .collect();
    let banner = banner.join("\n");
    assert!(banner.contains("/console"), "{banner}");
    assert!(banner.contains("you@demo.waos"), "{banner}");
    let address = format!("http://127.0.0.1:{port}");
    let client = waos_web::testing::http_client();
    let session: serde_json::Value = client
        .post(format!("{address}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "sam@demo.waos", "password": "demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let mut delivered_reply = false;
    while !delivered_reply {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no simulated agent answered a simulated customer"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let list: serde_json::Value = client
            .get(format!("{address}/api/v1/conversations?limit=50"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for conversation in list["items"].as_array().unwrap() {
            let messages: serde_json::Value = client
                .get(format!(
                    "{address}/api/v1/conversations/{}/messages",
                    conversation["id"].as_str().unwrap()
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            delivered_reply |= messages["items"].as_array().unwrap().iter().any(|m| {
                m["direction"] == "out"
                    && ["delivered", "read"].contains(&m["status"].as_str().unwrap())
            });
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(folder.join("data/demo/waos.sqlite").exists());
    // Its simulated agents are websocket clients with session tokens: none reached the log.
    assert_logs_hold_no_secret(&folder, &["demo-password", &token]);
    std::fs::remove_dir_all(folder).unwrap();
}

/// A `waos serve` child process on a Postgres database of the test's own.
struct Served {
    child: std::process::Child,
    address: String,
}

impl Drop for Served {
    /// A test that fails leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` logs at trace level into a `serve-*.log` of `folder` (see [`assert_logs_hold_no_secret`]).
fn serve(database_url: &str, folder: &std::path::Path) -> Served {
    let log = folder.join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(log).unwrap();
    serve_with(
        database_url,
        folder,
        &[("RUST_LOG", "trace")],
        Stdio::from(log),
        "http",
    )
}

/// No fixed test secret, none of `secrets`, and no bearer token at all, in any `*.log` of
/// `folder`.
fn assert_logs_hold_no_secret(folder: &std::path::Path, secrets: &[&str]) {
    use waos_web::testing::{ADMIN_TOKEN, APP_SECRET, PASSWORD, VERIFY_TOKEN};
    let fixed = [ADMIN_TOKEN, APP_SECRET, PASSWORD, VERIFY_TOKEN];
    let secrets: Vec<&str> = fixed.iter().chain(secrets).copied().collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "log") {
            continue;
        }
        let log = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase();
        for secret in &secrets {
            assert!(
                !log.contains(&secret.to_lowercase()),
                "{} holds a secret: {secret}",
                path.display()
            );
        }
        // 20 or more token characters after "bearer " would be a token (words and
        // placeholders such as `<token>` are not).
        for (at, _) in log.match_indices("bearer ") {
            let after: String = log[at..]
                .chars()
                .skip(7)
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            assert!(
                after.len() < 20,
                "{} holds a bearer token: bearer {after}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no log in {}", folder.display());
}

/// `serve` with more settings (`WAOS__...` variables), its log to `stderr`, at `scheme`.
fn serve_with(
    database_url: &str,
    folder: &std::path::Path,
    settings: &[(&str, &str)],
    stderr: Stdio,
    scheme: &str,
) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(WAOS)
        .arg("serve")
        .envs(settings.iter().copied())
        .current_dir(folder)
        .env("WAOS__SERVER__PORT", port.to_string())
        .env("WAOS__DATABASE__URL", database_url)
        .env("WAOS__META__APP_SECRET", waos_web::testing::APP_SECRET)
        .env("WAOS__ADMIN__TOKEN", waos_web::testing::ADMIN_TOKEN)
        .env("WAOS__SECURITY__ARGON2_MEMORY_KIB", "1024")
        .env("WAOS__SECURITY__ARGON2_ITERATIONS", "1")
        .env("WAOS__ROUTING__OFFER_TIMEOUT_UNIT_MS", "1000")
        .env("WAOS__ROUTING__DISCONNECT_GRACE_MS", "60000")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Served {
        child,
        address: format!("{scheme}://127.0.0.1:{port}"),
    }
}

async fn until_healthy(address: &str) {
    until_healthy_with(&waos_web::testing::http_client(), address).await;
}

async fn until_healthy_with(client: &reqwest::Client, address: &str) {
    for _ in 0..400 {
        if client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{address} did not become ready");
}

async fn api(address: &str, path: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    let response = waos_web::testing::http_client()
        .post(format!("{address}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// A workspace named `name` with one team (`team`: its body) and a channel routed to it, made
/// through the API; (workspace id, team id).
async fn workspace_with_team(
    address: &str,
    name: &str,
    team: serde_json::Value,
) -> (String, String) {
    use waos_web::testing::{ADMIN_TOKEN, PHONE_NUMBER_ID_1};
    let id = |value: serde_json::Value| value["id"].as_str().unwrap().to_owned();
    let workspace = id(api(
        address,
        "/api/v1/workspaces",
        ADMIN_TOKEN,
        serde_json::json!({"name": name}),
    )
    .await);
    let base = format!("/api/v1/workspaces/{workspace}");
    let team = id(api(address, &format!("{base}/teams"), ADMIN_TOKEN, team).await);
    api(address, &format!("{base}/channels"), ADMIN_TOKEN,
        serde_json::json!({"phone_number_id": PHONE_NUMBER_ID_1, "display_phone_number": "+1 555 0100", "access_token": "t", "team_id": team})).await;
    (workspace, team)
}

/// An agent `name` of `team` with `capacity`, signed in; its session token.
async fn agent_signed_in(
    address: &str,
    workspace: &str,
    team: &str,
    name: &str,
    capacity: u32,
) -> String {
    use waos_web::testing::{ADMIN_TOKEN, PASSWORD};
    let email = format!("{name}@binary.example");
    api(address, &format!("/api/v1/workspaces/{workspace}/agents"), ADMIN_TOKEN,
        serde_json::json!({"name": name, "email": email, "password": PASSWORD, "role": "agent", "capacity": capacity, "team_ids": [team]})).await;
    api(
        address,
        "/api/v1/auth/login",
        "",
        serde_json::json!({"email": email, "password": PASSWORD}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn customer_writes(address: &str, customer: usize) {
    let body =
        crate::concurrency::text_body(&format!("wamid.restart-{customer}"), customer, "hello");
    let response = waos_web::testing::http_client()
        .post(format!("{address}/webhooks/whatsapp"))
        .header("x-hub-signature-256", waos_web::testing::sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[actix_web::test]
async fn after_kill_9_every_open_conversation_is_routed_again() {
    use serde_json::json;
    use waos_web::testing::{Backend, TestDatabase, connect_agent_at};

    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    let first = serve(&database.url, &folder);
    until_healthy(&first.address).await;
    let address = first.address.clone();
    let (workspace, team) = workspace_with_team(
        &address,
        "Restart",
        json!({"name": "Support", "offer_timeout_secs": 60}),
    )
    .await;
    let mut tokens = Vec::new();
    for name in ["ann", "bob"] {
        tokens.push(agent_signed_in(&address, &workspace, &team, name, 2).await);
    }

    // Ann takes two conversations; a third is offered to her when the process dies; a fourth waits.
    let (mut ann, _) = connect_agent_at(&address, &tokens[0]).await;
    let mut held = Vec::new();
    for customer in 1..=2 {
        customer_writes(&address, customer).await;
        let offer = ann.expect("offer").await;
        ann.send(json!({"type": "accept", "conversation_id": offer["conversation_id"]}))
            .await;
        ann.expect("assigned").await;
        held.push(offer["conversation_id"].as_str().unwrap().to_owned());
    }
    customer_writes(&address, 3).await;
    customer_writes(&address, 4).await;
    drop(ann);

    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL: no drain, no goodbye.
    first.child.wait().unwrap();

    let second = serve(&database.url, &folder);
    until_healthy(&second.address).await;
    // Ann comes back: she still holds her two.
    let (_ann, hello) = connect_agent_at(&second.address, &tokens[0]).await;
    let mut again: Vec<String> = hello["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    again.sort();
    held.sort();
    assert_eq!(
        again, held,
        "assigned conversations survive the crash with their agent"
    );
    // Bob gets the two that were waiting or offered when the process died.
    let (mut bob, _) = connect_agent_at(&second.address, &tokens[1]).await;
    for _ in 0..2 {
        let offer = bob.expect("offer").await;
        assert!(!held.contains(&offer["conversation_id"].as_str().unwrap().to_owned()));
        bob.send(json!({"type": "accept", "conversation_id": offer["conversation_id"]}))
            .await;
        bob.expect("assigned").await;
    }
    // None stuck, none held by two: all four assigned, two each.
    let db = waos_web::testing::connect_database(&database.url, 2).await;
    let list = || async {
        waos_engine::inbox::list_conversations(
            &db,
            &waos_engine::auth::Principal::Installation,
            None,
            &waos_engine::inbox::PageRequest::default(),
        )
        .await
        .unwrap()
    };
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        list().await.items.iter().all(|c| {
            c.status == waos_engine::store::entity::conversation::ConversationStatus::Assigned
        })
    })
    .await;
    let page = list().await;
    let mut per_agent = std::collections::HashMap::new();
    for conversation in &page.items {
        *per_agent.entry(conversation.assigned_agent_id).or_insert(0) += 1;
    }
    let mut second = second;
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    assert_eq!(page.items.len(), 4);
    assert!(
        page.items
            .iter()
            .all(|c| c.status
                == waos_engine::store::entity::conversation::ConversationStatus::Assigned),
        "{:?}",
        page.items.iter().map(|c| &c.status).collect::<Vec<_>>()
    );
    assert!(per_agent.values().all(|&n| n == 2), "{per_agent:?}");
    assert_logs_hold_no_secret(&folder, &[]);
    std::fs::remove_dir_all(folder).unwrap();
}

/// SIGTERM in the middle of a stream of webhooks: `waos serve` stops taking connections,
/// closes the agent's socket with a "going away" close frame, finishes what it acknowledged,
/// writes every audit event and exits 0. Every webhook answered 200 is stored, and every stored
/// conversation's routing is in the audit.
#[actix_web::test]
async fn sigterm_during_load_loses_nothing_and_closes_sockets() {
    use serde_json::json;
    use waos_web::testing::{Backend, TestDatabase, connect_agent_at, connect_database, sign};

    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    let mut served = serve(&database.url, &folder);
    let (child, address) = (&mut served.child, served.address.clone());
    until_healthy(&address).await;
    let client = waos_web::testing::http_client();

    let (workspace, team) = workspace_with_team(
        &address,
        "Shutdown",
        json!({"name": "Support", "auto_accept": true}),
    )
    .await;
    let token = agent_signed_in(&address, &workspace, &team, "night", 1000).await;
    let (mut socket, _) = connect_agent_at(&address, &token).await;

    // Customers keep writing, eight webhooks at a time, until the server stops answering.
    let load = {
        let (client, address) = (client.clone(), address.clone());
        actix_web::rt::spawn(async move {
            let mut acknowledged = Vec::new();
            for round in 0.. {
                let posts = (0..8).map(|i| {
                    let (client, address) = (client.clone(), address.clone());
                    async move {
                        let wamid = format!("wamid.shutdown-{round}-{i}");
                        let body = crate::concurrency::text_body(&wamid, round * 8 + i, "hello");
                        let answer = client
                            .post(format!("{address}/webhooks/whatsapp"))
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", sign(&body))
                            .body(body)
                            .send()
                            .await;
                        (wamid, answer.map(|a| a.status().as_u16()))
                    }
                });
                let answers = futures_util::future::join_all(posts).await;
                let stopped = answers.iter().any(|(_, answer)| answer.is_err());
                acknowledged.extend(
                    answers
                        .into_iter()
                        .filter(|(_, answer)| matches!(answer, Ok(200)))
                        .map(|(wamid, _)| wamid),
                );
                if stopped {
                    break;
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());

    let close = socket
        .expect_closed(Duration::from_secs(10))
        .await
        .expect("the socket closed with a close frame");
    assert_eq!(
        close.map(|frame| frame.code),
        Some(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away)
    );
    let acknowledged = load.await.unwrap();
    let mut exited = None;
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = exited else {
        child.kill().unwrap();
        panic!("waos serve did not stop within 20 s of SIGTERM");
    };
    assert!(status.success(), "waos serve exited with {status}");
    assert!(
        acknowledged.len() >= 16,
        "the load ran: {}",
        acknowledged.len()
    );

    let db = connect_database(&database.url, 1).await;
    let scalar = |sql: String| scalar(&db, sql);
    let quoted: Vec<String> = acknowledged.iter().map(|w| format!("'{w}'")).collect();
    let stored = scalar(format!(
        "SELECT COUNT(*) AS n FROM messages WHERE wamid IN ({})",
        quoted.join(",")
    ))
    .await;
    assert_eq!(
        stored,
        acknowledged.len() as i64,
        "an acknowledged webhook was lost"
    );
    let conversations = scalar("SELECT COUNT(*) AS n FROM conversations".into()).await;
    let queued = scalar(
        "SELECT COUNT(DISTINCT conversation_id) AS n FROM audit_events WHERE kind = 'queued'"
            .into(),
    )
    .await;
    assert_eq!(
        queued, conversations,
        "a conversation's audit was not written"
    );
    let assigned =
        scalar("SELECT COUNT(*) AS n FROM conversations WHERE status = 'assigned'".into()).await;
    let assigned_events = scalar(
        "SELECT COUNT(DISTINCT conversation_id) AS n FROM audit_events WHERE kind = 'assigned'"
            .into(),
    )
    .await;
    assert_eq!(
        assigned_events, assigned,
        "an assignment's audit was not written"
    );
    db.close().await.unwrap();
    assert_logs_hold_no_secret(&folder, &[]);
    std::fs::remove_dir_all(folder).unwrap();
}

/// HTTPS with a certificate the test makes, HSTS on every answer, no plain HTTP beside it;
/// JSON logs at trace level whose every line parses, carry request ids, and hold none of the
/// secrets the run used (admin token, password, session, ticket, API token, app secret).
#[actix_web::test]
async fn serve_speaks_https_and_its_json_trace_logs_hold_no_secret() {
    use serde_json::json;
    use waos_web::testing::{ADMIN_TOKEN, APP_SECRET, Backend, PASSWORD, TestDatabase};

    waos_workers::install_tls();
    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(folder.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        folder.join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let log_path = folder.join("waos.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let cert = folder.join("cert.pem").display().to_string();
    let key = folder.join("key.pem").display().to_string();
    let mut served = serve_with(
        &database.url,
        &folder,
        &[
            ("WAOS__SERVER__TLS_CERT_FILE", &cert),
            ("WAOS__SERVER__TLS_KEY_FILE", &key),
            ("WAOS__LOG__FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
        Stdio::from(log),
        "https",
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let address = served.address.clone();
    until_healthy_with(&client, &address).await;

    let health = client
        .get(format!("{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let hsts = health.headers().get("strict-transport-security").unwrap();
    assert!(hsts.to_str().unwrap().starts_with("max-age="), "{hsts:?}");
    assert!(health.headers().get("x-request-id").is_some());
    let plain = address.replacen("https", "http", 1);
    let refused = waos_web::testing::http_client()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(
        refused.map_or(true, |response| !response.status().is_success()),
        "plain HTTP must not be served beside HTTPS"
    );

    // Every kind of secret, once each.
    let post = |path: &str, token: &str, body: serde_json::Value| {
        client
            .post(format!("{address}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let workspace: serde_json::Value =
        post("/api/v1/workspaces", ADMIN_TOKEN, json!({"name": "Tls"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let workspace = workspace["id"].as_str().unwrap();
    let agents = format!("/api/v1/workspaces/{workspace}/agents");
    let created = post(
        &agents,
        ADMIN_TOKEN,
        json!({"name": "Ann", "email": "ann@tls.example",
        "password": PASSWORD, "role": "admin"}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let wrong_password = "a wrong password 8d1f";
    let refused = post(
        "/api/v1/auth/login",
        "",
        json!({"email": "ann@tls.example", "password": wrong_password}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 401);
    let session: serde_json::Value = post(
        "/api/v1/auth/login",
        "",
        json!({"email": "ann@tls.example", "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let session = session["token"].as_str().unwrap().to_owned();
    let ticket: serde_json::Value = post("/api/v1/auth/ws-ticket", &session, json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    // A websocket request carrying the ticket in its query (refused: no upgrade headers).
    client
        .get(format!("{address}/ws/agent?ticket={ticket}"))
        .send()
        .await
        .unwrap();
    let api_token: serde_json::Value = post(
        &format!("/api/v1/workspaces/{workspace}/api-tokens"),
        &session,
        json!({"name": "CRM", "role": "supervisor"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let api_token = api_token["token"].as_str().unwrap().to_owned();
    assert_eq!(
        client
            .get(format!("{address}/api/v1/conversations"))
            .bearer_auth(&api_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let private_words = "my card number is 4000 0566 5566 5556";
    let body = crate::concurrency::text_body("wamid.tls-1", 1, private_words);
    let webhook = client
        .post(format!("{address}/webhooks/whatsapp"))
        .header("x-hub-signature-256", waos_web::testing::sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(webhook.status().is_client_error() || webhook.status().is_success());

    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        lines.len() > 20,
        "a trace-level run logs plenty: {}",
        lines.len()
    );
    let (mut with_request_id, mut with_workspace) = (0, 0);
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        if ["INFO", "WARN", "ERROR"].contains(&entry["level"].as_str().unwrap_or("")) {
            assert!(
                !line.contains(private_words),
                "a message body at info or above: {line}"
            );
        }
        if entry["span"]["request_id"].is_string() {
            with_request_id += 1;
        }
        if entry["span"]["workspace"] == workspace {
            with_workspace += 1;
        }
    }
    assert!(with_request_id > 0, "request lines carry their request id");
    assert!(
        with_workspace > 0,
        "a signed-in caller's lines name its workspace"
    );
    for (what, secret) in [
        ("the admin token", ADMIN_TOKEN),
        ("a password", PASSWORD),
        ("a wrong password", wrong_password),
        ("a session token", session.as_str()),
        ("a websocket ticket", ticket.as_str()),
        ("an API token", api_token.as_str()),
        ("the app secret", APP_SECRET),
    ] {
        assert!(!text.contains(secret), "the log holds {what}");
    }
    assert_logs_hold_no_secret(&folder, &[]);
    std::fs::remove_dir_all(folder).unwrap();
}

/// An SLA deadline that passes while the process is down (kill -9) is reported right after the
/// restart: the conversation's actor starts from the stored due date and fires at once.
#[actix_web::test]
async fn an_sla_deadline_passed_during_kill_9_breaches_right_after_restart() {
    use serde_json::json;
    use waos_web::testing::{ADMIN_TOKEN, Backend, TestDatabase};

    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    // One second of a policy lasts 10 ms: a 200-second first response is due in 2 s.
    let settings = [("RUST_LOG", "info"), ("WAOS__ROUTING__TIME_UNIT_MS", "10")];
    let first = serve_with(&database.url, &folder, &settings, Stdio::null(), "http");
    until_healthy(&first.address).await;
    let address = first.address.clone();
    let workspace = api(
        &address,
        "/api/v1/workspaces",
        ADMIN_TOKEN,
        json!({"name": "Deadline"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = api(
        &address,
        &format!("/api/v1/workspaces/{workspace}/sla-policies"),
        ADMIN_TOKEN,
        json!({"name": "Gold", "first_response_secs": 200}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team = api(
        &address,
        &format!("/api/v1/workspaces/{workspace}/teams"),
        ADMIN_TOKEN,
        json!({"name": "Support", "sla_policy_id": policy}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api(&address, &format!("/api/v1/workspaces/{workspace}/channels"), ADMIN_TOKEN,
        json!({"phone_number_id": "115566778899001", "display_phone_number": "x", "access_token": "t", "team_id": team})).await;
    let body = crate::concurrency::text_body_at(
        "wamid.deadline-1",
        1,
        "hello",
        chrono::Utc::now().timestamp(),
    );
    let response = waos_web::testing::http_client()
        .post(format!("{address}/webhooks/whatsapp"))
        .header("x-hub-signature-256", waos_web::testing::sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let db = waos_web::testing::connect_database(&database.url, 2).await;
    let open = || async {
        waos_engine::inbox::list_conversations(
            &db,
            &waos_engine::auth::Principal::Installation,
            None,
            &waos_engine::inbox::PageRequest::default(),
        )
        .await
        .unwrap()
        .items
    };
    // The policy is applied and its due date stored; the process dies before it.
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        open().await[0]
            .sla
            .as_ref()
            .is_some_and(|sla| sla.first_response_due_at.is_some())
    })
    .await;
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let conversation = open().await[0].clone();
    let due = conversation.sla.unwrap().first_response_due_at.unwrap();
    let id = conversation.id;
    let breaches = || async {
        waos_engine::inbox::conversation_audit(&db, &waos_engine::auth::Principal::Installation, id)
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.kind == "sla_breached")
            .count()
    };
    assert_eq!(breaches().await, 0, "not breached before the deadline");
    // Down past the deadline.
    while chrono::Utc::now() <= due + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = serve_with(&database.url, &folder, &settings, Stdio::null(), "http");
    until_healthy(&second.address).await;
    let ready = std::time::Instant::now();
    waos_web::testing::eventually(Duration::from_secs(5), || async { breaches().await == 1 }).await;
    let reported_within = ready.elapsed();
    waos_web::testing::eventually(Duration::from_secs(5), || async {
        open().await[0]
            .sla
            .as_ref()
            .is_some_and(|sla| sla.breached == [waos_engine::time::clocks::Metric::FirstResponse])
    })
    .await;
    let mut second = second;
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    assert!(
        reported_within < Duration::from_secs(5),
        "reported {reported_within:?} after the restart"
    );
}

/// A webhook of customer `customer`; whether it was acknowledged (false once the server died).
async fn customer_writes_if_up(address: &str, customer: usize) -> bool {
    let body = crate::concurrency::text_body_at(
        &format!("wamid.facts-{customer}"),
        customer,
        "hello",
        chrono::Utc::now().timestamp(),
    );
    waos_web::testing::http_client()
        .post(format!("{address}/webhooks/whatsapp"))
        .header("x-hub-signature-256", waos_web::testing::sign(&body))
        .body(body)
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
}

/// `kill -9` while conversations arrive, are offered and accepted, and the rollers fold their
/// facts every few milliseconds: after the restart the rollups equal a recount of the facts
/// (nothing counted twice or never), and every conversation's cycle is counted once.
#[actix_web::test]
async fn after_kill_9_under_load_the_rollups_equal_a_recount_of_the_facts() {
    use serde_json::json;
    use waos_engine::reports::rollup;
    use waos_web::testing::{Backend, TestDatabase, connect_agent_at};

    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    let settings = [
        ("RUST_LOG", "info"),
        ("WAOS__REPORTS__ROLLUP_INTERVAL_MS", "5"),
    ];
    let first = serve_with(&database.url, &folder, &settings, Stdio::null(), "http");
    until_healthy(&first.address).await;
    let address = first.address.clone();
    let (workspace, team) =
        workspace_with_team(&address, "Facts", json!({"name": "Support"})).await;
    let token = agent_signed_in(&address, &workspace, &team, "ann", 1000).await;
    // Ann accepts every offer (queue waits and offers-before-acceptance facts).
    let (mut ann, _) = connect_agent_at(&address, &token).await;
    let accepting = actix_web::rt::spawn(async move {
        while let Some(frame) = ann.next_frame(Duration::from_secs(5)).await {
            if frame["type"] == "offer" {
                ann.send(json!({"type": "accept", "conversation_id": frame["conversation_id"]}))
                    .await;
            }
        }
    });
    let db = waos_web::testing::connect_database(&database.url, 2).await;
    let facts = |rolled: bool| {
        let db = db.clone();
        async move {
            use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
            waos_engine::store::entity::conversation_fact::Entity::find()
                .filter(waos_engine::store::entity::conversation_fact::Column::Rolled.eq(rolled))
                .count(&db)
                .await
                .unwrap()
        }
    };
    // Customers write, ten at a time, until the process dies.
    let sending = {
        let address = address.clone();
        actix_web::rt::spawn(async move {
            let mut acknowledged = 0;
            for batch in 0..100 {
                let sends = (0..10).map(|i| customer_writes_if_up(&address, batch * 10 + i + 1));
                let answered = futures_util::future::join_all(sends).await;
                acknowledged += answered.iter().filter(|ok| **ok).count();
                if answered.iter().any(|ok| !ok) {
                    break;
                }
            }
            acknowledged
        })
    };
    // Die while facts are being written and folded.
    waos_web::testing::eventually(Duration::from_secs(20), || async {
        facts(true).await >= 150
    })
    .await;
    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL: a fold may be half done.
    first.child.wait().unwrap();
    let acknowledged = sending.await.unwrap();
    accepting.abort();
    assert!(acknowledged > 0);

    let second = serve_with(&database.url, &folder, &settings, Stdio::null(), "http");
    until_healthy(&second.address).await;
    // The new process recovers every open conversation (each actor's start records its cycle's
    // `opened`, which a kill between the state write and the fact may have lost), and its
    // rollers fold what was left: wait for both, not for the first moment nothing is unrolled
    // (under load the last actors start after that).
    let conversations = {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        use waos_engine::store::entity::conversation;
        conversation::Entity::find()
            .filter(conversation::Column::WorkspaceId.eq(workspace.clone()))
            .count(&db)
            .await
            .unwrap() as usize
    };
    assert!(
        conversations >= acknowledged,
        "{conversations} < {acknowledged}"
    );
    let opened = |span: &'static str| {
        let db = db.clone();
        let workspace = workspace.clone();
        async move {
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            use waos_engine::store::entity::rollup;
            rollup::Entity::find()
                .filter(rollup::Column::WorkspaceId.eq(workspace))
                .filter(rollup::Column::Span.eq(span))
                .filter(rollup::Column::Scope.eq("workspace"))
                .filter(rollup::Column::Metric.eq(waos_engine::reports::FactMetric::Opened))
                .all(&db)
                .await
                .unwrap()
                .iter()
                .map(|row| row.count)
                .sum::<i64>()
        }
    };
    waos_web::testing::eventually(Duration::from_secs(20), || async {
        facts(false).await == 0 && opened("day").await == conversations as i64
    })
    .await;
    let mut second = second;
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    let differences = rollup::differences(&db, &workspace).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    // Each acknowledged customer's conversation opened one cycle, counted once in the
    // workspace's rollups (the day rows and the month rows alike).
    assert_eq!(opened("day").await, conversations as i64);
    assert_eq!(opened("month").await, conversations as i64);
    std::fs::remove_dir_all(folder).unwrap();
}

/// `sql`'s one number, named `n`.
async fn scalar(db: &sea_orm::DatabaseConnection, sql: String) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The node the node at `address` sees holding `workspace` (`None`: nobody, or no answer).
async fn holder_at(client: &reqwest::Client, address: &str, workspace: &str) -> Option<String> {
    let view: serde_json::Value = client
        .get(format!("{address}/api/v1/cluster"))
        .bearer_auth(waos_web::testing::ADMIN_TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    view["nodes"]
        .as_array()?
        .iter()
        .find(|node| {
            node["workspaces"]
                .as_array()
                .is_some_and(|held| held.iter().any(|w| w["workspace_id"] == workspace))
        })
        .and_then(|node| node["node"].as_str())
        .map(str::to_owned)
}

/// An agent's console on the node at `address`: it accepts every offer, and opens its socket
/// again whenever the server closes it (its owner died); answers when each offer came.
async fn accept_everything(
    address: &str,
    token: &str,
    stop: &std::cell::Cell<bool>,
) -> Vec<std::time::Instant> {
    use serde_json::json;
    let mut offers = Vec::new();
    while !stop.get() {
        let Ok(mut socket) =
            waos_web::testing::try_connect_socket_at(address, "/ws/agent", token).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !stop.get() {
            match socket.next_or_closed(Duration::from_millis(100)).await {
                Ok(Some(frame)) if frame["type"] == "offer" => {
                    offers.push(std::time::Instant::now());
                    let accept =
                        json!({"type": "accept", "conversation_id": frame["conversation_id"]});
                    if socket.try_send(accept).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    offers
}

/// `kill -9` of the node that owns the workspace, under load: customers write to both nodes
/// (a load balancer's round robin; a webhook that gets no 200 is sent again to a node that
/// answers, as Meta retries), agents' consoles are on the surviving node. The survivor takes
/// the workspace over within the lease plus recovery (measured and printed), every webhook
/// acknowledged is stored once, and in the end every conversation is held by exactly one
/// agent: the one whose console lists it.
#[actix_web::test]
async fn kill_9_of_the_owning_node_under_load_loses_nothing() {
    use std::time::Instant;
    use waos_web::testing::{Backend, TestDatabase, connect_agent_at, nats_url};

    const WEBHOOKS: usize = 400;
    const EVERY: Duration = Duration::from_millis(10);
    let lease_ms: u64 = 1000;
    // One client: making one per request would stall this one-threaded test for seconds.
    let client = waos_web::testing::http_client();
    let database = TestDatabase::create(Backend::Postgres).await;
    let folder = scratch();
    let prefix = format!("waos_test_kill_{}", uuid::Uuid::new_v4().simple());
    let _bucket = crate::cluster::Bucket(format!("{prefix}_leases"));
    let node = |id: &str| {
        let log = std::fs::File::create(folder.join(format!("serve-{id}.log"))).unwrap();
        let lease = lease_ms.to_string();
        serve_with(
            &database.url,
            &folder,
            &[
                ("RUST_LOG", "info,waos_engine::cluster=debug"),
                ("WAOS__CLUSTER__NATS_URL", &nats_url()),
                ("WAOS__CLUSTER__PREFIX", &prefix),
                ("WAOS__CLUSTER__NODE_ID", id),
                ("WAOS__CLUSTER__LEASE_MS", &lease),
            ],
            Stdio::from(log),
            "http",
        )
    };
    let mut a = node("node-a");
    until_healthy(&a.address).await;
    let (workspace, team) = workspace_with_team(
        &a.address,
        "Failover",
        serde_json::json!({"name": "Support", "offer_timeout_secs": 60}),
    )
    .await;
    let mut tokens = Vec::new();
    for name in ["ann", "bob", "cat", "dan"] {
        tokens.push(agent_signed_in(&a.address, &workspace, &team, name, 150).await);
    }
    waos_web::testing::eventually(Duration::from_secs(10), || async {
        holder_at(&client, &a.address, &workspace).await.as_deref() == Some("node-a")
    })
    .await;
    let mut b = node("node-b");
    until_healthy(&b.address).await;
    waos_web::testing::eventually(Duration::from_secs(10), || async {
        holder_at(&client, &b.address, &workspace).await.as_deref() == Some("node-a")
    })
    .await;

    let stop = std::cell::Cell::new(false);
    let acknowledged = std::cell::RefCell::new(Vec::new());
    let started = Instant::now();
    let nodes = [a.address.clone(), b.address.clone()];
    let customers = futures_util::future::join_all((0..WEBHOOKS).map(|i| {
        let (nodes, acknowledged, client) = (&nodes, &acknowledged, &client);
        async move {
            tokio::time::sleep_until((started + EVERY * i as u32).into()).await;
            let wamid = format!("wamid.kill-{i}");
            let body = crate::concurrency::text_body(&wamid, i, "hello");
            for attempt in 0..100 {
                let response = client
                    .post(format!("{}/webhooks/whatsapp", nodes[(i + attempt) % 2]))
                    .header("x-hub-signature-256", waos_web::testing::sign(&body))
                    .body(body.clone())
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status() == 200) {
                    acknowledged.borrow_mut().push(wamid);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{wamid} was never acknowledged");
        }
    }));
    // a dies a third of the way through; b is watched until it holds the workspace.
    let failover = async {
        tokio::time::sleep_until((started + EVERY * (WEBHOOKS / 3) as u32).into()).await;
        a.child.kill().unwrap();
        let died = Instant::now();
        a.child.wait().unwrap();
        waos_web::testing::eventually(Duration::from_secs(20), || async {
            holder_at(&client, &b.address, &workspace).await.as_deref() == Some("node-b")
        })
        .await;
        (died, died.elapsed())
    };
    let consoles = futures_util::future::join_all(
        tokens
            .iter()
            .map(|token| accept_everything(&b.address, token, &stop)),
    );
    let db = waos_web::testing::connect_database(&database.url, 2).await;
    let count = |filter: String| scalar(&db, format!("SELECT COUNT(*) AS n FROM {filter}"));
    let settle = async {
        customers.await;
        // Every conversation offered and accepted: none left waiting or offered.
        waos_web::testing::eventually(Duration::from_secs(60), || async {
            count("conversations WHERE status <> 'assigned'".into()).await == 0
        })
        .await;
        stop.set(true);
    };
    let (_, (died, taken_after), offers) = futures_util::join!(settle, failover, consoles);

    // Every acknowledged webhook stored once, each its own customer's one conversation.
    let acknowledged = acknowledged.into_inner();
    assert_eq!(acknowledged.len(), WEBHOOKS);
    assert_eq!(
        count("messages WHERE direction = 'in'".into()).await,
        WEBHOOKS as i64
    );
    assert_eq!(
        count("(SELECT DISTINCT wamid FROM messages WHERE direction = 'in') AS stored".into())
            .await,
        WEBHOOKS as i64
    );
    assert_eq!(count("conversations".into()).await, WEBHOOKS as i64);
    // Each held by exactly one agent, the one whose console lists it.
    let mut listed = std::collections::HashMap::new();
    for token in &tokens {
        let (_, hello) = connect_agent_at(&b.address, token).await;
        let agent = hello["agent_id"].as_str().unwrap().to_owned();
        for conversation in hello["conversations"].as_array().unwrap() {
            let id = conversation["id"].as_str().unwrap().to_owned();
            let before = listed.insert(id.clone(), agent.clone());
            assert!(before.is_none(), "{id} listed by two agents");
            assert_eq!(
                count(format!(
                    "conversations WHERE id = '{id}' AND assigned_agent_id = '{agent}'"
                ))
                .await,
                1
            );
        }
    }
    assert_eq!(listed.len(), WEBHOOKS, "every conversation held");
    // (Frames a sent just before it died may still arrive after the kill.)
    let held_at = died + taken_after;
    let resumed_after = offers
        .iter()
        .flatten()
        .filter(|at| **at > held_at)
        .min()
        .map(|at| at.duration_since(died));
    eprintln!(
        "kill -9 failover: lease {lease_ms} ms; workspace held by node-b {} ms after the kill; \
         first offer from node-b {:?} after the kill; {} webhooks acknowledged, {} conversations held",
        taken_after.as_millis(),
        resumed_after,
        acknowledged.len(),
        listed.len()
    );
    assert!(
        taken_after < Duration::from_millis(lease_ms * 3),
        "taken over in {taken_after:?}, lease {lease_ms} ms"
    );
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    assert_logs_hold_no_secret(&folder, &[]);
    std::fs::remove_dir_all(folder).unwrap();
}
