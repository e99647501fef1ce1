//! `waos-loadtest`: load generators for WaOS, measured open loop.
//!
//! Arrivals follow a schedule fixed in advance (constant rate), so a slow server cannot slow
//! the generator down and hide its tail; each latency is measured from the request's
//! *scheduled* time, with HdrHistogram. Targets are on this machine only.
//!
//! - [`ingest`]: signed webhooks (one text message each) over N numbers and M customers.
//! - [`route`]: new conversations routed to K agents on real websockets; latency from the
//!   webhook's scheduled time to the `offer` frame at the agent.

pub mod ingest;
pub mod route;
