//! The outbound sender: claims due outbox rows (so two senders never send the same row), posts
//! each to `{graph_url}/{phone_number_id}/messages` with the channel's token, stores Meta's wamid,
//! and decides by Meta's error code what a failure means: retry later, give up, or pause the
//! channel (token rejected) until an operator resumes it.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use chrono::Utc;
use rand::Rng;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

use waos_engine::crypto::Sealer;
use waos_engine::ids::ChannelId;
use waos_engine::ingest::{InboundHandoff, StatusEvent};
use waos_engine::store::entity::message::DeliveryStatus;
use waos_engine::store::entity::outbox::{OutboxKind, OutboxStatus};
use waos_engine::store::entity::{channel, message, outbox};

use crate::pacing::{Budget, Pacer};

/// Meta error codes worth retrying, and codes that pause the whole channel.
const RETRY_CODES: &[i64] = &[130429, 131056, 131000, 131016, 131057, 4, 80007, 2];
const TOKEN_REJECTED: i64 = 190;

#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// Base of the Graph API including its version, e.g. `https://graph.facebook.com/v25.0`.
    pub graph_url: String,
    /// Rows claimed at once.
    pub batch: u64,
    /// How long a claim lasts: a sender that dies mid-batch frees its rows after this.
    pub claim_for: Duration,
    /// Sleep when nothing is due.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Attempts before a retryable failure becomes a dead letter.
    pub max_attempts: i32,
    /// Customers served at once (each customer's rows still go one after another).
    pub concurrency: usize,
    /// Each number's budget at Meta, and each customer's.
    pub number_budget: Budget,
    pub customer_budget: Budget,
}

pub struct Sender {
    db: DatabaseConnection,
    sealer: Sealer,
    http: reqwest::Client,
    settings: SenderSettings,
    /// This sender's name on its claims.
    id: String,
    /// Told of each reply's outcome after it is stored (accepted, or failed with Meta's
    /// reason), so that the agent sees it at once; `None` when the sender runs alone.
    outcomes: Option<Arc<dyn InboundHandoff>>,
    pacer: Pacer,
}

/// What a step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Idle,
    Worked(usize),
}

/// What Meta's answer means for a row.
#[derive(Debug, PartialEq)]
enum Verdict {
    Sent(String),
    /// A read receipt was taken (`{"success": true}`).
    Acknowledged,
    Retry(Value),
    Dead(Value),
    PauseChannel(Value),
}

fn classify(status: reqwest::StatusCode, body: &Value) -> Verdict {
    if status.is_success()
        && let Some(wamid) = body.pointer("/messages/0/id").and_then(Value::as_str)
    {
        return Verdict::Sent(wamid.to_owned());
    }
    if status.is_success() && body.get("success") == Some(&Value::Bool(true)) {
        return Verdict::Acknowledged;
    }
    let error = body
        .get("error")
        .cloned()
        .unwrap_or_else(|| json!({"http_status": status.as_u16()}));
    match error.get("code").and_then(Value::as_i64) {
        Some(TOKEN_REJECTED) => Verdict::PauseChannel(error),
        Some(code) if RETRY_CODES.contains(&code) => Verdict::Retry(error),
        Some(_) => Verdict::Dead(error),
        // No Meta error body: a proxy or an outage; try again.
        None if status.is_server_error() || status.as_u16() == 429 => Verdict::Retry(error),
        None => Verdict::Dead(error),
    }
}

impl Sender {
    pub fn new(
        db: DatabaseConnection,
        sealer: Sealer,
        settings: SenderSettings,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            db,
            sealer,
            http: crate::http_client(Duration::from_secs(20))?,
            pacer: Pacer::new(settings.number_budget, settings.customer_budget),
            settings,
            id: uuid::Uuid::now_v7().to_string(),
            outcomes: None,
        })
    }

    /// Shares each number's budget with every sender on this Redis (and key prefix).
    pub fn with_redis(mut self, connection: redis::aio::ConnectionManager, prefix: &str) -> Self {
        self.pacer = self.pacer.with_redis(connection, prefix);
        self
    }

    /// Reports each reply's outcome to `outcomes` (the routing engine, in `waos serve`).
    pub fn with_outcomes(mut self, outcomes: Arc<dyn InboundHandoff>) -> Self {
        self.outcomes = Some(outcomes);
        self
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let pause = match self.run_once().await {
                Ok(Outcome::Worked(_)) => Duration::ZERO,
                Ok(Outcome::Idle) => self.settings.poll_interval,
                Err(error) => {
                    tracing::warn!(%error, "sender step failed");
                    self.settings.poll_interval
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Claims what is due and sends it.
    pub async fn run_once(&self) -> Result<Outcome, DbErr> {
        let rows = self.claim().await?;
        if rows.is_empty() {
            return Ok(Outcome::Idle);
        }
        let count = rows.len();
        // One group per customer (read receipts each alone), in claim order; groups run
        // concurrently, each one's rows one after another so a customer reads them in order.
        let mut groups: Vec<Vec<outbox::Model>> = Vec::new();
        let mut group_of: HashMap<(ChannelId, String), usize> = HashMap::new();
        for row in rows {
            let key = (
                row.channel_id,
                row.recipient.clone().unwrap_or_else(|| row.id.clone()),
            );
            let index = *group_of.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[index].push(row);
        }
        let results: Vec<Result<(), DbErr>> = futures_util::stream::iter(groups)
            .map(|group| self.deliver_group(group))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<(), DbErr>>()?;
        Ok(Outcome::Worked(count))
    }

    async fn deliver_group(&self, group: Vec<outbox::Model>) -> Result<(), DbErr> {
        let mut rows = group.into_iter();
        while let Some(row) = rows.next() {
            if let Some(until) = self.deliver(row).await? {
                // The rest waits too, so that nothing overtakes the deferred row.
                for rest in rows.by_ref() {
                    self.defer(rest, until).await?;
                }
            }
        }
        Ok(())
    }

    /// Puts a row back, due at `until`, without counting an attempt.
    async fn defer(&self, row: outbox::Model, until: chrono::DateTime<Utc>) -> Result<(), DbErr> {
        let mut later = row.into_active_model();
        later.claimed_until = Set(None);
        later.next_attempt_at = Set(until);
        later.update(&self.db).await?;
        Ok(())
    }

    /// Does an earlier row to the same customer still wait (on another sender, or a retry)?
    async fn waits_behind_earlier(&self, row: &outbox::Model) -> Result<bool, DbErr> {
        let Some(recipient) = &row.recipient else {
            return Ok(false);
        };
        Ok(outbox::Entity::find()
            .filter(outbox::Column::ChannelId.eq(row.channel_id))
            .filter(outbox::Column::Recipient.eq(recipient.clone()))
            .filter(outbox::Column::Status.eq(OutboxStatus::Pending))
            .filter(outbox::Column::Id.lt(row.id.clone()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Waits for the number's (and customer's) slot; a wait longer than a fraction of the
    /// claim answers when to come back instead.
    async fn wait_for_slot(
        &self,
        number: &str,
        customer: Option<&str>,
    ) -> Option<chrono::DateTime<Utc>> {
        let longest_inline = (self.settings.claim_for / 4).min(Duration::from_secs(2));
        loop {
            let wait = self.pacer.acquire(number, customer).await;
            if wait.is_zero() {
                return None;
            }
            if wait > longest_inline {
                return Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn due() -> Condition {
        let now = Utc::now();
        Condition::all()
            .add(outbox::Column::Status.eq(OutboxStatus::Pending))
            .add(outbox::Column::NextAttemptAt.lte(now))
            .add(
                Condition::any()
                    .add(outbox::Column::ClaimedUntil.is_null())
                    .add(outbox::Column::ClaimedUntil.lt(now)),
            )
    }

    async fn claim(&self) -> Result<Vec<outbox::Model>, DbErr> {
        let until =
            Utc::now() + chrono::Duration::from_std(self.settings.claim_for).unwrap_or_default();
        let mut due = Query::select();
        due.column(outbox::Column::Id)
            .from(outbox::Entity)
            .cond_where(Self::due())
            .order_by(outbox::Column::Id, sea_orm::Order::Asc)
            .limit(self.settings.batch);
        // The outer condition is checked again on each row it locks, so a row another sender
        // claimed meanwhile is skipped.
        outbox::Entity::update_many()
            .col_expr(outbox::Column::ClaimedBy, Expr::value(self.id.clone()))
            .col_expr(outbox::Column::ClaimedUntil, Expr::value(until))
            .filter(outbox::Column::Id.in_subquery(due))
            .filter(Self::due())
            .exec(&self.db)
            .await?;
        outbox::Entity::find()
            .filter(outbox::Column::ClaimedBy.eq(self.id.clone()))
            .filter(outbox::Column::Status.eq(OutboxStatus::Pending))
            .filter(outbox::Column::ClaimedUntil.eq(until))
            .order_by_asc(outbox::Column::Id)
            .limit(self.settings.batch)
            .all(&self.db)
            .await
    }

    /// Sends one row; answers when to come back if it had to wait (the caller defers the
    /// customer's later rows with it).
    async fn deliver(&self, row: outbox::Model) -> Result<Option<chrono::DateTime<Utc>>, DbErr> {
        let Some(channel) = channel::Entity::find_by_id(row.channel_id)
            .one(&self.db)
            .await?
        else {
            self.finish(
                row,
                Verdict::Dead(json!({"message": "the channel no longer exists"})),
            )
            .await?;
            return Ok(None);
        };
        let soon = Utc::now()
            + chrono::Duration::from_std(self.settings.poll_interval).unwrap_or_default();
        if channel.paused || !channel.active {
            // Kept for when the channel resumes.
            self.defer(row, soon).await?;
            return Ok(Some(soon));
        }
        if self.waits_behind_earlier(&row).await? {
            self.defer(row, soon).await?;
            return Ok(Some(soon));
        }
        let customer = (row.kind == OutboxKind::Reply)
            .then_some(row.recipient.as_deref())
            .flatten();
        if let Some(until) = self.wait_for_slot(&channel.phone_number_id, customer).await {
            self.defer(row, until).await?;
            return Ok(Some(until));
        }
        let token = match self.sealer.open(&channel.access_token_sealed) {
            Ok(token) => token,
            Err(_) => {
                self.pause(&channel, row, json!({"message": "the channel's token cannot be opened with this installation's key"}))
                    .await?;
                return Ok(None);
            }
        };
        let url = format!(
            "{}/{}/messages",
            self.settings.graph_url.trim_end_matches('/'),
            channel.phone_number_id
        );
        let answer = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(&row.body)
            .send()
            .await;
        let verdict = match answer {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                classify(status, &body)
            }
            Err(error) => {
                Verdict::Retry(json!({"message": format!("no answer from the Graph API: {error}")}))
            }
        };
        match verdict {
            Verdict::PauseChannel(error) => self.pause(&channel, row, error).await?,
            verdict => self.finish(row, verdict).await?,
        }
        Ok(None)
    }

    async fn pause(
        &self,
        channel: &channel::Model,
        row: outbox::Model,
        error: Value,
    ) -> Result<(), DbErr> {
        tracing::error!(channel_id = %channel.id, "Meta rejected the channel's token: channel paused until an operator resumes it");
        let mut paused = channel.clone().into_active_model();
        paused.paused = Set(true);
        paused.pause_reason = Set(Some(
            "Meta rejected the access token (190): rotate it, then resume".into(),
        ));
        paused.update(&self.db).await?;
        let mut kept = row.into_active_model();
        kept.claimed_until = Set(None);
        kept.last_error = Set(Some(error));
        kept.update(&self.db).await?;
        Ok(())
    }

    async fn finish(&self, row: outbox::Model, verdict: Verdict) -> Result<(), DbErr> {
        let now = Utc::now();
        let message_id = row.message_id;
        let row_kind = row.kind;
        let attempts = row.attempts + 1;
        let txn = waos_engine::store::begin_write(&self.db).await?;
        let mut next = row.into_active_model();
        next.attempts = Set(attempts);
        next.updated_at = Set(now);
        next.claimed_until = Set(None);
        // A read receipt's row points at the customer's message, whose status is not the
        // receipt's to change.
        let stored = match row_kind {
            OutboxKind::Reply => {
                message::Entity::find()
                    .filter(message::Column::Id.eq(message_id))
                    .one(&txn)
                    .await?
            }
            OutboxKind::Read => None,
        };
        let mut outcome = None;
        match verdict {
            Verdict::Acknowledged => {
                next.status = Set(OutboxStatus::Sent);
            }
            Verdict::Sent(wamid) => {
                next.status = Set(OutboxStatus::Sent);
                if let Some(stored) = stored {
                    let mut accepted = stored.into_active_model();
                    accepted.wamid = Set(Some(wamid));
                    accepted.status = Set(DeliveryStatus::Accepted);
                    accepted.updated_at = Set(now);
                    let accepted = accepted.update(&txn).await?;
                    outcome = Some(status_event(&accepted));
                    // Statuses that raced ahead of this answer apply now.
                    waos_engine::ingest::reconcile_pending_statuses(&txn, accepted).await?;
                }
            }
            Verdict::Retry(error) if attempts < self.settings.max_attempts => {
                next.next_attempt_at =
                    Set(now
                        + chrono::Duration::from_std(self.backoff(attempts)).unwrap_or_default());
                next.last_error = Set(Some(error));
            }
            Verdict::Retry(error) | Verdict::Dead(error) | Verdict::PauseChannel(error) => {
                next.status = Set(OutboxStatus::Failed);
                next.last_error = Set(Some(error.clone()));
                if let Some(stored) = stored {
                    let mut failed = stored.into_active_model();
                    failed.status = Set(DeliveryStatus::Failed);
                    failed.error = Set(Some(error));
                    failed.updated_at = Set(now);
                    outcome = Some(status_event(&failed.update(&txn).await?));
                }
            }
        }
        next.update(&txn).await?;
        txn.commit().await?;
        if let (Some(outcomes), Some(event)) = (&self.outcomes, outcome) {
            outcomes.status(event);
        }
        Ok(())
    }

    /// Exponential with full jitter: a burst of 130429s does not retry in lockstep.
    fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
        let ceiling = self
            .settings
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.settings.backoff_max);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

fn status_event(row: &message::Model) -> StatusEvent {
    StatusEvent {
        workspace_id: row.workspace_id,
        conversation_id: row.conversation_id,
        message_id: row.id,
        wamid: row.wamid.clone().unwrap_or_default(),
        status: row.status,
        error: row.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn error(code: i64) -> Value {
        json!({"error": {"message": format!("(#{code}) x"), "type": "OAuthException", "code": code}})
    }

    #[test]
    fn meta_codes_decide_retry_give_up_or_pause() {
        let ok = json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]});
        assert_eq!(
            classify(StatusCode::OK, &ok),
            Verdict::Sent("wamid.X".into())
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &error(130429)),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &error(131056)),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &error(131047)),
            Verdict::Dead(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &error(131026)),
            Verdict::Dead(_)
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &error(190)),
            Verdict::PauseChannel(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &Value::Null),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(StatusCode::OK, &json!({})),
            Verdict::Dead(_)
        ));
    }
}
