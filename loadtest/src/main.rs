//! `waos-loadtest`: see the crate documentation, or `waos-loadtest --help`.

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "waos-loadtest",
    about = "Open-loop load generators for WaOS (loopback targets only).",
    long_about = "Open-loop load generators for WaOS. Arrivals are scheduled in advance (constant \
                  or seeded Poisson) and every latency is measured from the request's scheduled \
                  time with HdrHistogram, so a slow server cannot hide its tail by slowing the \
                  generator. Every scenario creates its own workspace with the admin token, \
                  targets 127.0.0.1 only, and stops by itself. A summary is printed as JSON; \
                  --report <folder> also writes report.json (everything, per 1-second interval) \
                  and report.html (inline SVG charts); --server-pid <pid> samples the server's \
                  CPU% and RSS every 500 ms. A progress bar is drawn on stderr when it is a \
                  terminal."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Signed webhooks at a fixed rate for a fixed time: a mix of messages from new and ongoing
    /// customers and delivery statuses (--new-share, --status-share). Reports latency to the
    /// 200 (from each request's scheduled time) and offered vs achieved rate. With --baseline,
    /// runs the identical plan against a bare in-process actix-web handler first and reports
    /// the engine as a ratio of it.
    Ingest(waos_loadtest::ingest::IngestArgs),
    /// The ingest generator against a bare actix-web server started in this process on
    /// 127.0.0.1:0, whose one handler checks the HMAC over the raw body, parses the JSON and
    /// answers 200: the ceiling of this machine, HTTP stack and generator. Needs no engine.
    Baseline(waos_loadtest::baseline::BaselineArgs),
    /// Ingest at rising rates: --from, plus --step every --step-secs, until a step's p99 is over
    /// --goal-p99-ms or it achieves under 95% of what it offered (or past --max-rate). Reports
    /// every step and the knee (the highest rate that passed).
    Ramp(waos_loadtest::ramp::RampArgs),
    /// New conversations at a fixed rate, routed to simulated agents on websockets that
    /// accept every offer and resolve at once; prints latency from each webhook's scheduled
    /// time to the agent's `offer` frame, and to the webhook's 200, as JSON.
    Route(waos_loadtest::route::RouteArgs),
    /// N new conversations as fast as possible (at most --concurrency webhooks in flight) with K
    /// agents already online. Reports webhook → offer latency, time to route them all, and the
    /// server's assignment-decision time if its /metrics exposes such a histogram (else says so).
    Burst(waos_loadtest::burst::BurstArgs),
    /// N idle agent websockets and M open conversations; samples the server's RSS
    /// (--server-pid is required) before, after the conversations and after the sockets, and
    /// reports bytes per conversation and per socket. Measure a freshly started server, run with
    /// MALLOC_MMAP_THRESHOLD_=131072 (see docs/performance.md). Raises this process's open-files
    /// limit; the server needs `ulimit -n` raised before it starts for large N.
    Idle(waos_loadtest::idle::IdleArgs),
    /// The reports' read side at a busy workspace's size: a year of rollups for a million
    /// conversations in a database of its own on the local Postgres (dropped after), then the
    /// summary and the daily figures asked repeatedly; prints p50/p90/max in milliseconds.
    Reports(waos_loadtest::reports::ReportsArgs),
    /// The expected wait's accuracy: Poisson arrivals at --load of what the agents can serve,
    /// exponential holds, agents joining and going away; the team's `expected_wait_ms` read
    /// before each arrival against the wait observed (webhook to the agent's first frame).
    Waits(waos_loadtest::waits::WaitsArgs),
}

/// The report without its long per-interval and per-sample arrays (those go to report.json).
fn summary(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in ["intervals", "samples", "step_runs", "buckets"] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = match Cli::parse().command {
        Command::Ingest(args) => waos_loadtest::ingest::run(args).await?.json,
        Command::Baseline(args) => waos_loadtest::baseline::run(args).await?.json,
        Command::Ramp(args) => waos_loadtest::ramp::run(args).await?.json,
        Command::Route(args) => waos_loadtest::route::run(args).await?.to_json(),
        Command::Burst(args) => waos_loadtest::burst::run(args).await?.json,
        Command::Idle(args) => waos_loadtest::idle::run(args).await?.json,
        Command::Reports(args) => waos_loadtest::reports::run(args).await?,
        Command::Waits(args) => waos_loadtest::waits::run(args).await?,
    };
    println!("{}", serde_json::to_string_pretty(&summary(report))?);
    Ok(())
}
