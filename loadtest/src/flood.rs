//! A sign-in flood beside a measured run: wrong passwords at a fixed rate for as long as the
//! run lasts, either for one account (a password-guessing attack: the throttle soon answers
//! 429 without hashing), or spread over a new unknown account and a new forwarded address
//! each time (a distributed attack no throttle can tell apart: every attempt is hashed, and the
//! server must list 127.0.0.1 in `server.trusted_proxies` for the addresses to count).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// The account the flood guesses at; made in the run's workspace.
pub async fn make_account(
    client: &reqwest::Client,
    url: &str,
    admin_token: &str,
    workspace: &str,
    run: &str,
) -> anyhow::Result<String> {
    let email = format!("flood-{run}@loadtest.example");
    client
        .post(format!("{url}/api/v1/workspaces/{workspace}/agents"))
        .bearer_auth(admin_token)
        .json(
            &json!({"name": "Flooded", "email": email, "password": "the right password 1",
                      "role": "agent"}),
        )
        .send()
        .await?
        .error_for_status()
        .context("creating the flood's account")?;
    Ok(email)
}

/// A running flood; [`Flood::stop`] ends it and counts the answers by status.
pub struct Flood {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    answers: Arc<Mutex<BTreeMap<String, u64>>>,
    rate: u64,
    spread: bool,
}

impl Flood {
    pub fn start(
        client: reqwest::Client,
        url: &str,
        email: String,
        rate: u64,
        spread: bool,
    ) -> Flood {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let answers: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let login = format!("{url}/api/v1/auth/login");
        let tally = answers.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent: u32 = 0;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                sent = sent.wrapping_add(1);
                let (client, login, tally) = (client.clone(), login.clone(), tally.clone());
                let (email, forwarded) = if spread {
                    let [_, a, b, c] = sent.to_be_bytes();
                    (
                        format!("nobody-{sent}.{email}"),
                        Some(format!("10.{a}.{b}.{c}")),
                    )
                } else {
                    (email.clone(), None)
                };
                tokio::spawn(async move {
                    let mut request = client
                        .post(&login)
                        .json(&json!({"email": email, "password": "a wrong guess"}));
                    if let Some(address) = forwarded {
                        request = request.header("x-forwarded-for", address);
                    }
                    let answer = request.send().await;
                    let key = match answer {
                        Ok(response) => response.status().as_u16().to_string(),
                        Err(_) => "error".to_owned(),
                    };
                    *tally
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(key)
                        .or_default() += 1;
                });
            }
        });
        Flood {
            task,
            stop,
            answers,
            rate,
            spread,
        }
    }

    /// Stops sending; answers `{rate, answers: {status: count}}`.
    pub async fn stop(self) -> Value {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // Let the last requests answer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answers = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        json!({"rate": self.rate, "spread": self.spread, "answers": answers})
    }
}
