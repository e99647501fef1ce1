//! The reports' read side at a busy workspace's size: a database of its own on the local
//! Postgres, a year of rollups for `--conversations` conversation cycles (made from generated
//! facts by the same fold the rollup worker uses), then the summary and the daily figures
//! asked `--requests` times each, as the API asks them. Prints how long each took (p50, p90,
//! max, in milliseconds). Drops its database at the end.

use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use waos_engine::auth::Principal;
use waos_engine::ids::{AgentId, ChannelId, ConversationId, FactId, TeamId};
use waos_engine::reports::query::{self, ReportQuery};
use waos_engine::reports::{FactMetric, rollup};
use waos_engine::store::entity::conversation_fact;

#[derive(Clone, Debug, clap::Args)]
pub struct ReportsArgs {
    /// The Postgres server (a database `waos_bench_reports` is made on it and dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// Conversation cycles over the year.
    #[arg(long, default_value_t = 1_000_000)]
    pub conversations: u64,
    #[arg(long, default_value_t = 365)]
    pub days: u64,
    #[arg(long, default_value_t = 5)]
    pub teams: u64,
    /// Agents per team.
    #[arg(long, default_value_t = 10)]
    pub agents_per_team: u64,
    /// Times each report is asked.
    #[arg(long, default_value_t = 30)]
    pub requests: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const DATABASE: &str = "waos_bench_reports";

pub async fn run(args: ReportsArgs) -> anyhow::Result<Value> {
    let server = args.postgres.trim_end_matches('/');
    anyhow::ensure!(
        server.contains("127.0.0.1") || server.contains("localhost"),
        "benchmarks target this machine only"
    );
    let admin = connect(&format!("{server}/postgres")).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DATABASE}"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let outcome = bench(&args, &format!("{server}/{DATABASE}")).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await?;
    outcome
}

async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    waos_engine::store::connect(
        url,
        4,
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(60),
    )
    .await
    .with_context(|| format!("connecting to {url}"))
}

fn uuid(rng: &mut StdRng) -> uuid::Uuid {
    uuid::Uuid::from_u128(rng.random())
}

async fn bench(args: &ReportsArgs, url: &str) -> anyhow::Result<Value> {
    let db = connect(url).await?;
    waos_engine::store::migrate(&db).await?;
    let caller = Principal::Installation;
    let workspace = waos_engine::admin::create_workspace(
        &db,
        &caller,
        waos_engine::admin::NewWorkspace {
            name: "Busy".into(),
            time_zone: Some("Europe/London".into()),
        },
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let teams: Vec<TeamId> = (0..args.teams).map(|_| TeamId(uuid(&mut rng))).collect();
    let agents: Vec<Vec<AgentId>> = teams
        .iter()
        .map(|_| {
            (0..args.agents_per_team)
                .map(|_| AgentId(uuid(&mut rng)))
                .collect()
        })
        .collect();
    let channels: Vec<ChannelId> = (0..2).map(|_| ChannelId(uuid(&mut rng))).collect();
    let first_day = NaiveDate::from_ymd_opt(2025, 1, 1).context("a date")?;
    let per_day = args.conversations / args.days.max(1);
    let seeding = Instant::now();
    let mut facts_made = 0usize;
    for day in 0..args.days {
        let midnight = Utc.from_utc_datetime(
            &(first_day + Duration::days(day as i64))
                .and_hms_opt(0, 0, 0)
                .context("midnight")?,
        );
        let mut facts = Vec::with_capacity(per_day as usize * 7);
        for _ in 0..per_day {
            let team = rng.random_range(0..teams.len());
            let agent = agents[team][rng.random_range(0..agents[team].len())];
            let start = midnight + Duration::seconds(rng.random_range(0..86_400));
            let conversation = ConversationId(uuid(&mut rng));
            let channel = channels[rng.random_range(0..channels.len())];
            let queue = rng.random_range(0..600_000i64);
            let answer = queue + rng.random_range(5_000..3_600_000i64);
            let resolve = answer + rng.random_range(60_000..7_200_000i64);
            let breached = rng.random_bool(0.2);
            let mut fact =
                |metric: FactMetric, agent: Option<AgentId>, after_ms: i64, value: i64| {
                    facts.push(conversation_fact::Model {
                        id: FactId::default(),
                        conversation_id: conversation,
                        cycle: 1,
                        cycle_started_at: start,
                        metric,
                        workspace_id: workspace.id,
                        team_id: teams[team],
                        agent_id: agent,
                        channel_id: channel,
                        ended_at: start + Duration::milliseconds(after_ms),
                        value,
                        business_value: value * 7 / 10,
                        rolled: true,
                    });
                };
            fact(FactMetric::Opened, None, 0, 1);
            fact(FactMetric::QueueWait, Some(agent), queue, queue);
            let missed = rng.random_range(0..3);
            fact(
                FactMetric::OffersBeforeAcceptance,
                Some(agent),
                queue,
                missed,
            );
            fact(FactMetric::FirstResponse, Some(agent), answer, answer);
            fact(FactMetric::Resolution, Some(agent), resolve, resolve);
            let sla = if breached {
                FactMetric::SlaBreached
            } else {
                FactMetric::SlaMet
            };
            fact(sla, Some(agent), resolve, 1);
        }
        facts_made += facts.len();
        let txn = waos_engine::store::begin_write(&db).await?;
        rollup::add_to_rollups(&txn, &facts).await?;
        txn.commit().await?;
    }
    let seeded_secs = seeding.elapsed().as_secs_f64();
    let rows = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM rollups",
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or_default();
    let last_day = first_day + Duration::days(args.days as i64 - 1);
    let year = ReportQuery {
        workspace_id: Some(workspace.id.to_string()),
        from: Some(first_day.to_string()),
        to: Some(last_day.to_string()),
        ..ReportQuery::default()
    };
    let team = ReportQuery {
        team_id: Some(teams[0].to_string()),
        ..year.clone()
    };
    // Not on month boundaries: eleven whole months and the days at either end.
    let offset = ReportQuery {
        from: Some((first_day + Duration::days(14)).to_string()),
        to: Some((last_day - Duration::days(16)).to_string()),
        ..year.clone()
    };
    let mut results = serde_json::Map::new();
    let mut check = None;
    for (name, report) in [
        ("summary_year_workspace", &year),
        ("summary_offset_workspace", &offset),
        ("summary_year_team", &team),
        ("daily_year_workspace", &year),
    ] {
        let mut took = Histogram::<u64>::new(3)?;
        for _ in 0..args.requests {
            let started = Instant::now();
            if name.starts_with("summary") {
                let summary = query::summary(&db, &caller, report).await?;
                if name == "summary_year_workspace" {
                    check = Some(summary.conversations);
                }
            } else {
                query::daily(&db, &caller, report).await?;
            }
            took.record(started.elapsed().as_micros() as u64)?;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        results.insert(
            name.to_owned(),
            json!({"p50_ms": ms(took.value_at_quantile(0.5)), "p90_ms": ms(took.value_at_quantile(0.9)),
                   "max_ms": ms(took.max())}),
        );
    }
    Ok(json!({
        "conversations": per_day * args.days,
        "summary_counts_conversations": check,
        "facts": facts_made,
        "rollup_rows": rows,
        "agents": args.teams * args.agents_per_team,
        "seed_secs": (seeded_secs * 10.0).round() / 10.0,
        "requests_each": args.requests,
        "took": results,
    }))
}
