//! Template sync: each WhatsApp Business Account's message templates, fetched from
//! `GET {graph_url}/{waba_id}/message_templates` page by page and stored whole, so that the
//! console can offer the approved ones and replies are checked before they are queued.

use std::time::Duration;

use anyhow::Context;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use waos_engine::crypto::Sealer;
use waos_engine::store::entity::channel;
use waos_engine::templates::{TemplateView, replace_synced};

/// Templates asked for per page.
const PAGE_SIZE: u32 = 100;
/// Pages followed for one account, so a misbehaving server cannot loop us forever.
const MAX_PAGES: usize = 50;

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    data: Vec<Value>,
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    cursors: Option<Cursors>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    after: Option<String>,
}

pub struct TemplateSync {
    db: DatabaseConnection,
    sealer: Sealer,
    http: reqwest::Client,
    graph_url: String,
    /// Between full syncs; zero syncs only on demand.
    interval: Duration,
}

impl TemplateSync {
    pub fn new(
        db: DatabaseConnection,
        sealer: Sealer,
        graph_url: String,
        interval: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            db,
            sealer,
            http: crate::http_client(Duration::from_secs(20))?,
            graph_url,
            interval,
        })
    }

    /// Fetches one channel's account's templates and replaces what was stored; answers how many.
    pub async fn sync_channel(&self, channel: &channel::Model) -> anyhow::Result<usize> {
        let waba_id = channel
            .waba_id
            .as_deref()
            .context("the channel has no waba_id: set it to sync templates")?;
        let token = self
            .sealer
            .open(&channel.access_token_sealed)
            .map_err(|_| anyhow::anyhow!("the channel's token cannot be opened"))?;
        let base = format!(
            "{}/{waba_id}/message_templates",
            self.graph_url.trim_end_matches('/')
        );
        let mut templates = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut request = self
                .http
                .get(&base)
                .bearer_auth(token.expose_secret())
                .query(&[
                    ("fields", "name,language,status,category,components"),
                    ("limit", &PAGE_SIZE.to_string()),
                ]);
            if let Some(cursor) = &after {
                request = request.query(&[("after", cursor)]);
            }
            let response = request.send().await.context("asking Meta for templates")?;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                anyhow::bail!(
                    "Meta refused the template list ({status}): {}",
                    body.pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                );
            }
            let page: ListPage =
                serde_json::from_value(body).context("reading Meta's template list")?;
            for item in page.data {
                // One template Meta describes oddly must not hide the others.
                match serde_json::from_value::<TemplateView>(item) {
                    Ok(template) => templates.push(template),
                    Err(error) => tracing::warn!(%error, waba_id, "template skipped"),
                }
            }
            let paging = page.paging;
            let has_next = paging.as_ref().is_some_and(|p| p.next.is_some());
            after = paging.and_then(|p| p.cursors).and_then(|c| c.after);
            if !has_next || after.is_none() {
                break;
            }
        }
        Ok(replace_synced(&self.db, waba_id, templates).await?)
    }

    /// Syncs every active channel's account once (each account once, whichever channel first).
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let channels = channel::Entity::find()
            .filter(channel::Column::WabaId.is_not_null())
            .filter(channel::Column::Active.eq(true))
            .filter(channel::Column::Paused.eq(false))
            .all(&self.db)
            .await?;
        let mut done: Vec<String> = Vec::new();
        let mut total = 0;
        for channel in channels {
            let Some(waba_id) = channel.waba_id.clone() else {
                continue;
            };
            if done.contains(&waba_id) {
                continue;
            }
            match self.sync_channel(&channel).await {
                Ok(count) => {
                    total += count;
                    done.push(waba_id);
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), channel_id = %channel.id, "templates not synced");
                }
            }
        }
        Ok(total)
    }

    /// Syncs every `interval` until `shutdown` turns true (never, when the interval is zero).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            if let Err(error) = self.run_once().await {
                tracing::warn!(error = %format!("{error:#}"), "template sync failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
