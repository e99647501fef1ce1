//! `waos-loadtest`: load generators for WaOS, measured open loop.
//!
//! Arrivals follow a schedule fixed in advance (constant rate, or a seeded Poisson process),
//! so a slow server cannot slow the generator down and hide its tail; each latency is measured
//! from the request's *scheduled* time, with HdrHistogram. Targets are on this machine only.
//!
//! - [`ingest`]: signed webhooks over N numbers: a mix of messages from new and ongoing
//!   customers and delivery statuses; optionally against the bare [`baseline`] first, and
//!   again under a sign-in [`flood`].
//! - [`baseline`]: the same generator against a bare in-process actix-web handler.
//! - [`ramp`]: ingest in rising steps until the latency goal or the throughput breaks.
//! - [`route`]: new conversations routed to K agents on real websockets; latency from the
//!   webhook's scheduled time to the `offer` frame at the agent.
//! - [`burst`]: N new conversations as fast as possible to K connected agents.
//! - [`idle`]: N idle agent sockets and M open conversations; the server's memory for each.
//! - [`reports`]: the reports' read side over a year of a busy workspace (on Postgres).
//! - [`waits`]: the expected wait the supervisor tells against the waits observed.
//!
//! [`report`] writes `report.json` and a self-contained `report.html`; [`procstat`] samples
//! the server's CPU and RSS.

pub mod arrivals;
pub mod baseline;
pub mod burst;
pub mod flood;
pub mod generator;
pub mod idle;
pub mod ingest;
pub mod procstat;
pub mod ramp;
pub mod report;
pub mod reports;
pub mod route;
pub mod traffic;
pub mod waits;

/// Raises this process's open-files soft limit to its hard limit (socket-heavy scenarios);
/// returns the limit now in force. The *server's* limit is its own: `ulimit -n` before
/// starting it.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
