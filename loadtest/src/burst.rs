//! `burst`: N new conversations as fast as the generator can send them (closed loop, at most
//! `--concurrency` webhooks in flight) to K agents already online, who accept and resolve at
//! once. Reports webhook → agent-frame latency (from each webhook's actual send), webhook → 200,
//! the time until the last conversation reached an agent, and, if the server's `/metrics`
//! exposes an assignment-decision histogram, the decision time from it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::generator::percentiles_ms;
use crate::ingest::Target;
use crate::procstat::{Sampler, ServerSamples};
use crate::report::{self, ReportArgs, header};
use crate::route::{Pacing, RouteReport, RouteSetup, route_core};

#[derive(Clone, Debug, clap::Args)]
pub struct BurstArgs {
    #[command(flatten)]
    pub target: Target,
    /// New conversations in the burst (each from a customer never seen before).
    #[arg(long, default_value_t = 1000)]
    pub conversations: u64,
    /// Agents online (on websockets) before the burst starts.
    #[arg(long, default_value_t = 50)]
    pub agents: u64,
    /// Capacity of each agent (agents accept and resolve at once, so capacity keeps freeing).
    #[arg(long, default_value_t = 5)]
    pub capacity: u64,
    /// Webhooks in flight at most: the burst sends as fast as answers come back.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Assign directly instead of offering (the team's auto-accept).
    #[arg(long)]
    pub auto_accept: bool,
    /// Give the team an SLA policy, so every conversation arms its clocks (see `ramp --sla`).
    #[arg(long)]
    pub sla: bool,
    /// Seconds to wait, after the last webhook's answer, for conversations still unrouted.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// One Prometheus histogram, summed over its label sets (other than `le`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromHistogram {
    /// (upper bound, cumulative count), ascending.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl PromHistogram {
    /// `self - before` (counters only grow; a restart shows as negative and is clamped).
    pub fn since(&self, before: Option<&PromHistogram>) -> PromHistogram {
        let Some(before) = before else {
            return self.clone();
        };
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        PromHistogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, (c - earlier(*le)).max(0.0)))
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// The upper bound of the bucket holding quantile `q` (the server's resolution, no finer).
    pub fn bucket_bound(&self, q: f64) -> Option<f64> {
        let rank = q * self.count;
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= rank && *cumulative > 0.0)
            .map(|(le, _)| *le)
    }

    pub fn to_json(&self) -> Value {
        let seconds_to_ms = |s: f64| {
            if s.is_finite() {
                Some(s * 1000.0)
            } else {
                None
            }
        };
        json!({
            "count": self.count,
            "sum_s": self.sum,
            "mean_ms": if self.count > 0.0 { Some(self.sum / self.count * 1000.0) } else { None },
            "p50_at_most_ms": self.bucket_bound(0.5).and_then(seconds_to_ms),
            "p99_at_most_ms": self.bucket_bound(0.99).and_then(seconds_to_ms),
            "buckets": self.buckets.iter().map(|(le, c)| json!({"le": if le.is_finite() { json!(le) } else { json!("+Inf") }, "cumulative": c})).collect::<Vec<_>>(),
        })
    }
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// Every histogram in a Prometheus/OpenMetrics text exposition.
pub fn parse_histograms(text: &str) -> BTreeMap<String, PromHistogram> {
    let mut histograms: BTreeMap<String, PromHistogram> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next()?, parts.next()?);
            (kind == "histogram").then(|| (name.to_owned(), PromHistogram::default()))
        })
        .collect();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = match line.rfind('}') {
            Some(end) => (&line[..=end], line[end + 1..].split_whitespace().next()),
            None => {
                let mut parts = line.split_whitespace();
                (parts.next().unwrap_or(""), parts.next())
            }
        };
        let Some(value) = value.and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        for (suffix, part) in [("_bucket", 0), ("_sum", 1), ("_count", 2)] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            let Some(histogram) = histograms.get_mut(base) else {
                continue;
            };
            match part {
                0 => {
                    let le = match label(labels, "le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(le) => match le.parse::<f64>() {
                            Ok(le) => le,
                            Err(_) => continue,
                        },
                        None => continue,
                    };
                    match histogram.buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some(bucket) => bucket.1 += value,
                        None => histogram.buckets.push((le, value)),
                    }
                }
                1 => histogram.sum += value,
                _ => histogram.count += value,
            }
        }
    }
    for histogram in histograms.values_mut() {
        histogram
            .buckets
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    }
    histograms
}

/// Histogram names that measure the routing decision (assignment), by what they are called.
fn is_decision_metric(name: &str) -> bool {
    ["assign", "decision", "routing", "offer"]
        .iter()
        .any(|word| name.contains(word))
}

/// `/metrics` as text, or none if the server has no such endpoint.
async fn scrape(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(format!("{url}/metrics")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// What `/metrics` says about decision time over the burst (or why it says nothing).
pub fn decision_time(before: Option<&str>, after: Option<&str>) -> Value {
    let Some(after) = after else {
        return json!({"available": false, "note": "the server answered no /metrics"});
    };
    let after = parse_histograms(after);
    let before = before.map(parse_histograms).unwrap_or_default();
    let decisions: BTreeMap<&String, Value> = after
        .iter()
        .filter(|(name, _)| is_decision_metric(name))
        .map(|(name, histogram)| (name, histogram.since(before.get(name)).to_json()))
        .collect();
    if decisions.is_empty() {
        json!({
            "available": false,
            "histograms_seen": after.keys().collect::<Vec<_>>(),
            "note": "the server's /metrics exposes no assignment-decision histogram (no histogram \
                     named for assign/decision/routing/offer); decision time is not measured. \
                     webhook→agent-frame latency above bounds it from above.",
        })
    } else {
        json!({"available": true, "histograms": decisions})
    }
}

#[derive(Debug)]
pub struct BurstReport {
    pub route: RouteReport,
    pub decision_time: Value,
    pub server: Option<ServerSamples>,
    pub json: Value,
}

pub async fn run(args: BurstArgs) -> anyhow::Result<BurstReport> {
    let setup = RouteSetup {
        target: args.target.clone(),
        agents: args.agents,
        capacity: args.capacity,
        conversations: args.conversations,
        auto_accept: args.auto_accept,
        sla: args.sla,
        wait: Duration::from_secs(args.wait_secs),
    };
    waos_workers::install_tls();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = args.target.url.clone();
    let mut sampler = None;
    let mut metrics_before = None;
    let route = route_core(
        &setup,
        Pacing::Burst {
            concurrency: args.concurrency,
        },
        "burst",
        async || {
            metrics_before = scrape(&client, &url).await;
            if let Some(pid) = args.report.server_pid {
                sampler = Some(Sampler::start(pid, Instant::now())?);
            }
            Ok(())
        },
    )
    .await?;
    let metrics_after = scrape(&client, &url).await;
    let server = match sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let decision_time = decision_time(metrics_before.as_deref(), metrics_after.as_deref());

    let settings = json!({"url": args.target.url, "conversations": args.conversations, "agents": args.agents,
        "capacity": args.capacity, "concurrency": args.concurrency, "auto_accept": args.auto_accept, "sla": args.sla,
        "wait_secs": args.wait_secs});
    let mut json = header("burst", settings);
    json["result"] = json!({
        "conversations": route.conversations,
        "routed": route.routed,
        "webhook_errors": route.webhook_errors,
        "elapsed_s": route.elapsed_s,
        "routed_per_s": route.routed as f64 / route.elapsed_s.max(1e-9),
        "webhook_to_agent_frame_ms": percentiles_ms(&route.to_agent),
        "webhook_to_200_ms": percentiles_ms(&route.to_200),
    });
    json["decision_time"] = decision_time.clone();
    if let Some(server) = &server {
        json["server"] = server.to_json();
    }
    if let Some(folder) = &args.report.report {
        write_page(folder, &json, &route, &decision_time, server.as_ref())?;
    }
    Ok(BurstReport {
        route,
        decision_time,
        server,
        json,
    })
}

fn write_page(
    folder: &Path,
    json: &Value,
    route: &RouteReport,
    decision_time: &Value,
    server: Option<&ServerSamples>,
) -> anyhow::Result<()> {
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut summary = vec![
        (
            "conversations / routed / webhook errors".to_owned(),
            format!(
                "{} / {} / {}",
                route.conversations, route.routed, route.webhook_errors
            ),
        ),
        (
            "elapsed (first send to last frame)".to_owned(),
            format!("{:.3} s", route.elapsed_s),
        ),
    ];
    for (name, histogram) in [
        ("webhook → agent frame", &route.to_agent),
        ("webhook → 200", &route.to_200),
    ] {
        summary.push((
            format!("{name} p50 / p90 / p99 / p99.9 / max (ms)"),
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                ms(histogram, 0.5),
                ms(histogram, 0.9),
                ms(histogram, 0.99),
                ms(histogram, 0.999),
                histogram.max() as f64 / 1000.0
            ),
        ));
    }
    summary.push((
        "decision time (/metrics)".to_owned(),
        decision_time.to_string(),
    ));
    // The latency distribution: the value at each percentile.
    let percentiles = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0];
    let curve = |histogram: &hdrhistogram::Histogram<u64>| {
        percentiles
            .iter()
            .map(|p| (*p, ms(histogram, p / 100.0)))
            .collect::<Vec<_>>()
    };
    let mut charts = vec![report::Chart {
        title: "latency by percentile".into(),
        x_label: "percentile".into(),
        y_label: "ms".into(),
        series: vec![
            report::series("webhook → agent frame", 0, curve(&route.to_agent)),
            report::series("webhook → 200", 1, curve(&route.to_200)),
        ],
    }];
    charts.extend(report::server_charts(server));
    report::write(
        folder,
        json,
        &report::html("waos-loadtest burst", &summary, &charts),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP waos_assign_seconds x\n# TYPE waos_assign_seconds histogram\n\
        waos_assign_seconds_sum 0.5\nwaos_assign_seconds_count 10\n\
        waos_assign_seconds_bucket{le=\"0.001\"} 5\nwaos_assign_seconds_bucket{le=\"0.01\"} 10\n\
        waos_assign_seconds_bucket{le=\"+Inf\"} 10\n\
        # TYPE waos_webhook_requests counter\nwaos_webhook_requests_total{outcome=\"stored\"} 3\n# EOF\n";
    const AFTER: &str = "# TYPE waos_assign_seconds histogram\n\
        waos_assign_seconds_sum 1.5\nwaos_assign_seconds_count 110\n\
        waos_assign_seconds_bucket{le=\"0.001\"} 55\nwaos_assign_seconds_bucket{le=\"0.01\"} 108\n\
        waos_assign_seconds_bucket{le=\"+Inf\"} 110\n\
        # TYPE waos_ingest_commit_seconds histogram\nwaos_ingest_commit_seconds_bucket{le=\"+Inf\"} 1\n# EOF\n";

    #[test]
    fn reads_decision_histograms_as_deltas() {
        let parsed = parse_histograms(AFTER);
        assert_eq!(parsed.len(), 2);
        let value = decision_time(Some(BEFORE), Some(AFTER));
        assert_eq!(value["available"], true);
        let assign = &value["histograms"]["waos_assign_seconds"];
        assert_eq!(assign["count"], 100.0);
        assert!((assign["mean_ms"].as_f64().unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(assign["p50_at_most_ms"], 1.0);
        // 98 of the 100 within 10 ms: the 99th is past the last finite bucket, so unknown.
        assert!(assign["p99_at_most_ms"].is_null());
        assert!(
            value["histograms"]
                .get("waos_ingest_commit_seconds")
                .is_none()
        );
    }

    #[test]
    fn says_so_when_there_is_no_decision_histogram() {
        let text = "# TYPE waos_ingest_commit_seconds histogram\nwaos_ingest_commit_seconds_bucket{le=\"+Inf\"} 1\n";
        let value = decision_time(None, Some(text));
        assert_eq!(value["available"], false);
        assert_eq!(value["histograms_seen"][0], "waos_ingest_commit_seconds");
        assert_eq!(decision_time(None, None)["available"], false);
    }
}
