//! The bare baseline: an actix-web server with one handler that does the least a webhook
//! endpoint must (read the raw body, check its HMAC-SHA256 against `X-Hub-Signature-256`,
//! parse the JSON) and answers 200. Run by the same generator with the same bodies, it shows
//! what this machine, this HTTP stack and this generator can do at all, so the engine's
//! figures read as a ratio of it.
//!
//! It runs in this process, on a thread of its own with its own actix system, on
//! `127.0.0.1:0`: it shares the machine's cores with the generator exactly as the engine does.

use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::generator::Sender;
use crate::ingest::{IngestReport, PacingArgs, RateArgs};
use crate::procstat::Sampler;
use crate::report::{self, ReportArgs, header};
use crate::traffic::{MixArgs, Planner, Traffic};

struct Secret(Vec<u8>);

async fn webhook(
    secret: web::Data<Secret>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let valid = request
        .headers()
        .get("x-hub-signature-256")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix("sha256="))
        .and_then(|digest| hex::decode(digest).ok())
        .is_some_and(|expected| {
            Hmac::<Sha256>::new_from_slice(&secret.0).is_ok_and(|mut mac| {
                mac.update(&body);
                mac.verify_slice(&expected).is_ok()
            })
        });
    if !valid {
        return HttpResponse::Unauthorized().finish();
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"received":1}"#),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

/// A running baseline server; stopped (and its thread joined) by [`BaselineServer::stop`].
pub struct BaselineServer {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BaselineServer {
    /// Starts the server with `workers` HTTP worker threads and waits until it listens.
    pub fn start(secret: &str, workers: usize) -> anyhow::Result<BaselineServer> {
        let secret = web::Data::new(Secret(secret.as_bytes().to_vec()));
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("baseline".into())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(secret.clone())
                            .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
                            .route("/webhooks/whatsapp", web::post().to(webhook))
                    })
                    .workers(workers.max(1))
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0));
                    let server = match bound {
                        Ok(server) => server,
                        Err(error) => {
                            let _ = ready.send(Err(anyhow::Error::from(error)));
                            return;
                        }
                    };
                    let port = server.addrs().first().map(|addr| addr.port());
                    let server = server.run();
                    let _ = ready.send(
                        port.map(|port| (port, server.handle()))
                            .context("the baseline bound no address"),
                    );
                    let _ = server.await;
                });
            })?;
        let (port, handle) = started
            .recv_timeout(Duration::from_secs(10))
            .context("the baseline server did not start")??;
        Ok(BaselineServer {
            url: format!("http://127.0.0.1:{port}"),
            handle,
            thread: Some(thread),
        })
    }

    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not stopped explicitly: ask it to stop without waiting (the thread ends with it).
            drop(self.handle.stop(false));
        }
    }
}

/// `waos-loadtest baseline`: the generator against the bare server alone.
#[derive(Clone, Debug, clap::Args)]
pub struct BaselineArgs {
    /// The secret the bare server checks signatures with (any will do).
    #[arg(long, default_value = "baseline-secret")]
    pub app_secret: String,
    #[command(flatten)]
    pub rate: RateArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub mix: MixArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    /// HTTP worker threads of the bare server (match the engine's WAOS__SERVER__WORKERS).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Runs the plan open loop against a bare server started for the run.
pub async fn run(args: BaselineArgs) -> anyhow::Result<IngestReport> {
    args.mix.check()?;
    let server = BaselineServer::start(&args.app_secret, args.workers)?;
    let result = async {
        let sender = Sender::new(
            vec![format!("{}/webhooks/whatsapp", server.url)],
            &args.app_secret,
            args.pacing.max_in_flight,
        )?;
        let run_id = crate::ingest::run_id();
        let traffic = Traffic {
            run: run_id.clone(),
            numbers: args.mix.numbers,
            customers: args.mix.customers,
            pass: 0,
        };
        let plan = Planner::new(args.pacing.arrivals, args.pacing.seed, &args.mix).plan(
            args.rate.rate as f64,
            Duration::from_secs(args.rate.duration),
        );
        let sampler = args
            .report
            .server_pid
            .map(|pid| Sampler::start(pid, Instant::now()))
            .transpose()?;
        let run = sender.fire(&traffic, &plan, "baseline").await?;
        let server = match sampler {
            Some(sampler) => Some(sampler.finish().await),
            None => None,
        };
        anyhow::Ok((run_id, run, server))
    }
    .await;
    server.stop().await;
    let (run_id, run, samples) = result?;
    let settings = json!({"rate": args.rate.rate, "duration_s": args.rate.duration, "workers": args.workers,
        "pacing": args.pacing.to_json(), "mix": args.mix.to_json(), "run_id": run_id});
    let mut json = header("baseline", settings);
    json["result"] = run.to_json();
    if let Some(samples) = &samples {
        json["server"] = samples.to_json();
    }
    if let Some(folder) = &args.report.report {
        let mut charts = report::run_charts(&run, "baseline");
        charts.extend(report::server_charts(samples.as_ref()));
        let page = report::html(
            "waos-loadtest baseline (bare actix-web handler)",
            &report::run_summary(&run, "baseline"),
            &charts,
        );
        report::write(folder, &json, &page)?;
    }
    Ok(IngestReport {
        run: run_id,
        target: run,
        baseline: None,
        warm_up_failed: 0,
        server: samples,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_the_signature_and_the_json() {
        let server = BaselineServer::start("s3cret", 1).unwrap();
        waos_workers::install_tls();
        let client = reqwest::Client::new();
        let url = format!("{}/webhooks/whatsapp", server.url);
        let post = |body: &'static [u8], secret: &'static [u8]| {
            client
                .post(&url)
                .header(
                    "x-hub-signature-256",
                    crate::ingest::sign(secret, body).unwrap(),
                )
                .body(body)
                .send()
        };
        assert_eq!(post(br#"{"a":1}"#, b"s3cret").await.unwrap().status(), 200);
        assert_eq!(post(br#"{"a":1}"#, b"wrong").await.unwrap().status(), 401);
        assert_eq!(post(b"not json", b"s3cret").await.unwrap().status(), 400);
        server.stop().await;
    }
}
