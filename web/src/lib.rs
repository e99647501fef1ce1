//! The WaOS HTTP edge and the `waos` binary.
//!
//! Map:
//! - [`settings`]: layered configuration into one typed `Settings`.
//! - [`startup`]: `Application::build(settings)`, used by `main` and the tests alike.
//! - [`routes`]: the webhook, the REST API under `/api/v1`, health and metrics.
//! - [`extract`]: the authenticated caller of a request, and its address and user agent.
//! - [`throttle`]: failed sign-ins per account and client address.
//! - [`sockets`]: open websockets by holder, closed together when its access ends.
//! - [`error`]: the one place that turns errors into status codes and JSON.
//! - [`openapi`]: the OpenAPI document generated from the handlers.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`logging`]: text or JSON logs, and a span with an id per HTTP request.
//! - [`demo`]: `waos demo`, the engine seeded and fed by simulated customers and agents.
//! - [`fake_meta`]: a fake of Meta's Graph API, the one the demo runs on and the tests use.
//! - `routes::pages`: the console and dashboard pages, compiled in from `web/assets/`.
//! - `testing` (feature): spawned apps on port 0 with their own database, signed webhooks,
//!   agents' sockets, and a TCP proxy that tests cut to simulate a database outage.
//!
//! Concurrency: actix-web runs one app per worker thread; they share [`state::AppState`],
//! including one ingest writer task, created once before the server starts.

pub mod demo;
pub mod error;
pub mod extract;
pub mod fake_meta;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod sockets;
pub mod startup;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
