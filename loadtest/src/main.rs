//! `waos-loadtest`: see the crate documentation, or `waos-loadtest --help`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "waos-loadtest",
    about = "Open-loop load generators for WaOS (loopback targets only)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Signed webhooks, one text message each, at a constant rate; prints latency to the 200
    /// (from each request's scheduled time) and the achieved rate as JSON. Creates its own
    /// workspace, team and channels with the admin token first.
    Ingest(waos_loadtest::ingest::IngestArgs),
    /// New conversations at a constant rate, routed to simulated agents on websockets that
    /// accept every offer and resolve at once; prints latency from each webhook's scheduled
    /// time to the agent's `offer` frame, and to the webhook's 200, as JSON.
    Route(waos_loadtest::route::RouteArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => {
            let report = waos_loadtest::ingest::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        }
        Command::Route(args) => {
            let report = waos_loadtest::route::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        }
    }
    Ok(())
}
