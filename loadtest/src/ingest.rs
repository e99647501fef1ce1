//! Signed webhook ingest at an open-loop rate (constant or Poisson arrivals) with a traffic
//! mix, reporting latency to the 200; optionally against the bare baseline first.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::arrivals::Arrivals;
use crate::baseline::BaselineServer;
use crate::generator::{RunResult, Sender};
use crate::procstat::{Sampler, ServerSamples};
use crate::report::{self, ReportArgs, header};
use crate::traffic::{MixArgs, Planner, Traffic};

/// The engine under test, shared by every scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct Target {
    /// Base URL of the engine (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The Meta app secret the engine verifies signatures with.
    #[arg(long, env = "WAOS__META__APP_SECRET")]
    pub app_secret: String,
    /// The engine's bootstrap admin token, to create the workspace, team and channels.
    #[arg(long, env = "WAOS__ADMIN__TOKEN")]
    pub admin_token: String,
    /// Send the webhooks to this node of the same cluster instead of --url; repeated, in turn
    /// to each (as a load balancer would). Set-up, sign-ins and agents' sockets stay on --url,
    /// so that webhooks landing on a node that does not own the workspace cross the bus.
    #[arg(long = "webhook-url")]
    pub webhook_urls: Vec<String>,
}

impl Target {
    /// Load tests send only to this machine.
    pub fn check_loopback(&self) -> anyhow::Result<()> {
        let local =
            |url: &String| url.starts_with("http://127.") || url.starts_with("http://localhost");
        if local(&self.url) && self.webhook_urls.iter().all(local) {
            Ok(())
        } else {
            bail!("load tests target this machine only (http://127.0.0.1:...)")
        }
    }

    /// Where webhooks go: each --webhook-url in turn, or --url.
    pub fn webhook_endpoints(&self) -> Vec<String> {
        let urls = if self.webhook_urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.webhook_urls[..]
        };
        urls.iter()
            .map(|url| format!("{url}/webhooks/whatsapp"))
            .collect()
    }
}

/// How fast and for how long (`ingest` and `baseline`).
#[derive(Clone, Debug, clap::Args)]
pub struct RateArgs {
    /// Webhooks per second offered (on average, with --arrivals poisson).
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Seconds to send for; the run then waits for the last answers and stops.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

/// When arrivals come and how many may wait (`ingest`, `baseline`, `ramp`).
#[derive(Clone, Debug, clap::Args)]
pub struct PacingArgs {
    /// Arrival process: evenly spaced, or Poisson (exponential gaps, seeded by --seed).
    #[arg(long, value_enum, default_value_t = Arrivals::Constant)]
    pub arrivals: Arrivals,
    /// Seed of the arrival gaps and of the traffic mix: one seed, one run's exact bodies and times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Requests in flight at most; arrivals beyond it are counted as dropped, not delayed.
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,
}

impl PacingArgs {
    pub fn to_json(&self) -> Value {
        json!({"arrivals": self.arrivals.name(), "seed": self.seed, "max_in_flight": self.max_in_flight})
    }
}

/// `waos-loadtest ingest`.
#[derive(Clone, Debug, clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub rate: RateArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub mix: MixArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    /// First run the same plan (same rate, duration, arrival times and bodies) against a bare
    /// in-process actix-web server that only checks the signature and parses the JSON, then
    /// against the target; reports the target's throughput and latency as ratios of it.
    #[arg(long)]
    pub baseline: bool,
    /// HTTP worker threads of the baseline server (match the engine's WAOS__SERVER__WORKERS).
    #[arg(long, default_value_t = 2)]
    pub baseline_workers: usize,
    /// Also run the same plan again while this many wrong sign-ins a second hammer one
    /// account, and report the flooded run's latency as a ratio of the quiet one's.
    #[arg(long)]
    pub login_flood: Option<u64>,
    /// Spread the flood: each attempt for a new unknown account from a new X-Forwarded-For
    /// address (start the server with WAOS__SERVER__TRUSTED_PROXIES=127.0.0.1).
    #[arg(long)]
    pub login_flood_spread: bool,
}

/// The outcome of `ingest` (and of `baseline`, which has no target run of the engine).
#[derive(Debug)]
pub struct IngestReport {
    pub run: String,
    /// The measured run against the target (the engine, or the baseline for `baseline`).
    pub target: RunResult,
    /// The same plan against the bare baseline first (`--baseline`).
    pub baseline: Option<RunResult>,
    /// Warm-up webhooks that did not get a 2xx.
    pub warm_up_failed: u64,
    pub server: Option<ServerSamples>,
    /// The whole report (what `report.json` holds).
    pub json: Value,
}

impl IngestReport {
    /// Target over baseline: (achieved throughput ratio, p99 latency ratio).
    pub fn vs_baseline(&self) -> Option<(f64, f64)> {
        let baseline = self.baseline.as_ref()?;
        Some((
            self.target.achieved_rate() / baseline.achieved_rate(),
            self.target.p99_ms() / baseline.p99_ms(),
        ))
    }

    pub fn to_json(&self) -> Value {
        self.json.clone()
    }
}

/// Ratios of the target's figures to the baseline's (`null` where the baseline's is 0).
pub fn ratios(target: &RunResult, baseline: &RunResult) -> Value {
    let quantile = |run: &RunResult, q: f64| run.latency.value_at_quantile(q) as f64;
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    json!({
        "throughput_ratio": ratio(target.achieved_rate(), baseline.achieved_rate()),
        "p50_ratio": ratio(quantile(target, 0.5), quantile(baseline, 0.5)),
        "p99_ratio": ratio(quantile(target, 0.99), quantile(baseline, 0.99)),
        "p999_ratio": ratio(quantile(target, 0.999), quantile(baseline, 0.999)),
        "baseline_achieved_rate": baseline.achieved_rate(),
        "target_achieved_rate": target.achieved_rate(),
        "baseline_p99_ms": baseline.p99_ms(),
        "target_p99_ms": target.p99_ms(),
    })
}

pub fn sign(secret: &[u8], body: &[u8]) -> anyhow::Result<String> {
    Ok(waos_engine::crypto::webhook_signature(secret, body)?)
}

/// A short id for one run, distinct across processes and across runs in one process; it names
/// the run's numbers, customers and wamids, so runs never collide in one database.
pub fn run_id() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("{:05}{run}", std::process::id() % 100_000)
}

/// The `phone_number_id` of generated number `index`.
pub fn phone_number_id(run: &str, index: u64) -> String {
    format!("9{run}{index:04}")
}

/// What a world may have beyond its team and channels.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// The team has an SLA policy (`--sla`).
    pub sla: bool,
    /// The workspace has this many rules that never match (`--rules`).
    pub rules: u64,
}

/// Creates a workspace, a team and `numbers` channels; returns (workspace id, team id).
pub async fn set_up_world(
    client: &reqwest::Client,
    url: &str,
    admin_token: &str,
    numbers: u64,
    run: &str,
    auto_accept: bool,
    extras: Extras,
) -> anyhow::Result<(String, String)> {
    let Extras { sla, rules } = extras;
    let args = WorldArgs {
        url,
        admin_token,
        numbers,
        auto_accept,
    };
    let api = |path: &str| format!("{}/api/v1{path}", args.url);
    let created: Value = client
        .post(api("/workspaces"))
        .bearer_auth(args.admin_token)
        .json(&json!({"name": format!("loadtest {run}")}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let workspace = created["id"].as_str().context("workspace id")?.to_owned();
    let team: Value = client
        .post(api(&format!("/workspaces/{workspace}/teams")))
        .bearer_auth(args.admin_token)
        .json(&json!({"name": "load", "auto_accept": args.auto_accept, "offer_timeout_secs": 30}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let team_id = team["id"].as_str().context("team id")?.to_owned();
    if sla {
        // Every conversation arms its clocks: first and next response in an hour, resolution in
        // a day, a warning ten minutes ahead (none fires during a run).
        let policy: Value = client
            .post(api(&format!("/workspaces/{workspace}/sla-policies")))
            .bearer_auth(args.admin_token)
            .json(
                &json!({"name": "load", "first_response_secs": 3600, "next_response_secs": 3600,
                          "resolution_secs": 86400, "warn_before_secs": 600}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        client
            .patch(api(&format!("/workspaces/{workspace}/teams/{team_id}")))
            .bearer_auth(args.admin_token)
            .json(&json!({"sla_policy_id": policy["id"]}))
            .send()
            .await?
            .error_for_status()?;
    }
    for n in 0..rules {
        let conditions = json!({"all": [
            {"field": "message.text", "op": "contains", "value": format!("keyword{n}")},
            {"any": [
                {"field": "message.text", "op": "matches", "value": format!(r"\b(refund|return)-{n}\b")},
                {"field": "contact.phone", "op": "starts_with", "value": format!("000{n}")},
                {"field": "conversation.tags", "op": "in", "value": ["vip", format!("tier-{n}")]},
            ]},
        ]});
        client
            .post(api(&format!("/workspaces/{workspace}/automations")))
            .bearer_auth(args.admin_token)
            .json(&json!({"name": format!("rule {n}"), "position": n, "trigger": {"event": "message_received"},
                          "conditions": conditions, "actions": [{"type": "add_tags", "tags": [format!("rule-{n}")]}]}))
            .send()
            .await?
            .error_for_status()?;
    }
    for index in 0..args.numbers {
        client
            .post(api(&format!("/workspaces/{workspace}/channels")))
            .bearer_auth(args.admin_token)
            .json(&json!({"phone_number_id": phone_number_id(run, index), "display_phone_number": format!("+1555{index:04}"),
                          "access_token": "loadtest", "team_id": team_id}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok((workspace, team_id))
}

struct WorldArgs<'a> {
    url: &'a str,
    admin_token: &'a str,
    numbers: u64,
    auto_accept: bool,
}

/// Sends each ongoing customer's first message (unmeasured), then pauses for `settle_ms`, so
/// the measured run finds their conversations open. Returns how many failed.
pub async fn warm_up(sender: &Sender, traffic: &Traffic, mix: &MixArgs) -> anyhow::Result<u64> {
    if mix.no_warm_up || mix.customers == 0 || mix.new_share >= 1.0 || mix.status_share >= 1.0 {
        return Ok(0);
    }
    let bodies = (0..mix.customers)
        .map(|customer| traffic.warm_up_body(customer))
        .collect();
    let failed = sender
        .send_all(bodies, sender.max_in_flight.min(64))
        .await?;
    tokio::time::sleep(Duration::from_millis(mix.settle_ms)).await;
    Ok(failed)
}

/// Sends the plan's webhooks open loop to the target (after the baseline, with `--baseline`)
/// and measures each to its answer.
pub async fn run(args: IngestArgs) -> anyhow::Result<IngestReport> {
    args.target.check_loopback()?;
    args.mix.check()?;
    let sender = Sender::new(
        args.target.webhook_endpoints(),
        &args.target.app_secret,
        args.pacing.max_in_flight,
    )?;
    let run_id = run_id();
    let (workspace, _) = set_up_world(
        &sender.client,
        &args.target.url,
        &args.target.admin_token,
        args.mix.numbers,
        &run_id,
        false,
        Extras {
            sla: args.mix.sla,
            rules: args.mix.rules,
        },
    )
    .await?;
    let traffic = Traffic {
        run: run_id.clone(),
        numbers: args.mix.numbers,
        customers: args.mix.customers,
        pass: 0,
    };
    let mut planner = Planner::new(args.pacing.arrivals, args.pacing.seed, &args.mix);
    let plan = planner.plan(
        args.rate.rate as f64,
        Duration::from_secs(args.rate.duration),
    );

    let baseline = if args.baseline {
        let server = BaselineServer::start(&args.target.app_secret, args.baseline_workers)?;
        let result = sender
            .to(&server.url)
            .fire(&traffic, &plan, "baseline")
            .await;
        server.stop().await;
        Some(result?)
    } else {
        None
    };

    let warm_up_failed = warm_up(&sender, &traffic, &args.mix).await?;
    let sampler = args
        .report
        .server_pid
        .map(|pid| Sampler::start(pid, Instant::now()))
        .transpose()?;
    let target = sender.fire(&traffic, &plan, "ingest").await?;
    let server = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    // The same plan again (new wamids: a second traffic run) under a sign-in flood.
    let flooded = match args.login_flood {
        Some(rate) => {
            let email = crate::flood::make_account(
                &sender.client,
                &args.target.url,
                &args.target.admin_token,
                &workspace,
                &run_id,
            )
            .await?;
            let again = Traffic {
                pass: 1,
                ..traffic.clone()
            };
            let flood = crate::flood::Flood::start(
                sender.client.clone(),
                &args.target.url,
                email,
                rate,
                args.login_flood_spread,
            );
            let result = sender.fire(&again, &plan, "ingest+flood").await;
            let logins = flood.stop().await;
            Some((result?, logins))
        }
        None => None,
    };

    let settings = json!({"url": args.target.url, "webhook_urls": args.target.webhook_urls, "rate": args.rate.rate, "duration_s": args.rate.duration,
        "pacing": args.pacing.to_json(), "mix": args.mix.to_json(), "baseline": args.baseline,
        "baseline_workers": args.baseline_workers, "run_id": run_id});
    let mut json = header("ingest", settings);
    json["warm_up_failed"] = json!(warm_up_failed);
    json["result"] = target.to_json();
    let mut summary = report::run_summary(&target, "engine");
    if let Some((run, logins)) = &flooded {
        json["login_flood"] = json!({"result": run.to_json(), "logins": logins,
            "p99_ratio_flooded_over_quiet": run.p99_ms() / target.p99_ms(),
            "p50_ratio_flooded_over_quiet":
                run.latency.value_at_quantile(0.5) as f64 / target.latency.value_at_quantile(0.5).max(1) as f64});
        summary.extend(report::run_summary(run, "engine, sign-in flood"));
        summary.push((
            "flooded / quiet p99".into(),
            format!("{:.2}", run.p99_ms() / target.p99_ms()),
        ));
    }
    let mut charts = report::run_charts(&target, "engine");
    if let Some(baseline) = &baseline {
        json["baseline"] = baseline.to_json();
        json["vs_baseline"] = ratios(&target, baseline);
        summary.extend(report::run_summary(baseline, "baseline"));
        summary.push((
            "engine / baseline: throughput, p99".into(),
            format!(
                "{:.3}, {:.2}",
                target.achieved_rate() / baseline.achieved_rate(),
                target.p99_ms() / baseline.p99_ms()
            ),
        ));
        let p99 = |run: &RunResult| -> Vec<(f64, f64)> {
            run.intervals
                .iter()
                .enumerate()
                .filter(|(_, interval)| !interval.latency.is_empty())
                .map(|(second, interval)| {
                    (
                        second as f64,
                        interval.latency.value_at_quantile(0.99) as f64 / 1000.0,
                    )
                })
                .collect()
        };
        charts.insert(
            0,
            report::Chart {
                title: "p99 per second: engine vs bare baseline (same plan)".into(),
                x_label: "seconds into the run".into(),
                y_label: "ms".into(),
                series: vec![
                    report::series("engine p99", 3, p99(&target)),
                    report::series("baseline p99", 0, p99(baseline)),
                ],
            },
        );
        charts.extend(report::run_charts(baseline, "baseline"));
    }
    if let Some(server) = &server {
        json["server"] = server.to_json();
    }
    charts.extend(report::server_charts(server.as_ref()));
    if let Some(folder) = &args.report.report {
        let page = report::html("waos-loadtest ingest", &summary, &charts);
        report::write(folder, &json, &page)?;
    }
    Ok(IngestReport {
        run: run_id,
        target,
        baseline,
        warm_up_failed,
        server,
        json,
    })
}
