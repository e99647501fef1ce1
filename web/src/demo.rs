//! `waos demo`: the engine alive within a minute. It starts `waos serve` on the embedded default
//! (a fresh SQLite file under `data/demo/`, in-process presence), seeds a workspace, and feeds a
//! gentle stream of simulated customers through the real, signed webhook path. Three simulated
//! agents work beside you on real websockets, so queues move; a stand-in for Meta's Graph API
//! (crate::fake_meta, in this process, the same one the tests use) takes the replies and posts
//! their delivery statuses back, so ticks move too.
//! Nothing leaves the machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use rand::seq::IndexedRandom;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use waos_engine::crypto::new_token;

use crate::fake_meta::{FakeGraph, StatusDelivery, post_signed};
use crate::settings::Settings;
use crate::startup::Application;

/// The demo's phone number id and WhatsApp Business Account.
const PHONE_NUMBER_ID: &str = "100200300400500";
const WABA_ID: &str = "900800700600500";
/// The password of every demo login (printed at start).
const PASSWORD: &str = "demo-password";

const CUSTOMERS: &[(&str, &str)] = &[
    ("Maria Silva", "351912345001"),
    ("Tom Becker", "491701234002"),
    ("Aisha Khan", "447700900003"),
    ("Lucas Martin", "33612345004"),
    ("Yuki Tanaka", "818012345005"),
    ("Diego Ramos", "5491123456006"),
    ("Chloe Dubois", "33612345007"),
    ("Omar Haddad", "971501234008"),
    ("Priya Nair", "919812345009"),
    ("Jonas Berg", "46701234010"),
    ("Sofia Rossi", "393401234011"),
    ("Ethan Brooks", "14155550112"),
];

const OPENERS: &[&str] = &[
    "Hi! Where is my order #{n}?",
    "Hello, I was charged twice for order {n}",
    "Can I change the delivery address for {n}?",
    "The parcel arrived damaged 😕",
    "Do you ship to Portugal?",
    "I'd like to return a jacket, order {n}",
    "Is the blue one back in stock?",
    "My discount code doesn't work",
];

const FOLLOW_UPS: &[&str] = &[
    "Thanks!",
    "Any news?",
    "Ok, and how long will that take?",
    "Great, that works for me",
    "Could you send me the tracking link?",
    "👍",
];

const BOT_REPLIES: &[&str] = &[
    "Hi! Let me check that for you.",
    "Thanks for waiting — it's on its way and should arrive tomorrow.",
    "I've refunded the duplicate charge; you'll see it in 3–5 days.",
    "Done! Anything else I can help with?",
];

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(mut settings: Settings, speed: u32) -> anyhow::Result<()> {
    let pace = Pace(speed.max(1));
    let folder = PathBuf::from("data/demo");
    if folder.exists() {
        std::fs::remove_dir_all(&folder).context("clearing data/demo")?;
    }
    std::fs::create_dir_all(&folder).context("creating data/demo")?;
    let app_secret = new_token().expose_secret().to_owned();
    let admin_token = new_token().expose_secret().to_owned();
    settings.database.url = format!("sqlite://{}/waos.sqlite", folder.display());
    settings.redis.url = String::new();
    settings.meta.app_secret = SecretString::from(app_secret.clone());
    settings.admin.token = SecretString::from(admin_token.clone());
    settings.admin.token_file = folder.join("admin-token").display().to_string();
    settings.security.secret_key_file = folder.join("secret-key").display().to_string();
    settings.media.dir = folder.join("media").display().to_string();
    // Offers last 20 s, a disconnected agent keeps its conversations 30 s.
    settings.routing.disconnect_grace_ms = 30_000;

    let meta = FakeGraph::start()
        .await
        .context("starting the fake Graph API")?;
    meta.stop_recording();
    meta.set_templates(demo_templates());
    settings.meta.graph_url = meta.url.clone();
    let host = settings.server.host.clone();
    let application = Application::build(settings).await?;
    let base = format!("http://{host}:{}", application.port());
    let server = actix_web::rt::spawn(application.run_until_stopped());
    meta.deliver_statuses(StatusDelivery {
        webhook: format!("{base}/webhooks/whatsapp"),
        app_secret: app_secret.clone(),
        waba_id: WABA_ID.to_owned(),
        steps: vec![
            ("sent", Duration::from_millis(700)),
            ("delivered", Duration::from_millis(1_500)),
            ("read", Duration::from_millis(4_000)),
        ],
    });

    let http = waos_workers::http_client(Duration::from_secs(10))?;
    let world = seed(&http, &base, &admin_token).await?;
    println!(
        "\nWaOS demo running on {base}\n\n  console:   {base}/console    log in as  you@demo.waos / {PASSWORD}\n  dashboard: {base}/dashboard  log in as  sam@demo.waos / {PASSWORD} (supervisor)\n\n\
         Simulated customers write every few seconds; Bea, Cal and Dee (simulated agents) work\n\
         beside you. Data lives in data/demo/ (cleared at each start). Ctrl-C stops.\n"
    );
    for bot in ["bea@demo.waos", "cal@demo.waos", "dee@demo.waos"] {
        let (http, base) = (http.clone(), base.clone());
        actix_web::rt::spawn(async move {
            if let Err(error) = simulated_agent(&http, &base, bot, pace).await {
                tracing::warn!(error = %format!("{error:#}"), bot, "simulated agent stopped");
            }
        });
    }
    let webhook = format!("{base}/webhooks/whatsapp");
    actix_web::rt::spawn(customers(
        http,
        webhook,
        app_secret,
        pace.of(world.first_wait),
        pace,
    ));
    // The server stops on Ctrl-C or SIGTERM (draining in order); the demo ends with it, or a
    // `kill` would leave the simulated customers writing to a closed port forever.
    let _ = server.await;
    Ok(())
}

/// Divides every demo delay (customers' pauses, agents' think times), for tests.
#[derive(Clone, Copy)]
struct Pace(u32);

impl Pace {
    fn of(self, delay: Duration) -> Duration {
        delay / self.0
    }

    fn millis(self, range: std::ops::Range<u64>) -> Duration {
        let divisor = u64::from(self.0);
        let (low, high) = (
            range.start / divisor,
            (range.end / divisor).max(range.start / divisor + 1),
        );
        Duration::from_millis(rand::rng().random_range(low..high))
    }
}

/// What the seed made.
struct World {
    /// The first customer writes after this (so the newcomer can log in first).
    first_wait: Duration,
}

async fn seed(http: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<World> {
    let post = |path: String, body: Value| {
        let request = http
            .post(format!("{base}{path}"))
            .bearer_auth(admin)
            .json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(status.is_success(), "seeding {path}: {status} {body}");
            Ok::<Value, anyhow::Error>(body)
        }
    };
    let id = |value: &Value| value["id"].as_str().unwrap_or_default().to_owned();
    let workspace = id(&post("/api/v1/workspaces".into(), json!({"name": "Demo Store"})).await?);
    let teams = format!("/api/v1/workspaces/{workspace}/teams");
    let support = id(&post(
        teams.clone(),
        json!({"name": "Support", "offer_timeout_secs": 20}),
    )
    .await?);
    let billing = id(&post(teams, json!({"name": "Billing", "offer_timeout_secs": 20})).await?);
    post(
        format!("/api/v1/workspaces/{workspace}/channels"),
        json!({"phone_number_id": PHONE_NUMBER_ID, "display_phone_number": "+1 555 0100",
               "waba_id": WABA_ID, "access_token": "demo-token", "team_id": support}),
    )
    .await?;
    let agents = format!("/api/v1/workspaces/{workspace}/agents");
    let people = [
        ("You", "you@demo.waos", "agent", 3, vec![&support, &billing]),
        (
            "Sam (supervisor)",
            "sam@demo.waos",
            "supervisor",
            3,
            vec![&support, &billing],
        ),
        ("Bea", "bea@demo.waos", "agent", 2, vec![&support]),
        ("Cal", "cal@demo.waos", "agent", 2, vec![&support, &billing]),
        ("Dee", "dee@demo.waos", "agent", 2, vec![&support]),
    ];
    for (name, email, role, capacity, teams) in people {
        post(
            agents.clone(),
            json!({"name": name, "email": email, "password": PASSWORD, "role": role,
                   "capacity": capacity, "team_ids": teams}),
        )
        .await?;
    }
    Ok(World {
        first_wait: Duration::from_secs(5),
    })
}

fn envelope(value: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]})
}

/// A customer writes every 3 to 8 s: a new question, or a follow-up.
async fn customers(
    http: reqwest::Client,
    webhook: String,
    secret: String,
    first_wait: Duration,
    pace: Pace,
) {
    tokio::time::sleep(first_wait).await;
    let mut sequence = 0u64;
    loop {
        sequence += 1;
        let (text, (name, phone)) = {
            let mut rng = rand::rng();
            let customer = *CUSTOMERS.choose(&mut rng).unwrap_or(&CUSTOMERS[0]);
            let text = if rng.random_bool(0.6) {
                OPENERS
                    .choose(&mut rng)
                    .unwrap_or(&OPENERS[0])
                    .replace("{n}", &rng.random_range(1000..9999).to_string())
            } else {
                (*FOLLOW_UPS.choose(&mut rng).unwrap_or(&FOLLOW_UPS[0])).to_owned()
            };
            (text, customer)
        };
        let body = envelope(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": name}, "wa_id": phone}],
            "messages": [{"from": phone, "id": format!("wamid.demo-in-{}-{sequence}", uuid::Uuid::now_v7().simple()),
                          "timestamp": chrono::Utc::now().timestamp().to_string(),
                          "type": "text", "text": {"body": text}}]
        }));
        post_signed(&http, &webhook, &secret, &body).await;
        tokio::time::sleep(pace.millis(3_000..8_000)).await;
    }
}

/// A simulated agent on a real websocket: accepts offers after a think time, answers, and
/// resolves a while later.
async fn simulated_agent(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    pace: Pace,
) -> anyhow::Result<()> {
    let session: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = session["token"].as_str().context("no token")?.to_owned();
    let mut request =
        format!("{}/ws/agent", base.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut queued) = tokio::sync::mpsc::unbounded_channel::<Value>();
    actix_web::rt::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let later = |outbox: &tokio::sync::mpsc::UnboundedSender<Value>,
                 millis: std::ops::Range<u64>,
                 frame: Value| {
        let outbox = outbox.clone();
        let wait = pace.millis(millis);
        actix_web::rt::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = outbox.send(frame);
        });
    };
    while let Some(message) = stream.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<BotFrame>(&text) else {
            continue;
        };
        match frame {
            BotFrame::Offer { conversation_id } => later(
                &outbox,
                2_000..7_000,
                json!({"type": "accept", "conversation_id": conversation_id}),
            ),
            BotFrame::Assigned { conversation_id } => {
                let conversation = conversation_id;
                let reply = BOT_REPLIES
                    .choose(&mut rand::rng())
                    .unwrap_or(&BOT_REPLIES[0]);
                later(
                    &outbox,
                    2_000..5_000,
                    json!({"type": "open", "conversation_id": conversation}),
                );
                later(
                    &outbox,
                    4_000..9_000,
                    json!({"type": "send", "conversation_id": conversation,
                                                   "client_id": uuid::Uuid::new_v4().to_string(), "text": reply}),
                );
                later(
                    &outbox,
                    25_000..60_000,
                    json!({"type": "resolve", "conversation_id": conversation}),
                );
            }
            BotFrame::Other => {}
        }
    }
    Ok(())
}

/// The frames a simulated agent acts on (the rest it only reads).
#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BotFrame {
    Offer {
        conversation_id: String,
    },
    Assigned {
        conversation_id: String,
    },
    #[serde(other)]
    Other,
}

/// The two approved templates the demo's fake Meta lists.
fn demo_templates() -> Vec<Value> {
    vec![
        json!({"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."}]}),
        json!({"name": "we_miss_you", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
               "components": [{"type": "BODY", "text": "Hi {{1}}! Reply to this message to pick up where we left off."}]}),
    ]
}
