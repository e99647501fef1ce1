//! Integration tests: the real `waos` server on port 0, with its own database per test, on
//! SQLite and on the local Postgres (and Redis where the code uses it). Meta is the only fake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs `async fn $name(backend)` once on SQLite and once on Postgres.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name(waos_web::testing::Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name(waos_web::testing::Backend::Postgres).await
            }
        }
    )+};
}

mod admin_browser;
mod admin_console;
mod agent_tools;
mod authorization;
mod automation;
mod binary;
mod browser;
mod cluster;
mod concurrency;
mod console_api;
mod dashboard;
mod invariants;
mod nodes;
mod openapi;
mod outage;
mod outbound;
mod payloads;
mod presence;
mod privacy;
mod pywa;
mod replay;
mod reports;
mod rest;
mod routing;
mod security;
mod signatures;
mod stranding;
mod time;
