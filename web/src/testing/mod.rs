//! Test helpers (feature `testing`): a real server on port 0 with its own database, signed
//! webhooks, API calls, agents' websockets, and a TCP proxy that a test cuts to simulate a
//! database outage. Meta is the one fake: [`FakeGraph`] (crate::fake_meta), the same one the demo
//! runs on.
//!
//! Postgres and Redis are the real local servers (`WAOS_TEST_POSTGRES_URL`,
//! `WAOS_TEST_REDIS_URL` override where they are). Every app gets its own database, dropped
//! when the app is dropped, and its own Redis key prefix.
//!
//! - [`database`]: a database of one test's own, on either backend.
//! - [`app`]: a spawned server, its settings, and REST and database helpers.
//! - [`log`]: every test process logs at trace level; no secret may reach it.
//! - [`socket`]: an agent's or supervisor's websocket.
//! - [`proxy`]: a TCP proxy a test cuts and restores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use waos_engine::ingest::{InboundEvent, InboundHandoff};

pub mod app;
pub mod database;
pub mod log;
pub mod proxy;
pub mod socket;

pub use crate::fake_meta::{FakeGraph, GraphRequest, StatusDelivery};
pub use app::{
    PHONE_NUMBER_ID_1, PHONE_NUMBER_ID_UNKNOWN, PYWA_PHONE_NUMBER_IDS, TestApp, World, http_client,
    sign, spawn_app, spawn_app_with, spawn_node, test_settings,
};
pub use database::{TestDatabase, connect_database};
pub use log::trace_log;
pub use proxy::FaultProxy;
pub use socket::{AgentSocket, connect_agent_at, connect_socket_at, try_connect_socket_at};

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

/// The NATS (with JetStream) the cluster's tests use, each on buckets of its own.
pub fn nats_url() -> String {
    std::env::var("WAOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
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
