//! A real server on port 0 with its own database, and what tests ask of it: REST calls with
//! their expected status, signed webhooks, the fixtures' world, and reads straight from the
//! database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use super::database::{TestDatabase, connect_database};
use super::log::trace_log;
use super::{
    ADMIN_TOKEN, APP_SECRET, Backend, PASSWORD, RecordingHandoff, VERIFY_TOKEN, redis_url,
};
use crate::settings::Settings;
use crate::startup::Application;

/// Settings for a test app: port 0, quick timers, cheap password hashing, test secrets.
pub fn test_settings(database_url: &str, folder: &Path) -> Settings {
    let overlay = format!(
        r#"
[server]
port = 0
workers = 2
shutdown_timeout_ms = 500
[database]
url = "{database_url}"
max_connections = 8
acquire_timeout_ms = 1000
[redis]
key_prefix = "waos:test:{prefix}:"
[meta]
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY_TOKEN}"
graph_url = "http://127.0.0.1:9/v25.0"
[admin]
token = "{ADMIN_TOKEN}"
token_file = "{folder}/admin-token"
[security]
secret_key_file = "{folder}/secret-key"
argon2_memory_kib = 1024
argon2_iterations = 1
[ingest]
commit_timeout_ms = 2000
[routing]
disconnect_grace_ms = 300
decline_cooldown_ms = 60000
reopen_window_ms = 60000
# A team's offer_timeout_secs of 10 lasts 200 ms here.
offer_timeout_unit_ms = 20
# An SLA target or auto-resolve time of 10 seconds lasts 100 ms here.
time_unit_ms = 10
presence_ttl_ms = 600
stats_interval_ms = 50
[outbound]
poll_interval_ms = 20
backoff_base_ms = 50
backoff_max_ms = 200
max_attempts = 4
number_rate_per_sec = 1000
number_burst = 100
customer_interval_ms = 100
customer_burst = 5
[media]
dir = "{folder}/media"
poll_interval_ms = 20
backoff_base_ms = 50
[websocket]
heartbeat_interval_ms = 200
client_timeout_ms = 2000
"#,
        prefix = uuid::Uuid::new_v4().simple(),
        folder = folder.display(),
    );
    Settings::load_from(Path::new("config"), None, Some(&overlay)).unwrap()
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A connection of the test's own, for assertions on what was stored.
    pub db: DatabaseConnection,
    pub handoff: Arc<RecordingHandoff>,
    pub settings: Settings,
    server: actix_web::dev::ServerHandle,
    /// The routing engine and the sender, alive as long as the app.
    pub background: Option<crate::startup::Background>,
    /// Secrets this app's requests made (session and API tokens, tickets): none may reach
    /// the log (checked when the app is dropped, with the fixed test secrets).
    pub secrets: Mutex<Vec<String>>,
    // Declared last: dropped after the server stops.
    pub database: TestDatabase,
    folder: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check_log_holds_no_secret();
        }
        let _ = std::fs::remove_dir_all(&self.folder);
        if !self.settings.redis.url.is_empty() {
            // Leave nothing behind in the shared Redis: every key under this app's prefix. (Straight
            // to the server: a test's proxy cannot forward while this thread blocks.)
            if let Ok(mut redis) =
                redis::Client::open(redis_url()).and_then(|client| client.get_connection())
            {
                let pattern = format!("{}*", self.settings.redis.key_prefix);
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query(&mut redis)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut redis);
                }
            }
        }
        drop(self.server.stop(false));
    }
}

/// An HTTP client for tests (on the process's TLS provider, installed here if need be).
pub fn http_client() -> reqwest::Client {
    waos_workers::install_tls();
    reqwest::Client::new()
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_, _| {}).await
}

/// Spawns an app after `adjust` has changed its settings (given the database for URLs).
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings, &TestDatabase),
) -> TestApp {
    trace_log();
    let database = TestDatabase::create(backend).await;
    let folder = std::env::temp_dir().join(format!("waos-app-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    let mut settings = test_settings(&database.url, &folder);
    // Postgres runs with Redis (presence), as in production; SQLite with the in-process default.
    if backend == Backend::Postgres {
        settings.redis.url = redis_url();
    }
    adjust(&mut settings, &database);
    start(settings, database, folder).await
}

/// Builds the app of `settings` and serves it in the background.
async fn start(settings: Settings, database: TestDatabase, folder: PathBuf) -> TestApp {
    let handoff = Arc::new(RecordingHandoff::default());
    let application = Application::build_observed(settings.clone(), Some(handoff.clone()))
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let (server, background) = application.into_parts();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let db = connect_database(&database.url, 4).await;
    TestApp {
        address,
        client: http_client(),
        db,
        handoff,
        settings,
        server: handle,
        background: Some(background),
        secrets: Mutex::default(),
        database,
        folder,
    }
}

/// Another node of `first`'s cluster: the same database, Redis prefix, secrets and cluster
/// prefix, its own port and node id (`node`).
pub async fn spawn_node(first: &TestApp, node: &str) -> TestApp {
    assert!(
        !first.settings.cluster.nats_url.is_empty(),
        "the first node must be clustered"
    );
    let folder = std::env::temp_dir().join(format!("waos-app-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).unwrap();
    let mut settings = first.settings.clone();
    settings.cluster.node_id = node.to_owned();
    start(settings, first.database.shared(), folder).await
}

/// `sha256=<hex>` of `body` under the test app secret.
pub fn sign(body: &[u8]) -> String {
    waos_engine::crypto::webhook_signature(APP_SECRET.as_bytes(), body).unwrap()
}

/// The fixture world of the payloads: one workspace, a team, and channels for every
/// phone_number_id the fixtures use except `115566778899002`, which stays unknown (unrouted).
pub struct World {
    pub workspace_id: String,
    pub team_id: String,
    pub admin_token: String,
}

pub const PHONE_NUMBER_ID_1: &str = "115566778899001";
pub const PHONE_NUMBER_ID_UNKNOWN: &str = "115566778899002";
/// The numbers of the pywa corpus (its placeholder `<BUSINESS_PHONE_NUMBER_ID>` stays unrouted).
pub const PYWA_PHONE_NUMBER_IDS: [&str; 2] = ["1122334455667", "106540352242922"];

impl TestApp {
    /// Stops answering HTTP (sockets included), as a killed process would.
    pub async fn stop_server(&self) {
        self.server.stop(false).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_webhook(&self, body: &[u8]) -> reqwest::Response {
        self.post_webhook_signed(body, Some(&sign(body))).await
    }

    /// A signed webhook, or the transport's error (a connection closed under load: Meta
    /// sends it again, as it does after a 503).
    pub async fn try_post_webhook(&self, body: &[u8]) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(body))
            .body(body.to_vec())
            .send()
            .await
    }

    pub async fn post_webhook_signed(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, token).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, token).await
    }

    /// A body-less request with a bearer token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs and returns the JSON of a response that must have `status`.
    pub async fn post_ok(&self, path: &str, token: &str, body: &Value, status: u16) -> Value {
        let response = self.post(path, token, body).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "POST {path}: {text}");
        let answer = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.remember_secrets(&answer);
        answer
    }

    pub async fn get_ok(&self, path: &str, token: &str) -> Value {
        let response = self.get(path, token).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn create_workspace(&self, name: &str) -> String {
        let created = self
            .post_ok(
                "/api/v1/workspaces",
                ADMIN_TOKEN,
                &json!({"name": name}),
                201,
            )
            .await;
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_team(&self, workspace_id: &str, name: &str) -> String {
        self.create_team_with(workspace_id, json!({"name": name}))
            .await
    }

    /// Creates a team from a whole request body (`auto_accept`, `offer_timeout_secs`, ...).
    pub async fn create_team_with(&self, workspace_id: &str, body: Value) -> String {
        let created = self
            .post_ok(
                &format!("/api/v1/workspaces/{workspace_id}/teams"),
                ADMIN_TOKEN,
                &body,
                201,
            )
            .await;
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_channel(
        &self,
        workspace_id: &str,
        team_id: &str,
        phone_number_id: &str,
    ) -> String {
        let created = self
            .post_ok(
                &format!("/api/v1/workspaces/{workspace_id}/channels"),
                ADMIN_TOKEN,
                &json!({"phone_number_id": phone_number_id, "display_phone_number": "+1 555 0100",
                        "access_token": "EAAG-test-token", "team_id": team_id}),
                201,
            )
            .await;
        created["id"].as_str().unwrap().to_owned()
    }

    /// Creates an agent (capacity 3) and signs it in; returns (agent id, session token).
    pub async fn create_agent(
        &self,
        workspace_id: &str,
        email: &str,
        role: &str,
        team_ids: &[&str],
    ) -> (String, String) {
        self.create_agent_with(workspace_id, email, role, team_ids, 3)
            .await
    }

    /// Creates an agent with a capacity and signs it in; returns (agent id, session token).
    pub async fn create_agent_with(
        &self,
        workspace_id: &str,
        email: &str,
        role: &str,
        team_ids: &[&str],
        capacity: u32,
    ) -> (String, String) {
        let created = self
            .post_ok(
                &format!("/api/v1/workspaces/{workspace_id}/agents"),
                ADMIN_TOKEN,
                &json!({"name": email, "email": email, "password": PASSWORD, "role": role,
                        "capacity": capacity, "team_ids": team_ids}),
                201,
            )
            .await;
        let session = self
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

    /// Seeds the payload fixtures' world (see [`World`]).
    pub async fn seed_world(&self) -> World {
        let workspace_id = self.create_workspace("Fixture Co").await;
        let team_id = self.create_team(&workspace_id, "Support").await;
        self.create_channel(&workspace_id, &team_id, PHONE_NUMBER_ID_1)
            .await;
        for phone_number_id in PYWA_PHONE_NUMBER_IDS {
            self.create_channel(&workspace_id, &team_id, phone_number_id)
                .await;
        }
        let (_, admin_token) = self
            .create_agent(&workspace_id, "admin@fixture.example", "admin", &[&team_id])
            .await;
        World {
            workspace_id,
            team_id,
            admin_token,
        }
    }

    /// Rows in `table` (optionally with a WHERE clause), straight from the database.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let sql = if filter.is_empty() {
            format!("SELECT COUNT(*) AS n FROM {table}")
        } else {
            format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}")
        };
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// Conversation actors running now, as `/metrics` has it.
    pub async fn conversation_actors(&self) -> i64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix("waos_conversation_actors "))
            .and_then(|value| value.trim().parse().ok())
            .expect("/metrics has waos_conversation_actors")
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs one statement on the test's database (to age rows, say).
    pub async fn execute(&self, sql: &str) {
        self.db
            .execute_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap();
    }

    /// Every value of every table as text, for "this secret is stored nowhere" checks.
    pub async fn everything_stored(&self) -> String {
        let backend = self.db.get_database_backend();
        let texts = |sql: String| async move {
            self.db
                .query_all_raw(Statement::from_string(backend, sql))
                .await
                .unwrap()
                .into_iter()
                .map(|row| {
                    row.try_get::<Option<String>>("", "v")
                        .unwrap()
                        .unwrap_or_default()
                })
                .collect::<Vec<String>>()
        };
        let postgres = backend == sea_orm::DatabaseBackend::Postgres;
        let tables = texts(if postgres {
            "SELECT table_name::text AS v FROM information_schema.tables WHERE table_schema = current_schema()".into()
        } else {
            "SELECT name AS v FROM sqlite_master WHERE type = 'table'".into()
        })
        .await;
        let mut all = String::new();
        for table in tables {
            let sql = if postgres {
                format!("SELECT t::text AS v FROM \"{table}\" t")
            } else {
                let columns = texts(format!(
                    "SELECT name AS v FROM pragma_table_info('{table}')"
                ))
                .await;
                let row = columns
                    .iter()
                    .map(|c| format!("COALESCE(CAST(\"{c}\" AS TEXT), '')"))
                    .collect::<Vec<_>>()
                    .join(" || ' ' || ");
                format!("SELECT {row} AS v FROM \"{table}\"")
            };
            for value in texts(sql).await {
                all.push_str(&value);
                all.push('\n');
            }
        }
        all
    }

    /// One text column of the first row matching `filter`.
    pub async fn scalar(&self, table: &str, column: &str, filter: &str) -> Option<String> {
        let sql = format!("SELECT {column} AS v FROM {table} WHERE {filter}");
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()?;
        row.try_get::<Option<String>>("", "v").unwrap()
    }

    /// Counts of every table the webhook writes, for "replay changes nothing" checks.
    pub async fn snapshot(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "messages",
            "message_statuses",
            "conversations",
            "contacts",
            "unrouted_items",
            "undecodable_items",
        ] {
            counts.push(self.count(table, "").await);
        }
        counts
    }
}
