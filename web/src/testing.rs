//! Test helpers (feature `testing`): a real server on port 0 with its own database, signed
//! webhooks, API calls, and a TCP proxy that a test cuts to simulate a database outage.
//!
//! Postgres and Redis are the real local servers (`WAOS_TEST_POSTGRES_URL`,
//! `WAOS_TEST_REDIS_URL` override where they are). Every app gets its own database, dropped
//! when the app is dropped, and its own Redis key prefix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use waos_engine::ingest::{InboundEvent, InboundHandoff};

use crate::settings::Settings;
use crate::startup::Application;

pub const APP_SECRET: &str = "test-app-secret-7c1d";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// A password long enough for the policy, used by every seeded agent.
pub const PASSWORD: &str = "correct horse battery";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("WAOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("WAOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The host:port of the test Postgres server.
pub fn postgres_addr() -> String {
    let url = postgres_admin_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let after_at = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    after_at
        .split_once('/')
        .map_or(after_at, |(host, _)| host)
        .to_owned()
}

/// The repository's test fixtures (Meta payloads and the pywa corpus).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A database of one test's own, removed when dropped.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    name: String,
    folder: Option<PathBuf>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let name = format!("waos_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let folder = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&folder).unwrap();
                let url = format!("sqlite://{}/waos.sqlite", folder.display());
                TestDatabase {
                    backend,
                    url,
                    name,
                    folder: Some(folder),
                }
            }
            Backend::Postgres => {
                let admin = sea_orm::Database::connect(postgres_admin_url())
                    .await
                    .expect("Postgres must run at WAOS_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                // The admin URL names a database (`.../postgres`); ours replaces it.
                let base = postgres_admin_url();
                let server = base
                    .rsplit_once('/')
                    .map_or(base.as_str(), |(server, _)| server);
                let url = format!("{server}/{name}");
                TestDatabase {
                    backend,
                    url,
                    name,
                    folder: None,
                }
            }
        }
    }

    /// The URL with its host and port replaced (to go through a [`FaultProxy`]).
    pub fn url_via(&self, port: u16) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (userinfo, after_at) = rest.split_once('@').unwrap_or(("", rest));
        let path = after_at.split_once('/').map_or("", |(_, path)| path);
        let auth = if userinfo.is_empty() {
            String::new()
        } else {
            format!("{userinfo}@")
        };
        format!("{scheme}://{auth}127.0.0.1:{port}/{path}")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder {
            let _ = std::fs::remove_dir_all(folder);
            return;
        }
        let name = self.name.clone();
        // Drop cannot await: drop the database from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Records what ingest hands to routing, for assertions.
#[derive(Default)]
pub struct RecordingHandoff {
    pub events: Mutex<Vec<InboundEvent>>,
}

impl InboundHandoff for RecordingHandoff {
    fn inbound(&self, event: InboundEvent) {
        self.events.lock().unwrap().push(event);
    }
}

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

/// What every test process logs: everything, at trace level, for the "no secret in the log"
/// check; `WAOS_TEST_LOG` overrides it.
const TEST_LOG_FILTER: &str = "trace";

/// The test process's log file: every test app logs into it at trace level (installed once per
/// process, with the product's own filter), so that each app can check, when dropped, that no
/// secret it knows reached a log. Under `$TMPDIR/waos-test-logs/`; emptied after each check.
pub fn trace_log() -> &'static Path {
    static LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let folder = std::env::temp_dir().join("waos-test-logs");
        let _ = std::fs::create_dir_all(&folder);
        let path = folder.join(format!("{}.log", std::process::id()));
        let filter = std::env::var("WAOS_TEST_LOG").unwrap_or_else(|_| TEST_LOG_FILTER.into());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        if let Ok(file) = file
            && LOG_FILE
                .set(Mutex::new(std::io::BufWriter::with_capacity(1 << 16, file)))
                .is_ok()
        {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(crate::logging::filter(&filter))
                .with_writer(|| TestLogWriter)
                .with_ansi(false)
                .try_init();
        }
        path
    })
}

/// The log file behind [`trace_log`], buffered (a busy test writes many thousand lines).
static LOG_FILE: std::sync::OnceLock<Mutex<std::io::BufWriter<std::fs::File>>> =
    std::sync::OnceLock::new();

struct TestLogWriter;

impl std::io::Write for TestLogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.get() {
            Some(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write(bytes),
            None => Ok(bytes.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.get() {
            Some(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .flush(),
            None => Ok(()),
        }
    }
}

impl TestApp {
    /// Remembers a secret a response carried (`token`, `ticket`), for the log check.
    fn remember_secrets(&self, answer: &Value) {
        for field in ["token", "ticket"] {
            if let Some(secret) = answer.get(field).and_then(Value::as_str) {
                self.secrets.lock().unwrap().push(secret.to_owned());
            }
        }
    }

    /// Panics if the process's log holds any secret this app knows.
    fn check_log_holds_no_secret(&self) {
        use std::io::Write;
        let _ = TestLogWriter.flush();
        let Ok(log) = std::fs::read_to_string(trace_log()) else {
            return;
        };
        let mut secrets: Vec<String> = self.secrets.lock().unwrap().clone();
        secrets.extend([ADMIN_TOKEN, APP_SECRET, PASSWORD, VERIFY_TOKEN].map(str::to_owned));
        for secret in secrets {
            assert!(
                !log.contains(&secret),
                "the trace-level log ({}) holds a secret: {secret}",
                trace_log().display()
            );
        }
        // Checked: what comes next is the next app's (the file is appended to).
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(trace_log()) {
            let _ = file.set_len(0);
        }
    }
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

/// A pool of `max_connections` on a test's database, with the tests' timeouts.
pub async fn connect_database(url: &str, max_connections: u32) -> DatabaseConnection {
    waos_engine::store::connect(
        url,
        max_connections,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await
    .expect("the test database accepts connections")
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
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_webhook(&self, body: &[u8]) -> reqwest::Response {
        self.post_webhook_signed(body, Some(&sign(body))).await
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

/// Waits until `condition` holds, or panics after `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy a test controls: `cut` closes every connection and refuses new ones until
/// `restore`. Used to take a database away from the engine without touching the shared server.
pub struct FaultProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn({
            let up = up.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        FaultProxy {
            port,
            up,
            connections,
            acceptor,
        }
    }

    /// Closes every proxied connection mid-stream and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// An agent's websocket, as a console would hold it.
pub struct AgentSocket {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another type, kept in order.
    backlog: std::collections::VecDeque<Value>,
}

impl TestApp {
    /// Opens `/ws/agent` with a bearer token and returns it after its `hello`.
    pub async fn connect_agent(&self, token: &str) -> (AgentSocket, Value) {
        connect_agent_at(&self.address, token).await
    }
}

/// Opens `/ws/agent` on the server at `address` (`http://127.0.0.1:port`) and reads its `hello`.
pub async fn connect_agent_at(address: &str, token: &str) -> (AgentSocket, Value) {
    let mut socket = connect_socket_at(address, "/ws/agent", token).await;
    let hello = socket.expect("hello").await;
    (socket, hello)
}

/// Opens a websocket at `path` with a bearer token.
pub async fn connect_socket_at(address: &str, path: &str, token: &str) -> AgentSocket {
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        AgentSocket {
            stream,
            backlog: Default::default(),
        }
    }
}

impl AgentSocket {
    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                text.to_owned().into(),
            ))
            .await
            .unwrap();
    }

    async fn read(&mut self, deadline: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            // One deadline for the whole read: pings must not extend it.
            let next = tokio::time::timeout_at(until, self.stream.next())
                .await
                .ok()??;
            match next.ok()? {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    return Some(serde_json::from_str(&text).unwrap());
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind` (others are kept for later), within 5 s.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.expect_within(kind, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no `{kind}` frame arrived"))
    }

    pub async fn expect_within(&mut self, kind: &str, deadline: Duration) -> Option<Value> {
        let start = std::time::Instant::now();
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                break None;
            }
            match self.read(left).await {
                Some(frame) if frame["type"] == kind => break Some(frame),
                Some(frame) => skipped.push(frame),
                None => break None,
            }
        };
        for frame in skipped.into_iter().rev() {
            self.backlog.push_front(frame);
        }
        found
    }

    /// The next frame of any type, if one arrives within `deadline`.
    pub async fn next_frame(&mut self, deadline: Duration) -> Option<Value> {
        self.read(deadline).await
    }

    /// Asserts that no frame of type `kind` arrives within `window` (others are kept).
    pub async fn expect_none(&mut self, kind: &str, window: Duration) {
        if let Some(frame) = self.expect_within(kind, window).await {
            panic!("unexpected `{kind}` frame: {frame}");
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }

    /// Reads until the server closes the socket; `Some(close frame)` when it closed with one
    /// within `deadline` (text frames before it are skipped), `None` otherwise.
    pub async fn expect_closed(
        &mut self,
        deadline: Duration,
    ) -> Option<Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>> {
        use futures_util::StreamExt;
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let next = tokio::time::timeout_at(until, self.stream.next())
                .await
                .ok()??;
            if let tokio_tungstenite::tungstenite::Message::Close(frame) = next.ok()? {
                return Some(frame);
            }
        }
    }
}

/// One request the fake Graph API received.
#[derive(Clone, Debug)]
pub struct GraphRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// When it arrived (for pacing checks).
    pub at: std::time::Instant,
}

#[derive(Default)]
struct GraphState {
    requests: Mutex<Vec<GraphRequest>>,
    /// Scripted answers, used in order; then every send succeeds.
    script: Mutex<std::collections::VecDeque<(u16, Value)>>,
    /// What `GET /{waba_id}/message_templates` lists.
    templates: Mutex<Vec<Value>>,
    /// Media by id: (mime type, bytes).
    media: Mutex<std::collections::HashMap<String, (String, Vec<u8>)>>,
    /// Base URL without the version, for media URLs.
    origin: Mutex<String>,
}

impl GraphState {
    fn record(&self, request: &actix_web::HttpRequest, body: Value) -> usize {
        let mut requests = self.requests.lock().unwrap();
        requests.push(GraphRequest {
            method: request.method().to_string(),
            path: request.path().to_owned(),
            authorization: request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            at: std::time::Instant::now(),
        });
        requests.len()
    }
}

/// A fake of Meta's Graph API (the only fake in the tests): records every send and answers like
/// Meta, with scripted errors.
pub struct FakeGraph {
    /// The base URL including the version, for `meta.graph_url`.
    pub url: String,
    state: Arc<GraphState>,
    server: actix_web::dev::ServerHandle,
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        async fn send(
            request: HttpRequest,
            body: web::Json<Value>,
            state: web::Data<GraphState>,
        ) -> HttpResponse {
            let body = body.into_inner();
            let to = body["to"].clone();
            let read_receipt = body["status"] == "read";
            let number = state.record(&request, body);
            let scripted = state.script.lock().unwrap().pop_front();
            match scripted {
                Some((status, body)) => HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body),
                None if read_receipt => HttpResponse::Ok().json(json!({"success": true})),
                None => HttpResponse::Ok().json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": format!("wamid.FAKE{number}"), "message_status": "accepted"}]
                })),
            }
        }
        async fn templates(
            request: HttpRequest,
            query: web::Query<std::collections::HashMap<String, String>>,
            state: web::Data<GraphState>,
        ) -> HttpResponse {
            state.record(&request, Value::Null);
            let all = state.templates.lock().unwrap().clone();
            let limit: usize = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(25);
            let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let end = (start + limit).min(all.len());
            let mut page = json!({"data": all[start.min(end)..end].to_vec()});
            if end < all.len() {
                page["paging"] = json!({"cursors": {"before": start.to_string(), "after": end.to_string()},
                                        "next": format!("https://graph.example/next?after={end}")});
            }
            HttpResponse::Ok().json(page)
        }
        async fn media_url(
            request: HttpRequest,
            path: web::Path<(String, String)>,
            state: web::Data<GraphState>,
        ) -> HttpResponse {
            state.record(&request, Value::Null);
            let media_id = path.into_inner().1;
            let found = state.media.lock().unwrap().get(&media_id).cloned();
            match found {
                Some((mime, bytes)) => {
                    use sha2::Digest;
                    let origin = state.origin.lock().unwrap().clone();
                    HttpResponse::Ok().json(json!({
                        "messaging_product": "whatsapp",
                        "url": format!("{origin}/media-bytes/{media_id}"),
                        "mime_type": mime,
                        "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
                        "file_size": bytes.len(),
                        "id": media_id,
                    }))
                }
                None => HttpResponse::BadRequest()
                    .json(json!({"error": {"message": "(#100) Invalid parameter",
                    "type": "OAuthException", "code": 100, "fbtrace_id": "Atest"}})),
            }
        }
        async fn media_bytes(
            request: HttpRequest,
            path: web::Path<String>,
            state: web::Data<GraphState>,
        ) -> HttpResponse {
            state.record(&request, Value::Null);
            if request.headers().get("authorization").is_none() {
                return HttpResponse::Unauthorized().finish();
            }
            let found = state.media.lock().unwrap().get(path.as_str()).cloned();
            match found {
                Some((mime, bytes)) => HttpResponse::Ok().content_type(mime).body(bytes),
                None => HttpResponse::NotFound().finish(),
            }
        }
        async fn upload(
            request: HttpRequest,
            body: web::Bytes,
            state: web::Data<GraphState>,
        ) -> HttpResponse {
            let text = String::from_utf8_lossy(&body).into_owned();
            let multipart = text.contains("name=\"messaging_product\"");
            // The `file` part's bytes: after its headers, up to the closing boundary.
            let file_bytes = body
                .windows(11)
                .position(|w| w == b"name=\"file\"")
                .and_then(|at| {
                    let rest = &body[at..];
                    let start = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                    let end = rest.windows(4).rposition(|w| w == b"\r\n--")?;
                    Some(rest[start..end].to_vec())
                })
                .unwrap_or_default();
            let number = state.record(
                &request,
                json!({"file_bytes": file_bytes, "multipart": multipart}),
            );
            HttpResponse::Ok().json(json!({"id": format!("fake-upload-{number}")}))
        }
        let state = web::Data::new(GraphState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        *state.origin.lock().unwrap() = format!("http://127.0.0.1:{port}");
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route(
                    "/{version}/{phone_number_id}/messages",
                    web::post().to(send),
                )
                .route("/{version}/{phone_number_id}/media", web::post().to(upload))
                .route(
                    "/{version}/{waba_id}/message_templates",
                    web::get().to(templates),
                )
                .route("/media-bytes/{media_id}", web::get().to(media_bytes))
                .route("/{version}/{media_id}", web::get().to(media_url))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        FakeGraph {
            url: format!("http://127.0.0.1:{port}/v25.0"),
            state: state.into_inner(),
            server: handle,
        }
    }

    /// The next send gets this answer (Meta's error envelope for `code`).
    pub fn fail_next(&self, status: u16, code: i64) {
        let body = json!({"error": {"message": format!("(#{code}) scripted"), "type": "OAuthException", "code": code,
                                     "error_data": {"messaging_product": "whatsapp", "details": "scripted"}, "fbtrace_id": "Atest"}});
        self.state.script.lock().unwrap().push_back((status, body));
    }

    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The message sends (and read receipts) received, leaving out uploads and the template
    /// and media lookups.
    pub fn sends(&self) -> Vec<GraphRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
            .collect()
    }

    /// What the template list answers from now on.
    pub fn set_templates(&self, templates: Vec<Value>) {
        *self.state.templates.lock().unwrap() = templates;
    }

    /// Makes a media id downloadable.
    pub fn add_media(&self, media_id: &str, mime: &str, bytes: &[u8]) {
        self.state
            .media
            .lock()
            .unwrap()
            .insert(media_id.to_owned(), (mime.to_owned(), bytes.to_vec()));
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}
