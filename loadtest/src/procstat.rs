//! The server's CPU and memory over a run, from `/proc/<pid>/stat` (utime + stime, in clock
//! ticks) and `/proc/<pid>/status` (`VmRSS`), sampled every 500 ms.
//!
//! Clock ticks are *assumed* to be 100 a second (`getconf CLK_TCK` is 100 on every Linux
//! build this runs on; reading it needs `sysconf`, i.e. unsafe code or a libc binding, which
//! this crate does without). CPU% is per core: 200% is both cores of a 2-core machine busy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

pub const CLK_TCK_ASSUMED: f64 = 100.0;
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is --server-pid right?)"))?;
    parse_ticks(&stat)
}

/// Fields 14 and 15 of `stat`, counted after the command name (which may hold spaces and
/// parentheses, hence the last `)`).
fn parse_ticks(stat: &str) -> anyhow::Result<u64> {
    let (_, after_name) = stat.rsplit_once(')').context("no ) in stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is --server-pid right?)"))?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds since the sampler's epoch (the run's start).
    pub t_s: f64,
    /// Since the previous sample; none for the first.
    pub cpu_percent: Option<f64>,
    pub rss_bytes: u64,
}

/// Samples a process in the background until [`Sampler::finish`].
pub struct Sampler {
    pub pid: u32,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Fails at once if the process cannot be read.
    pub fn start(pid: u32, epoch: Instant) -> anyhow::Result<Sampler> {
        let mut previous = (Instant::now(), cpu_ticks(pid)?);
        let first = Sample {
            t_s: epoch.elapsed().as_secs_f64(),
            cpu_percent: None,
            rss_bytes: rss_bytes(pid)?,
        };
        let samples = Arc::new(Mutex::new(vec![first]));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticker.tick() => {}
                }
                let (Ok(ticks), Ok(rss)) = (cpu_ticks(pid), rss_bytes(pid)) else {
                    return; // The process is gone.
                };
                let now = Instant::now();
                let seconds = now.duration_since(previous.0).as_secs_f64().max(1e-6);
                let cpu = (ticks.saturating_sub(previous.1)) as f64 / CLK_TCK_ASSUMED / seconds;
                previous = (now, ticks);
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sample {
                        t_s: now.duration_since(epoch).as_secs_f64(),
                        cpu_percent: Some(cpu * 100.0),
                        rss_bytes: rss,
                    });
            }
        });
        Ok(Sampler {
            pid,
            samples,
            stop,
            task,
        })
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn finish(self) -> ServerSamples {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ServerSamples {
            pid: self.pid,
            samples,
        }
    }
}

/// What the sampler saw.
#[derive(Clone, Debug)]
pub struct ServerSamples {
    pub pid: u32,
    pub samples: Vec<Sample>,
}

impl ServerSamples {
    pub fn to_json(&self) -> Value {
        let cpu: Vec<f64> = self.samples.iter().filter_map(|s| s.cpu_percent).collect();
        let rss = self.samples.iter().map(|s| s.rss_bytes);
        json!({
            "pid": self.pid,
            "clk_tck_assumed": CLK_TCK_ASSUMED,
            "sample_interval_ms": SAMPLE_EVERY.as_millis() as u64,
            "cpu_percent_mean": if cpu.is_empty() { None } else { Some(cpu.iter().sum::<f64>() / cpu.len() as f64) },
            "cpu_percent_max": cpu.iter().cloned().fold(None, |max: Option<f64>, c| Some(max.map_or(c, |m| m.max(c)))),
            "rss_bytes_max": rss.clone().max(),
            "rss_bytes_last": self.samples.last().map(|s| s.rss_bytes),
            "samples": self.samples.iter().map(|s| json!({"t_s": s.t_s, "cpu_percent": s.cpu_percent, "rss_bytes": s.rss_bytes})).collect::<Vec<_>>(),
        })
    }
}

/// This machine, for the report.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| {
            line.trim_start_matches("MemTotal:")
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    let load = std::fs::read_to_string("/proc/loadavg").ok();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "memory_bytes": memory_kib.map(|k| k * 1024),
        "kernel": kernel,
        "loadavg_at_start": load.map(|l| l.trim().to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "1234 (waos (serve) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_ticks(stat).unwrap(), 325);
        let status = "Name:\twaos\nVmPeak:\t  2000 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_rss(status).unwrap(), 51200 * 1024);
        assert!(parse_rss("Name: x\n").is_err());
    }

    #[tokio::test]
    async fn samples_this_process() {
        let pid = std::process::id();
        let sampler = Sampler::start(pid, Instant::now()).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let samples = sampler.finish().await;
        assert!(samples.samples.len() >= 2, "{:?}", samples.samples);
        assert!(samples.samples.iter().all(|s| s.rss_bytes > 0));
        assert!(samples.samples[1].cpu_percent.is_some());
        assert!(Sampler::start(u32::MAX, Instant::now()).is_err());
    }
}
