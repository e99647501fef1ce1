//! The open-loop sender: fires a [`Plan`]'s webhooks at their scheduled instants, whatever the
//! server does, and records each latency from the *scheduled* instant (so a stalled server
//! shows up as latency, not as a slower generator) overall and per 1-second interval.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::ingest::sign;
use crate::traffic::{Plan, Traffic};

/// Microsecond latencies up to a minute, 3 significant figures (the overall distribution).
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Per-interval distributions: 2 significant figures (1%), a twentieth of the memory.
fn interval_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 2)?)
}

/// p50/p90/p99/p99.9/max of a microsecond histogram, in milliseconds.
pub fn percentiles_ms(histogram: &Histogram<u64>) -> Value {
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    json!({"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
           "max": histogram.max() as f64 / 1000.0, "count": histogram.len()})
}

/// A progress bar on stderr when stderr is a terminal; hidden otherwise (CI, tests, pipes).
pub fn progress(length: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}

/// One second of a run: arrivals scheduled in it (and dropped at the in-flight cap), answers
/// that completed in it, and the latencies of the requests *scheduled* in it.
#[derive(Clone, Debug)]
pub struct Interval {
    pub scheduled: u64,
    pub dropped: u64,
    pub ok: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl Interval {
    fn new() -> anyhow::Result<Interval> {
        Ok(Interval {
            scheduled: 0,
            dropped: 0,
            ok: 0,
            errors: 0,
            latency: interval_histogram()?,
        })
    }
}

struct Tally {
    latency: Histogram<u64>,
    intervals: Vec<Interval>,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn interval(&mut self, second: usize) -> Option<&mut Interval> {
        while self.intervals.len() <= second {
            self.intervals.push(Interval::new().ok()?);
        }
        self.intervals.get_mut(second)
    }
}

/// Shared by the request tasks; a plain mutex (never held across an await).
struct Recorder {
    start: Instant,
    tally: Mutex<Tally>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn second(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    fn scheduled(&self, at: Instant, dropped: bool) {
        let second = self.second(at);
        let mut tally = self.lock();
        if let Some(interval) = tally.interval(second) {
            interval.scheduled += 1;
            interval.dropped += u64::from(dropped);
        }
    }

    fn answered(&self, scheduled: Instant, outcome: Result<(), String>) {
        let now = Instant::now();
        let micros = (now.saturating_duration_since(scheduled).as_micros() as u64).max(1);
        let (scheduled_second, done_second) = (self.second(scheduled), self.second(now));
        let mut tally = self.lock();
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                let _ = tally.latency.record(micros);
                if let Some(interval) = tally.interval(scheduled_second) {
                    let _ = interval.latency.record(micros);
                }
                if let Some(interval) = tally.interval(done_second) {
                    interval.ok += 1;
                }
            }
            Err(kind) => {
                tally.errors += 1;
                *tally.error_kinds.entry(kind).or_default() += 1;
                if let Some(interval) = tally.interval(done_second) {
                    interval.errors += 1;
                }
            }
        }
    }
}

/// The outcome of one open-loop run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub label: String,
    /// The rate asked for.
    pub nominal_rate: f64,
    pub duration_s: f64,
    /// Arrivals in the plan (with Poisson arrivals, near but not exactly rate × duration).
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Arrivals not sent because `max_in_flight` requests were already waiting.
    pub dropped: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// From the first scheduled instant to the last answer.
    pub elapsed_s: f64,
    pub latency: Histogram<u64>,
    pub intervals: Vec<Interval>,
}

impl RunResult {
    /// Arrivals a second that the plan offered.
    pub fn offered_rate(&self) -> f64 {
        self.scheduled as f64 / self.duration_s.max(1e-9)
    }

    /// Successful answers a second, over the run's duration or until the last answer if later.
    pub fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.elapsed_s.max(self.duration_s).max(1e-9)
    }

    pub fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }

    pub fn to_json(&self) -> Value {
        let intervals: Vec<Value> = self
            .intervals
            .iter()
            .enumerate()
            .map(|(second, interval)| {
                json!({"t_s": second, "offered": interval.scheduled, "dropped": interval.dropped,
                       "achieved": interval.ok, "errors": interval.errors,
                       "latency_ms": percentiles_ms(&interval.latency)})
            })
            .collect();
        json!({
            "label": self.label,
            "nominal_rate": self.nominal_rate,
            "offered_rate": self.offered_rate(),
            "achieved_rate": self.achieved_rate(),
            "duration_s": self.duration_s,
            "elapsed_s": self.elapsed_s,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "dropped": self.dropped,
            "latency_ms": percentiles_ms(&self.latency),
            "intervals": intervals,
        })
    }
}

/// Where and how to send.
#[derive(Clone)]
pub struct Sender {
    pub client: reqwest::Client,
    /// Webhook URLs, used in turn (one: every request goes there).
    pub endpoints: Arc<[String]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    pub secret: Vec<u8>,
    pub max_in_flight: usize,
}

impl Sender {
    pub fn new(
        endpoints: Vec<String>,
        secret: &str,
        max_in_flight: usize,
    ) -> anyhow::Result<Sender> {
        anyhow::ensure!(!endpoints.is_empty(), "no webhook URL to send to");
        waos_workers::install_tls();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_in_flight)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Sender {
            client,
            endpoints: endpoints.into(),
            next: Arc::default(),
            secret: secret.as_bytes().to_vec(),
            max_in_flight: max_in_flight.clamp(1, 1 << 24),
        })
    }

    /// The same generator against another server (the baseline).
    pub fn to(&self, base_url: &str) -> Sender {
        Sender {
            endpoints: vec![format!("{base_url}/webhooks/whatsapp")].into(),
            ..self.clone()
        }
    }

    fn request(&self, body: Vec<u8>) -> anyhow::Result<reqwest::RequestBuilder> {
        let signature = sign(&self.secret, &body)?;
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .client
            .post(&self.endpoints[turn % self.endpoints.len()])
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body))
    }

    /// Sends `bodies` closed loop, `concurrency` at a time, unmeasured (warm-up); the number
    /// that failed.
    pub async fn send_all(&self, bodies: Vec<Vec<u8>>, concurrency: usize) -> anyhow::Result<u64> {
        use futures_util::StreamExt;
        let mut requests = Vec::with_capacity(bodies.len());
        for body in bodies {
            requests.push(self.request(body)?);
        }
        let failed = futures_util::stream::iter(requests)
            .map(|request| async move {
                match request.send().await {
                    Ok(response) if response.status().is_success() => 0,
                    _ => 1,
                }
            })
            .buffer_unordered(concurrency.max(1))
            .fold(0u64, |sum, failed| async move { sum + failed })
            .await;
        Ok(failed)
    }

    /// Fires `plan` open loop and waits for every answer.
    pub async fn fire(
        &self,
        traffic: &Traffic,
        plan: &Plan,
        label: &str,
    ) -> anyhow::Result<RunResult> {
        let recorder = Arc::new(Recorder {
            start: Instant::now(),
            tally: Mutex::new(Tally {
                latency: latency_histogram()?,
                intervals: Vec::new(),
                ok: 0,
                errors: 0,
                error_kinds: BTreeMap::new(),
            }),
        });
        let bar = progress(plan.offsets.len() as u64, label);
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let start = recorder.start;
        let (mut sent, mut dropped) = (0u64, 0u64);
        for (index, (offset, item)) in plan.offsets.iter().zip(&plan.items).enumerate() {
            let scheduled = start + *offset;
            tokio::time::sleep_until(scheduled.into()).await;
            bar.inc(1);
            if index % 256 == 0 {
                let tally = recorder.lock();
                bar.set_message(format!(
                    "ok {} err {} dropped {dropped}",
                    tally.ok, tally.errors
                ));
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                dropped += 1;
                recorder.scheduled(scheduled, true);
                continue;
            };
            recorder.scheduled(scheduled, false);
            sent += 1;
            let sequence = plan.first_sequence + index as u64;
            let request = self.request(traffic.body(sequence, *item))?;
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let outcome = match request.send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("http_{}", response.status().as_u16())),
                    Err(error) if error.is_timeout() => Err("timeout".to_owned()),
                    Err(error) if error.is_connect() => Err("connect".to_owned()),
                    Err(_) => Err("other".to_owned()),
                };
                recorder.answered(scheduled, outcome);
                drop(permit);
            });
        }
        bar.set_message("waiting for the last answers");
        // Every permit back: every request answered (or failed).
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await?;
        let elapsed_s = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let tally = recorder.lock();
        Ok(RunResult {
            label: label.to_owned(),
            nominal_rate: plan.rate,
            duration_s: plan.duration.as_secs_f64(),
            scheduled: plan.offsets.len() as u64,
            sent,
            ok: tally.ok,
            errors: tally.errors,
            dropped,
            error_kinds: tally.error_kinds.clone(),
            elapsed_s,
            latency: tally.latency.clone(),
            intervals: tally.intervals.clone(),
        })
    }
}
