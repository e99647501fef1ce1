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
