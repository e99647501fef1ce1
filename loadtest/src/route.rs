//! New conversations routed to K agents on real websockets. Each agent accepts every offer and
//! resolves what it is given, so capacity keeps freeing; the latency measured is from each
//! webhook's *scheduled* send time to the `offer` (or `assigned`) frame at the agent, matched
//! by the message's wamid.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ingest::{Target, phone_number_id, set_up_world, sign};

#[derive(Clone, Debug, clap::Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Agents on websockets.
    #[arg(long, default_value_t = 20)]
    pub agents: u64,
    /// Capacity of each agent.
    #[arg(long, default_value_t = 5)]
    pub capacity: u64,
    /// New conversations per second, scheduled at a constant rate.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// New conversations in all.
    #[arg(long, default_value_t = 2000)]
    pub conversations: u64,
    /// Assign directly instead of offering (the team's auto-accept).
    #[arg(long)]
    pub auto_accept: bool,
}

#[derive(Debug)]
pub struct RouteReport {
    pub conversations: u64,
    pub routed: u64,
    pub webhook_errors: u64,
    pub elapsed_s: f64,
    pub to_agent: Histogram<u64>,
    pub to_200: Histogram<u64>,
}

fn quantiles(histogram: &Histogram<u64>) -> Value {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    json!({"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "max": histogram.max() as f64 / 1000.0, "count": histogram.len()})
}

impl RouteReport {
    pub fn to_json(&self) -> Value {
        json!({
            "conversations": self.conversations,
            "routed": self.routed,
            "webhook_errors": self.webhook_errors,
            "elapsed_s": self.elapsed_s,
            "webhook_to_agent_frame_ms": quantiles(&self.to_agent),
            "webhook_to_200_ms": quantiles(&self.to_200),
        })
    }
}

type Scheduled = Arc<Mutex<HashMap<String, Instant>>>;

/// The first frame naming `wamid` at any agent: its latency from the scheduled send.
async fn record_arrival(
    scheduled: &Scheduled,
    latency: &Mutex<Histogram<u64>>,
    routed: &AtomicU64,
    wamid: &str,
) {
    if let Some(at) = scheduled.lock().await.remove(wamid) {
        let _ = latency
            .lock()
            .await
            .record((at.elapsed().as_micros() as u64).max(1));
        routed.fetch_add(1, Ordering::Relaxed);
    }
}

async fn agent_loop(
    url: String,
    token: String,
    scheduled: Scheduled,
    latency: Arc<Mutex<Histogram<u64>>>,
    routed: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut request =
        format!("{}/ws/agent", url.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text)?;
        let kind = frame["type"].as_str().unwrap_or("");
        // An offer names the message it is for; with auto-accept, the `message` frame right
        // after `assigned` does.
        let named = match kind {
            "offer" => frame["last_message"]["wamid"].as_str(),
            "message" => frame["message"]["wamid"].as_str(),
            _ => None,
        };
        if let Some(wamid) = named {
            record_arrival(&scheduled, &latency, &routed, wamid).await;
        }
        let id = frame["conversation_id"].clone();
        let reply = match kind {
            "offer" => Some(json!({"type": "accept", "conversation_id": id})),
            "assigned" => Some(json!({"type": "resolve", "conversation_id": id})),
            _ => None,
        };
        if let Some(reply) = reply {
            socket.send(Message::Text(reply.to_string().into())).await?;
        }
    }
    Ok(())
}

pub async fn run(args: RouteArgs) -> anyhow::Result<RouteReport> {
    args.target.check_loopback()?;
    let target = &args.target;
    waos_workers::install_tls();
    let client = reqwest::Client::new();
    let run_id = crate::ingest::run_id();
    let (workspace, team) = set_up_world(
        &client,
        &target.url,
        &target.admin_token,
        1,
        &run_id,
        args.auto_accept,
    )
    .await?;
    let password = "loadtest-password-1";
    let scheduled: Scheduled = Arc::default();
    let to_agent = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let routed = Arc::new(AtomicU64::new(0));
    for index in 0..args.agents {
        let email = format!("agent{index}.{run_id}@loadtest.example");
        client
            .post(format!("{}/api/v1/workspaces/{workspace}/agents", target.url))
            .bearer_auth(&target.admin_token)
            .json(&json!({"name": format!("agent {index}"), "email": email, "password": password, "role": "agent",
                          "capacity": args.capacity, "team_ids": [team]}))
            .send()
            .await?
            .error_for_status()?;
        let session: Value = client
            .post(format!("{}/api/v1/auth/login", target.url))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = session["token"].as_str().context("token")?.to_owned();
        tokio::spawn(agent_loop(
            target.url.clone(),
            token,
            scheduled.clone(),
            to_agent.clone(),
            routed.clone(),
        ));
    }
    // Let every socket say hello before the first customer writes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let secret = target.app_secret.clone().into_bytes();
    let endpoint = format!("{}/webhooks/whatsapp", target.url);
    let to_200 = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let errors = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for sequence in 0..args.conversations {
        let at = start + interval.mul_f64(sequence as f64);
        tokio::time::sleep_until(at.into()).await;
        let wamid = format!("wamid.route.{run_id}.{sequence}");
        let phone = format!("44780{sequence:07}");
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100123", "phone_number_id": phone_number_id(&run_id, 0)},
            "contacts": [{"profile": {"name": "load"}, "wa_id": phone}],
            "messages": [{"from": phone, "id": wamid, "timestamp": "1781600000", "type": "text", "text": {"body": "help"}}]
        }}]}]})
        .to_string()
        .into_bytes();
        scheduled.lock().await.insert(wamid, at);
        let request = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(&secret, &body)?)
            .body(body);
        let (to_200, errors) = (to_200.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let _ = to_200
                        .lock()
                        .await
                        .record((at.elapsed().as_micros() as u64).max(1));
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
    // Wait (bounded) for the last offers to reach the agents.
    let deadline = Instant::now() + Duration::from_secs(30);
    while routed.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) < args.conversations
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let to_agent = to_agent.lock().await.clone();
    let to_200 = to_200.lock().await.clone();
    Ok(RouteReport {
        conversations: args.conversations,
        routed: routed.load(Ordering::Relaxed),
        webhook_errors: errors.load(Ordering::Relaxed),
        elapsed_s,
        to_agent,
        to_200,
    })
}
