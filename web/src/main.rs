//! `waos`: the WhatsApp routing engine's one binary.

use clap::{Parser, Subcommand};
use waos_web::settings::Settings;
use waos_web::startup::Application;

#[derive(Parser)]
#[command(
    name = "waos",
    version,
    about = "Real-time routing of WhatsApp Business conversations to agents."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhook, the REST API and the background work in one process.
    ///
    /// With no configuration it runs on the embedded default: a SQLite file under data/ and
    /// in-process presence and rate limits. Settings: config/default.toml, then
    /// config/$WAOS_ENV.toml, then WAOS__SECTION__KEY environment variables.
    Serve,
    /// Run the background workers alone (the outbound sender), without HTTP: for installations
    /// that scale sending apart from the web processes. Stops on Ctrl-C or SIGTERM.
    Workers,
    /// Apply pending database migrations and exit.
    Migrate,
    /// See WaOS work within a minute: serve on the embedded default with a seeded workspace
    /// (a fresh data/demo/), simulated customers writing through the signed webhook and three
    /// simulated agents; prints the console and dashboard logins. Ctrl-C stops.
    Demo {
        /// Runs the simulation this many times faster (customers and simulated agents).
        #[arg(long, default_value_t = 1)]
        speed: u32,
    },
    /// Replay a recorded range through the routing engine on a simulated clock, under the
    /// configured policy or another one, with more or fewer agents or slots: prints the
    /// recorded and the replayed queue waits, first offers and agent loads (p50/p90) as JSON.
    /// Reads the database and writes nothing to it.
    Replay(ReplayArgs),
    /// The reports' daily rollups.
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
}

#[derive(Subcommand)]
enum ReportsCommand {
    /// Count the daily rollups again from the recorded facts (all workspaces, or one), then
    /// check that they agree with a recount; exits non-zero when they do not.
    Rebuild {
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[arg(long)]
    workspace: String,
    /// The range's start (RFC 3339): cycles begun from here...
    #[arg(long)]
    from: chrono::DateTime<chrono::FixedOffset>,
    /// ...until here (their ends may come later).
    #[arg(long)]
    to: chrono::DateTime<chrono::FixedOffset>,
    /// least_loaded, round_robin or longest_idle; `routing.policy` when left out.
    #[arg(long)]
    policy: Option<waos_engine::routing::policy::PolicyKind>,
    /// Prefer the customer's last agent; `routing.sticky` when left out.
    #[arg(long)]
    sticky: Option<bool>,
    /// Added to every agent's capacity.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    capacity_delta: i32,
    /// Agents added (online throughout, in every team) or, below 0, taken away.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    agents_delta: i32,
    /// Also write replay.html (the figures and plots) and replay.json into this folder.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    use waos_engine::replay;
    let workspace_id = waos_engine::ids::WorkspaceId::parse(&args.workspace)
        .ok_or_else(|| anyhow::anyhow!("`--workspace` is not a workspace id"))?;
    let db = waos_engine::store::connect(
        &settings.database.url,
        2,
        std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
        std::time::Duration::from_millis(settings.database.ping_idle_after_ms),
    )
    .await?;
    let routing = &settings.routing;
    let options = replay::Options {
        workspace_id,
        from: args.from.to_utc(),
        to: args.to.to_utc(),
        setup: replay::simulate::Setup {
            policy: args.policy.unwrap_or(routing.policy),
            sticky: args.sticky.unwrap_or(routing.sticky),
            capacity_delta: args.capacity_delta,
            agents_delta: args.agents_delta,
            decline_cooldown: std::time::Duration::from_millis(routing.decline_cooldown_ms),
            window_warning: chrono::Duration::milliseconds(
                i64::try_from(routing.window_warning_ms).unwrap_or(i64::MAX),
            ),
        },
    };
    let outcome = replay::replay(&db, &options).await?;
    let json = serde_json::to_string_pretty(&outcome)?;
    if let Some(folder) = args.report {
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("replay.json"), &json)?;
        std::fs::write(folder.join("replay.html"), replay::page::render(&outcome))?;
    }
    println!("{json}");
    Ok(())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().map_err(|error| anyhow::anyhow!("configuration: {error}"))?;
    waos_web::logging::init(&settings.log);
    waos_workers::install_tls();
    match cli.command {
        Command::Serve => {
            let application = Application::build(settings).await?;
            application.run_until_stopped().await?;
        }
        Command::Workers => {
            let db = waos_engine::store::connect(
                &settings.database.url,
                4,
                std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
                std::time::Duration::from_millis(settings.database.ping_idle_after_ms),
            )
            .await?;
            let sealer =
                waos_engine::crypto::Sealer::from_hex(&waos_web::startup::secret_key(&settings)?)?;
            let redis = waos_web::startup::connect_redis(&settings).await?;
            let _stop = waos_web::startup::spawn_workers(db, sealer, &settings, None, redis)?;
            tracing::info!("workers running");
            waos_web::startup::shutdown_signal().await;
            tracing::info!("stopping the workers");
        }
        Command::Demo { speed } => waos_web::demo::run(settings, speed).await?,
        Command::Replay(args) => replay(&settings, args).await?,
        Command::Reports {
            command: ReportsCommand::Rebuild { workspace },
        } => {
            let db = waos_engine::store::connect(
                &settings.database.url,
                2,
                std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
                std::time::Duration::from_millis(settings.database.ping_idle_after_ms),
            )
            .await?;
            waos_engine::store::migrate(&db).await?;
            let counted = waos_engine::reports::rollup::rebuild(&db, workspace.as_deref()).await?;
            let workspaces = match workspace {
                Some(id) => vec![id],
                None => waos_engine::reports::rollup::workspace_ids(&db).await?,
            };
            let mut problems = Vec::new();
            for id in &workspaces {
                problems.extend(waos_engine::reports::rollup::differences(&db, id).await?);
            }
            println!(
                "{}",
                serde_json::json!({"facts": counted, "workspaces": workspaces.len(), "differences": problems})
            );
            if !problems.is_empty() {
                anyhow::bail!("the rebuilt rollups differ from a recount of the facts");
            }
        }
        Command::Migrate => {
            let db = waos_engine::store::connect(
                &settings.database.url,
                1,
                std::time::Duration::from_millis(settings.database.acquire_timeout_ms),
                std::time::Duration::from_millis(settings.database.ping_idle_after_ms),
            )
            .await?;
            waos_engine::store::migrate(&db).await?;
            tracing::info!("migrations applied");
        }
    }
    Ok(())
}
