//! New conversations routed to K agents on real websockets. Each agent accepts every offer and
//! resolves what it is given, so capacity keeps freeing; the latency measured is from each
//! webhook's *scheduled* send time (or, in a burst, its actual send time) to the `offer` (or,
//! with auto-accept, the message) frame at the agent, matched by the message's wamid.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::arrivals::{Arrivals, Schedule};
use crate::generator::{latency_histogram, percentiles_ms, progress};
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
    /// New conversations per second (on average, with --arrivals poisson).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// New conversations in all.
    #[arg(long, default_value_t = 2000)]
    pub conversations: u64,
    /// Assign directly instead of offering (the team's auto-accept).
    #[arg(long)]
    pub auto_accept: bool,
    /// Give the team an SLA policy, so every conversation arms its clocks (see `ramp --sla`).
    #[arg(long)]
    pub sla: bool,
    /// Arrival process: evenly spaced, or Poisson (exponential gaps, seeded by --seed).
    #[arg(long, value_enum, default_value_t = Arrivals::Constant)]
    pub arrivals: Arrivals,
    /// Seed of the Poisson arrival gaps.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug)]
pub struct RouteReport {
    pub conversations: u64,
    pub routed: u64,
    pub webhook_errors: u64,
    /// From the first send to the last frame awaited (or the wait's deadline).
    pub elapsed_s: f64,
    pub to_agent: Histogram<u64>,
    pub to_200: Histogram<u64>,
}

impl RouteReport {
    pub fn to_json(&self) -> Value {
        json!({
            "conversations": self.conversations,
            "routed": self.routed,
            "webhook_errors": self.webhook_errors,
            "elapsed_s": self.elapsed_s,
            "webhook_to_agent_frame_ms": percentiles_ms(&self.to_agent),
            "webhook_to_200_ms": percentiles_ms(&self.to_200),
        })
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Creates an agent of `capacity` in `team_ids` and signs it in; returns its session token.
pub async fn create_agent(
    client: &reqwest::Client,
    target: &Target,
    workspace: &str,
    team_ids: &[&str],
    capacity: u64,
    email: &str,
) -> anyhow::Result<String> {
    create_account(
        client, target, workspace, team_ids, capacity, email, "agent",
    )
    .await
}

/// [`create_agent`] with another role (`supervisor`, `admin`).
pub async fn create_account(
    client: &reqwest::Client,
    target: &Target,
    workspace: &str,
    team_ids: &[&str],
    capacity: u64,
    email: &str,
    role: &str,
) -> anyhow::Result<String> {
    let password = "loadtest-password-1";
    client
        .post(format!(
            "{}/api/v1/workspaces/{workspace}/agents",
            target.url
        ))
        .bearer_auth(&target.admin_token)
        .json(
            &json!({"name": email, "email": email, "password": password, "role": role,
                      "capacity": capacity, "team_ids": team_ids}),
        )
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
    Ok(session["token"].as_str().context("token")?.to_owned())
}

/// Opens an agent socket and waits for its first frame (the `hello`), so the agent is online
/// when this returns.
pub async fn open_socket(url: &str, token: &str) -> anyhow::Result<(Socket, Value)> {
    let mut request =
        format!("{}/ws/agent", url.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message? {
                let first = serde_json::from_str::<Value>(&text)?;
                return Ok((socket, first));
            }
        }
        anyhow::bail!("the socket closed before its first frame")
    })
    .await
    .context("no connection and first frame within 10 s")?
}

/// A new customer's first message (`help`) to the run's first number, as Meta posts it.
pub(crate) fn first_message(run: &str, phone: &str, wamid: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100123", "phone_number_id": phone_number_id(run, 0)},
        "contacts": [{"profile": {"name": "load"}, "wa_id": phone}],
        "messages": [{"from": phone, "id": wamid, "timestamp": "1781600000", "type": "text", "text": {"body": "help"}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

type Scheduled = Arc<Mutex<HashMap<String, Instant>>>;

/// What the agents' sockets record into.
#[derive(Clone)]
struct Arrivals2Agents {
    scheduled: Scheduled,
    latency: Arc<Mutex<Histogram<u64>>>,
    routed: Arc<AtomicU64>,
}

impl Arrivals2Agents {
    /// The first frame naming `wamid` at any agent: its latency from the scheduled send.
    async fn arrived(&self, wamid: &str) {
        if let Some(at) = self.scheduled.lock().await.remove(wamid) {
            let _ = self
                .latency
                .lock()
                .await
                .record((at.elapsed().as_micros() as u64).max(1));
            self.routed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An agent that accepts every offer and resolves every assignment at once.
async fn agent_loop(mut socket: Socket, record: Arrivals2Agents) -> anyhow::Result<()> {
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
            record.arrived(wamid).await;
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

/// How the conversations' first messages are sent.
pub(crate) enum Pacing {
    /// Open loop: each at its offset from the start; latency from the scheduled instant.
    Scheduled(Vec<Duration>),
    /// As fast as possible with at most `concurrency` in flight; latency from each send.
    Burst { concurrency: usize },
}

/// What `route` and `burst` share.
pub(crate) struct RouteSetup {
    pub target: Target,
    pub agents: u64,
    pub capacity: u64,
    pub conversations: u64,
    pub auto_accept: bool,
    pub sla: bool,
    /// How long to wait, after the last webhook's answer, for the last frames.
    pub wait: Duration,
}

/// Sets up a world, connects the agents, sends the conversations' first messages and waits
/// (bounded) for every one to reach an agent. `before_send` runs once the agents are online.
pub(crate) async fn route_core(
    setup: &RouteSetup,
    pacing: Pacing,
    label: &str,
    mut before_send: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<RouteReport> {
    let target = &setup.target;
    target.check_loopback()?;
    crate::raise_open_files_limit();
    waos_workers::install_tls();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_id = crate::ingest::run_id();
    let (workspace, team) = set_up_world(
        &client,
        &target.url,
        &target.admin_token,
        1,
        &run_id,
        setup.auto_accept,
        crate::ingest::Extras {
            sla: setup.sla,
            rules: 0,
        },
    )
    .await?;
    let record = Arrivals2Agents {
        scheduled: Arc::default(),
        latency: Arc::new(Mutex::new(latency_histogram()?)),
        routed: Arc::new(AtomicU64::new(0)),
    };
    let mut agents = Vec::new();
    for index in 0..setup.agents {
        let email = format!("agent{index}.{run_id}@loadtest.example");
        let token = create_agent(
            &client,
            target,
            &workspace,
            &[&team],
            setup.capacity,
            &email,
        )
        .await?;
        let (socket, _hello) = open_socket(&target.url, &token).await?;
        agents.push(tokio::spawn(agent_loop(socket, record.clone())));
    }
    before_send().await?;

    let secret = target.app_secret.clone().into_bytes();
    let endpoints = target.webhook_endpoints();
    let to_200 = Arc::new(Mutex::new(latency_histogram()?));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = progress(setup.conversations, label);
    let concurrency = match &pacing {
        Pacing::Scheduled(_) => 1 << 20,
        Pacing::Burst { concurrency } => (*concurrency).clamp(1, 1 << 20),
    };
    let permits = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    for sequence in 0..setup.conversations {
        let permit = permits.clone().acquire_owned().await?;
        let at = match &pacing {
            Pacing::Scheduled(offsets) => {
                let at = start + offsets.get(sequence as usize).copied().unwrap_or_default();
                tokio::time::sleep_until(at.into()).await;
                at
            }
            Pacing::Burst { .. } => Instant::now(),
        };
        bar.inc(1);
        let wamid = format!("wamid.route.{run_id}.{sequence}");
        let phone = format!("44780{sequence:07}");
        let body = first_message(&run_id, &phone, &wamid);
        record.scheduled.lock().await.insert(wamid, at);
        let request = client
            .post(&endpoints[sequence as usize % endpoints.len()])
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(&secret, &body)?)
            .body(body);
        let (to_200, errors) = (to_200.clone(), errors.clone());
        tokio::spawn(async move {
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
            drop(permit);
        });
    }
    bar.set_message("waiting for the last offers");
    let _ = permits
        .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .await?;
    // Wait (bounded) for the last offers to reach the agents.
    let deadline = Instant::now() + setup.wait;
    let routed = &record.routed;
    while routed.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed) < setup.conversations
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    for agent in agents {
        agent.abort();
    }
    let to_agent = record.latency.lock().await.clone();
    let to_200 = to_200.lock().await.clone();
    Ok(RouteReport {
        conversations: setup.conversations,
        routed: routed.load(Ordering::Relaxed),
        webhook_errors: errors.load(Ordering::Relaxed),
        elapsed_s,
        to_agent,
        to_200,
    })
}

pub async fn run(args: RouteArgs) -> anyhow::Result<RouteReport> {
    let offsets =
        Schedule::new(args.arrivals, args.rate as f64, args.seed).first(args.conversations);
    let setup = RouteSetup {
        target: args.target,
        agents: args.agents,
        capacity: args.capacity,
        conversations: args.conversations,
        auto_accept: args.auto_accept,
        sla: args.sla,
        wait: Duration::from_secs(30),
    };
    route_core(&setup, Pacing::Scheduled(offsets), "route", async || Ok(())).await
}
