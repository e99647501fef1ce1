//! The expected wait's accuracy: Poisson arrivals of new conversations into one team whose
//! agents (auto-accept) hold each conversation an exponential time, then resolve it; half the
//! agents are online from the start, the rest join at a third of the run, and a quarter go
//! away at two thirds (no new conversations, they finish what they hold). Just before each
//! webhook the team's `expected_wait_ms` from a supervisor socket is read (what a conversation
//! arriving now can expect); the wait observed is from the webhook's send to the conversation's
//! first frame at an agent. After the warm-up, the predicted and observed medians and 90th
//! percentiles are compared.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::arrivals::{Arrivals, Schedule};
use crate::ingest::{Extras, Target, run_id, set_up_world, sign};
use crate::route::{Socket, create_account, create_agent, first_message, open_socket};

#[derive(Clone, Debug, clap::Args)]
pub struct WaitsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Agents in all (half from the start, half joining at a third of the run).
    #[arg(long, default_value_t = 8)]
    pub agents: u64,
    #[arg(long, default_value_t = 1)]
    pub capacity: u64,
    /// Mean time an agent holds a conversation (exponential), in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub hold_ms: u64,
    /// Arrivals as a share of what all the agents can serve (slots / mean hold).
    #[arg(long, default_value_t = 0.95)]
    pub load: f64,
    #[arg(long, default_value_t = 90)]
    pub duration_secs: u64,
    /// The first share of arrivals is not compared (the history is still being gathered).
    #[arg(long, default_value_t = 0.25)]
    pub warmup: f64,
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
}

/// The supervisor's latest expected wait for the team (p50, p90 in ms), if it says one.
type Prediction = Arc<Mutex<Option<(f64, f64)>>>;

/// Keeps `prediction` up to date from the supervisor socket's frames.
async fn watch(mut socket: Socket, team: String, prediction: Prediction) -> anyhow::Result<()> {
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text)?;
        let entry = frame["teams"]
            .as_array()
            .and_then(|teams| teams.iter().find(|t| t["team_id"] == team.as_str()));
        if let Some(entry) = entry {
            let wait = &entry["expected_wait_ms"];
            *prediction.lock().await = wait["p50"].as_f64().zip(wait["p90"].as_f64());
        }
    }
    Ok(())
}

/// An arrival: its wamid, when it was sent, the expected wait (p50, p90) told just before.
type Sent = (String, Instant, Option<(f64, f64)>);

/// What the agents record: each conversation's first frame, by the wamid of its message.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// An agent: records each conversation's first message, resolves it after an exponential
/// hold; `away` sets its presence to away.
async fn agent(
    socket: Socket,
    hold: Duration,
    seed: u64,
    seen: Seen,
    mut away: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let (sink, mut stream) = socket.split();
    let sink = Arc::new(Mutex::new(sink));
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        tokio::select! {
            Some(()) = away.recv() => {
                let frame = json!({"type": "presence", "presence": "away"});
                sink.lock().await.send(Message::Text(frame.to_string().into())).await?;
            }
            message = stream.next() => {
                let Some(message) = message else { return Ok(()) };
                let Message::Text(text) = message? else { continue };
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == "message"
                    && let Some(wamid) = frame["message"]["wamid"].as_str()
                {
                    seen.lock().await.entry(wamid.to_owned()).or_insert_with(Instant::now);
                }
                if frame["type"] == "assigned" {
                    let uniform: f64 = rng.random();
                    let held = hold.mul_f64(-(1.0 - uniform).ln());
                    let reply = json!({"type": "resolve", "conversation_id": frame["conversation_id"]});
                    let sink = sink.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(held).await;
                        let _ = sink.lock().await.send(Message::Text(reply.to_string().into())).await;
                    });
                }
            }
        }
    }
}

fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

pub async fn run(args: WaitsArgs) -> anyhow::Result<Value> {
    let target = &args.target;
    target.check_loopback()?;
    crate::raise_open_files_limit();
    waos_workers::install_tls();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let run = run_id();
    let (workspace, team) = set_up_world(
        &client,
        &target.url,
        &target.admin_token,
        1,
        &run,
        true,
        Extras {
            sla: false,
            rules: 0,
        },
    )
    .await?;
    let supervisor = create_account(
        &client,
        target,
        &workspace,
        &[&team],
        1,
        &format!("sup.{run}@loadtest.example"),
        "supervisor",
    )
    .await?;
    let mut request =
        format!("{}/ws/supervisor", target.url.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {supervisor}").parse()?);
    let (dashboard, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("the supervisor socket")?;
    let prediction: Prediction = Arc::default();
    let watching = tokio::spawn(watch(dashboard, team.clone(), prediction.clone()));

    let seen: Seen = Arc::default();
    let hold = Duration::from_millis(args.hold_ms.max(1));
    let mut tokens = Vec::new();
    for index in 0..args.agents {
        let email = format!("agent{index}.{run}@loadtest.example");
        tokens.push(
            create_agent(&client, target, &workspace, &[&team], args.capacity, &email).await?,
        );
    }
    let mut agents = Vec::new();
    let mut aways = Vec::new();
    let connect = async |index: usize, token: &str| -> anyhow::Result<_> {
        let (socket, _) = open_socket(&target.url, token).await?;
        let (tell, away) = mpsc::channel(1);
        let task = tokio::spawn(agent(
            socket,
            hold,
            args.seed + index as u64,
            seen.clone(),
            away,
        ));
        Ok((task, tell))
    };
    let first = (args.agents as usize).div_ceil(2);
    for (index, token) in tokens.iter().enumerate().take(first) {
        let (task, tell) = connect(index, token).await?;
        agents.push(task);
        aways.push(tell);
    }

    let slots = (args.agents * args.capacity) as f64;
    let rate = args.load * slots / hold.as_secs_f64();
    let duration = Duration::from_secs(args.duration_secs.max(3));
    let offsets = Schedule::new(Arrivals::Poisson, rate, args.seed).within(duration);
    let secret = target.app_secret.clone().into_bytes();
    let endpoint = format!("{}/webhooks/whatsapp", target.url);
    let mut sent: Vec<Sent> = Vec::with_capacity(offsets.len());
    let (mut joined, mut left) = (false, false);
    let started_at = chrono::Utc::now();
    let start = Instant::now();
    for (sequence, offset) in offsets.iter().enumerate() {
        tokio::time::sleep_until((start + *offset).into()).await;
        if !joined && *offset >= duration / 3 {
            joined = true;
            for (index, token) in tokens.iter().enumerate().skip(first) {
                let (task, tell) = connect(index, token).await?;
                agents.push(task);
                aways.push(tell);
            }
        }
        if !left && *offset >= duration * 2 / 3 {
            left = true;
            for tell in aways.iter().take((args.agents as usize / 4).max(1)) {
                let _ = tell.send(()).await;
            }
        }
        let wamid = format!("wamid.waits.{run}.{sequence}");
        let phone = format!("44790{sequence:07}");
        let body = first_message(&run, &phone, &wamid);
        let predicted = *prediction.lock().await;
        let at = Instant::now();
        sent.push((wamid, at, predicted));
        let request = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(&secret, &body)?)
            .body(body);
        tokio::spawn(async move { request.send().await });
    }
    // Until every conversation reached an agent (bounded).
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().await.len() < sent.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.abort();
    for task in agents {
        task.abort();
    }
    let seen = seen.lock().await.clone();
    let skip = (sent.len() as f64 * args.warmup.clamp(0.0, 0.9)) as usize;
    let (mut observed, mut predicted_p50, mut predicted_p90) = (Vec::new(), Vec::new(), Vec::new());
    let mut unpredicted = 0;
    for (wamid, at, predicted) in sent.iter().skip(skip) {
        let Some(arrived) = seen.get(wamid) else {
            continue;
        };
        let Some((p50, p90)) = predicted else {
            unpredicted += 1;
            continue;
        };
        observed.push(arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        predicted_p50.push(*p50);
        predicted_p90.push(*p90);
    }
    let observed_p50 = quantile(&mut observed.clone(), 0.5);
    let observed_p90 = quantile(&mut observed, 0.9);
    let median_p50 = quantile(&mut predicted_p50, 0.5);
    let median_p90 = quantile(&mut predicted_p90, 0.5);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b.max(1e-9));
    Ok(json!({
        // The range to give `waos replay` for this run.
        "workspace_id": workspace,
        "from": started_at.to_rfc3339(),
        "to": (started_at + chrono::Duration::from_std(duration).unwrap_or_default()).to_rfc3339(),
        "arrivals": sent.len(),
        "reached_an_agent": seen.len(),
        "compared": predicted_p50.len(),
        "after_warmup_without_prediction": unpredicted,
        "rate_per_s": rate,
        "agents": args.agents,
        "capacity": args.capacity,
        "hold_ms": args.hold_ms,
        "observed_wait_ms": {"p50": observed_p50, "p90": observed_p90},
        "predicted_wait_ms": {"median_of_p50": median_p50, "median_of_p90": median_p90},
        "p50_predicted_over_observed": ratio(median_p50, observed_p50),
    }))
}
