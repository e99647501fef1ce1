//! Signed webhook ingest at a constant open-loop rate, reporting latency to the 200.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Mutex, Semaphore};

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
}

impl Target {
    /// Load tests send only to this machine.
    pub fn check_loopback(&self) -> anyhow::Result<()> {
        if self.url.starts_with("http://127.") || self.url.starts_with("http://localhost") {
            Ok(())
        } else {
            bail!("load tests target this machine only (http://127.0.0.1:...)")
        }
    }
}

/// What to send, how fast and for how long.
#[derive(Clone, Debug, clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub target: Target,
    /// Webhooks per second, scheduled at a constant rate.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// WhatsApp numbers (channels) to spread the load over.
    #[arg(long, default_value_t = 4)]
    pub numbers: u64,
    /// Distinct customers writing.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Requests in flight at most; arrivals beyond it are counted as dropped, not delayed.
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct IngestReport {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub latency: Histogram<u64>,
}

impl IngestReport {
    pub fn to_json(&self) -> Value {
        let ms = |quantile: f64| self.latency.value_at_quantile(quantile) as f64 / 1000.0;
        json!({
            "offered_rate": self.offered_rate,
            "achieved_rate": self.achieved_rate,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": self.latency.max() as f64 / 1000.0},
        })
    }
}

pub fn sign(secret: &[u8], body: &[u8]) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).context("app secret")?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
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

/// Creates a workspace, a team and `numbers` channels for this run.
async fn set_up(client: &reqwest::Client, args: &IngestArgs, run: &str) -> anyhow::Result<()> {
    set_up_world(
        client,
        &args.target.url,
        &args.target.admin_token,
        args.numbers,
        run,
        false,
    )
    .await
    .map(|_| ())
}

/// Creates a workspace, a team and `numbers` channels; returns (workspace id, team id).
pub async fn set_up_world(
    client: &reqwest::Client,
    url: &str,
    admin_token: &str,
    numbers: u64,
    run: &str,
    auto_accept: bool,
) -> anyhow::Result<(String, String)> {
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

fn webhook(run: &str, sequence: u64, args: &IngestArgs) -> Vec<u8> {
    let customer = sequence % args.customers.max(1);
    let number = sequence % args.numbers.max(1);
    let phone = format!("44770{customer:07}");
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": phone_number_id(run, number)},
        "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": phone}],
        "messages": [{"from": phone, "id": format!("wamid.load.{run}.{sequence}"), "timestamp": "1781600000",
                      "type": "text", "text": {"body": format!("load message {sequence}")}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// Sends `rate` signed webhooks a second for `duration` seconds and measures each to its answer.
pub async fn run(args: IngestArgs) -> anyhow::Result<IngestReport> {
    args.target.check_loopback()?;
    waos_workers::install_tls();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let run_id = run_id();
    set_up(&client, &args, &run_id).await?;

    let total = args.rate * args.duration;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut dropped = 0;
    let permits = Arc::new(Semaphore::new(args.max_in_flight));
    let secret = args.target.app_secret.clone().into_bytes();
    let endpoint = format!("{}/webhooks/whatsapp", args.target.url);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for sequence in 0..total {
        let scheduled = start + interval.mul_f64(sequence as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let body = webhook(&run_id, sequence, &args);
        let signature = sign(&secret, &body)?;
        let request = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body);
        let (latency, ok, errors) = (latency.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let answered = request.send().await;
            let micros = scheduled.elapsed().as_micros() as u64;
            drop(permit);
            match answered {
                Ok(response) if response.status().is_success() => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    let _ = latency.lock().await.record(micros.max(1));
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let latency = Arc::try_unwrap(latency)
        .map_err(|_| anyhow::anyhow!("latency still shared"))?
        .into_inner();
    Ok(IngestReport {
        offered_rate: args.rate as f64,
        achieved_rate: ok as f64 / elapsed,
        sent: total - dropped,
        ok,
        errors: errors.load(Ordering::Relaxed),
        dropped,
        latency,
    })
}
