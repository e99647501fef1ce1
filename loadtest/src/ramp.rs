//! `ramp`: ingest at rising rates, `--from`, then `+ --step` every `--step-secs`, each step a
//! fresh open-loop run of the same traffic mix. A step passes when its p99 is at most
//! `--goal-p99-ms` and its achieved rate is at least `--min-achieved` (0.95) of what it
//! offered. The ramp stops at the first step that fails (or past `--max-rate`) and reports the
//! knee: the highest rate that passed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::generator::{RunResult, Sender, percentiles_ms};
use crate::ingest::{PacingArgs, Target, set_up_world, warm_up};
use crate::procstat::{Sampler, ServerSamples};
use crate::report::{self, Chart, ReportArgs, Series, header, series};
use crate::traffic::{MixArgs, Planner, Traffic};

#[derive(Clone, Debug, clap::Args)]
pub struct RampArgs {
    #[command(flatten)]
    pub target: Target,
    /// Rate of the first step (webhooks a second).
    #[arg(long, default_value_t = 200)]
    pub from: u64,
    /// Added to the rate at each step.
    #[arg(long, default_value_t = 200)]
    pub step: u64,
    /// Seconds each step lasts.
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,
    /// A step whose p99 (webhook → 200, from scheduled send) is over this fails.
    #[arg(long, default_value_t = 100.0)]
    pub goal_p99_ms: f64,
    /// A step achieving less than this fraction of its offered rate fails.
    #[arg(long, default_value_t = 0.95)]
    pub min_achieved: f64,
    /// No step above this rate: the ramp stops here even if every step passed.
    #[arg(long, default_value_t = 20_000)]
    pub max_rate: u64,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub mix: MixArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Clone, Debug)]
pub struct Step {
    /// Seconds from the ramp's start to the step's start.
    pub started_s: f64,
    pub run: RunResult,
    /// Why it failed; none if it passed.
    pub failed: Option<String>,
}

#[derive(Debug)]
pub struct RampReport {
    pub steps: Vec<Step>,
    /// The last step that passed.
    pub knee: Option<usize>,
    pub stopped_because: String,
    pub server: Option<ServerSamples>,
    pub json: Value,
}

fn judge(run: &RunResult, args: &RampArgs) -> Option<String> {
    let p99 = run.p99_ms();
    if run.ok == 0 {
        return Some("no successful answer".to_owned());
    }
    if p99 > args.goal_p99_ms {
        return Some(format!(
            "p99 {p99:.1} ms over the goal of {} ms",
            args.goal_p99_ms
        ));
    }
    let share = run.achieved_rate() / run.offered_rate().max(1e-9);
    if share < args.min_achieved {
        return Some(format!(
            "achieved {:.1}/s is {:.1}% of the {:.1}/s offered (under {:.0}%)",
            run.achieved_rate(),
            share * 100.0,
            run.offered_rate(),
            args.min_achieved * 100.0
        ));
    }
    None
}

pub async fn run(args: RampArgs) -> anyhow::Result<RampReport> {
    args.target.check_loopback()?;
    args.mix.check()?;
    if args.from == 0 || args.step_secs == 0 {
        anyhow::bail!("--from and --step-secs must be positive");
    }
    let sender = Sender::new(
        args.target.webhook_endpoints(),
        &args.target.app_secret,
        args.pacing.max_in_flight,
    )?;
    let run_id = crate::ingest::run_id();
    set_up_world(
        &sender.client,
        &args.target.url,
        &args.target.admin_token,
        args.mix.numbers,
        &run_id,
        false,
        crate::ingest::Extras {
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
    let warm_up_failed = warm_up(&sender, &traffic, &args.mix).await?;

    let epoch = Instant::now();
    let sampler = args
        .report
        .server_pid
        .map(|pid| Sampler::start(pid, epoch))
        .transpose()?;
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = args.from;
    let stopped_because = loop {
        let plan = planner.plan(rate as f64, Duration::from_secs(args.step_secs));
        let started_s = epoch.elapsed().as_secs_f64();
        let run = sender.fire(&traffic, &plan, &format!("{rate}/s")).await?;
        let failed = judge(&run, &args);
        steps.push(Step {
            started_s,
            run,
            failed: failed.clone(),
        });
        if let Some(reason) = failed {
            break format!("step at {rate}/s failed: {reason}");
        }
        rate += args.step;
        if rate > args.max_rate || args.step == 0 {
            break format!("every step up to --max-rate {} passed", args.max_rate);
        }
    };
    let server = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let knee = steps.iter().rposition(|step| step.failed.is_none());

    let step_json = |step: &Step| {
        json!({"nominal_rate": step.run.nominal_rate, "offered_rate": step.run.offered_rate(),
               "achieved_rate": step.run.achieved_rate(), "ok": step.run.ok, "errors": step.run.errors,
               "dropped": step.run.dropped, "latency_ms": percentiles_ms(&step.run.latency),
               "passed": step.failed.is_none(), "failed_because": step.failed, "started_s": step.started_s})
    };
    let settings = json!({"url": args.target.url, "webhook_urls": args.target.webhook_urls, "from": args.from, "step": args.step, "step_secs": args.step_secs,
        "goal_p99_ms": args.goal_p99_ms, "min_achieved": args.min_achieved, "max_rate": args.max_rate,
        "pacing": args.pacing.to_json(), "mix": args.mix.to_json(), "run_id": run_id});
    let mut json = header("ramp", settings);
    json["warm_up_failed"] = json!(warm_up_failed);
    json["result"] = json!({
        "knee": knee.map(|index| step_json(&steps[index])),
        "stopped_because": stopped_because,
        "steps": steps.iter().map(step_json).collect::<Vec<_>>(),
        "step_runs": steps.iter().map(|s| s.run.to_json()).collect::<Vec<_>>(),
    });
    if let Some(server) = &server {
        json["server"] = server.to_json();
    }
    if let Some(folder) = &args.report.report {
        let page = page(&steps, knee, &stopped_because, &args, server.as_ref());
        report::write(folder, &json, &page)?;
    }
    Ok(RampReport {
        steps,
        knee,
        stopped_because,
        server,
        json,
    })
}

fn page(
    steps: &[Step],
    knee: Option<usize>,
    stopped_because: &str,
    args: &RampArgs,
    server: Option<&ServerSamples>,
) -> report::Page {
    let mut summary = vec![
        (
            "knee (highest passing rate)".to_owned(),
            knee.map_or("none: the first step failed".to_owned(), |i| {
                format!(
                    "{:.0}/s offered, {:.0}/s achieved, p99 {:.1} ms",
                    steps[i].run.offered_rate(),
                    steps[i].run.achieved_rate(),
                    steps[i].run.p99_ms()
                )
            }),
        ),
        ("stopped because".to_owned(), stopped_because.to_owned()),
    ];
    for step in steps {
        summary.push((
            format!("step {:.0}/s", step.run.nominal_rate),
            format!(
                "achieved {:.0}/s, p50 {:.1} / p99 {:.1} ms, {} errors, {} dropped{}",
                step.run.achieved_rate(),
                step.run.latency.value_at_quantile(0.5) as f64 / 1000.0,
                step.run.p99_ms(),
                step.run.errors,
                step.run.dropped,
                step.failed
                    .as_ref()
                    .map_or(String::new(), |why| format!(": FAILED ({why})"))
            ),
        ));
    }
    let by_rate = |f: &dyn Fn(&RunResult) -> f64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .map(|s| (s.run.offered_rate(), f(&s.run)))
            .collect()
    };
    let (lowest, highest) = (
        steps.first().map_or(0.0, |s| s.run.offered_rate()),
        steps.last().map_or(0.0, |s| s.run.offered_rate()),
    );
    let mut charts = vec![
        Chart {
            title: "latency per step".into(),
            x_label: "offered webhooks/s".into(),
            y_label: "ms".into(),
            series: vec![
                series(
                    "p50",
                    0,
                    by_rate(&|r| r.latency.value_at_quantile(0.5) as f64 / 1000.0),
                ),
                series("p99", 2, by_rate(&|r| r.p99_ms())),
                series(
                    "goal p99",
                    3,
                    vec![(lowest, args.goal_p99_ms), (highest, args.goal_p99_ms)],
                ),
            ],
        },
        Chart {
            title: "achieved vs offered per step".into(),
            x_label: "offered webhooks/s".into(),
            y_label: "webhooks/s".into(),
            series: vec![
                series("achieved", 2, by_rate(&|r| r.achieved_rate())),
                series("offered", 0, by_rate(&|r| r.offered_rate())),
            ],
        },
    ];
    // Per second over the whole ramp, each step at its start time.
    let (mut latency, mut throughput) = (Vec::new(), Vec::new());
    for step in steps {
        merge(
            &mut latency,
            report::latency_series(&step.run, step.started_s),
        );
        merge(
            &mut throughput,
            report::throughput_series(&step.run, step.started_s),
        );
    }
    charts.push(Chart {
        title: "latency per second over the ramp".into(),
        x_label: "seconds".into(),
        y_label: "ms".into(),
        series: latency,
    });
    charts.push(Chart {
        title: "throughput per second over the ramp".into(),
        x_label: "seconds".into(),
        y_label: "webhooks/s".into(),
        series: throughput,
    });
    charts.extend(report::server_charts(server));
    report::html("waos-loadtest ramp", &summary, &charts)
}

/// Appends each series' points to the same-named series of `all`.
fn merge(all: &mut Vec<Series>, more: Vec<Series>) {
    if all.is_empty() {
        *all = more;
        return;
    }
    for (series, extra) in all.iter_mut().zip(more) {
        series.points.extend(extra.points);
    }
}
