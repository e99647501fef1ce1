//! A sign-in flood beside a measured run: wrong passwords for one account at a fixed rate,
//! as a password-guessing attack would send them, for as long as the run lasts.

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
}

impl Flood {
    pub fn start(client: reqwest::Client, url: &str, email: String, rate: u64) -> Flood {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let answers: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let login = format!("{url}/api/v1/auth/login");
        let tally = answers.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (client, login, email, tally) =
                    (client.clone(), login.clone(), email.clone(), tally.clone());
                tokio::spawn(async move {
                    let answer = client
                        .post(&login)
                        .json(&json!({"email": email, "password": "a wrong guess"}))
                        .send()
                        .await;
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
        json!({"rate": self.rate, "answers": answers})
    }
}
