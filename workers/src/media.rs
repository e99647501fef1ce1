//! Inbound media: Meta keeps a customer's image, audio, video or document for 7 days behind a
//! media id. This worker resolves each id to its URL (`GET {graph_url}/{media_id}`), fetches
//! the bytes with the channel's token, checks their SHA-256 against Meta's, and stores them
//! under the media folder, one row per message in `media_files`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use waos_engine::crypto::Sealer;
use waos_engine::store::entity::{channel, media_file, message};

#[derive(Clone, Debug)]
pub struct MediaSettings {
    pub graph_url: String,
    /// Where files go: `{dir}/{workspace_id}/{message_id}`.
    pub dir: PathBuf,
    pub poll_interval: Duration,
    pub max_bytes: u64,
    pub max_attempts: i32,
    pub backoff_base: Duration,
}

/// Rows handled per step.
const BATCH: u64 = 20;
/// How long a claimed download is this worker's.
const LEASE: Duration = Duration::from_secs(120);

pub struct MediaDownloader {
    db: DatabaseConnection,
    sealer: Sealer,
    http: reqwest::Client,
    settings: MediaSettings,
}

/// Why a download did not finish: try again later, or never.
enum Failure {
    Retry(Value),
    GiveUp(Value),
}

impl MediaDownloader {
    pub fn new(
        db: DatabaseConnection,
        sealer: Sealer,
        settings: MediaSettings,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            db,
            sealer,
            http: crate::http_client(Duration::from_secs(120))?,
            settings,
        })
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let pause = match self.run_once().await {
                Ok(0) => self.settings.poll_interval,
                Ok(_) => Duration::ZERO,
                Err(error) => {
                    tracing::warn!(%error, "media step failed");
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

    /// Finds new media messages, then downloads what is due; answers how many it tried.
    pub async fn run_once(&self) -> Result<usize, DbErr> {
        self.discover().await?;
        let mut tried = 0;
        for row in self.claim().await? {
            tried += 1;
            let outcome = self.download(&row).await;
            self.finish(row, outcome).await?;
        }
        Ok(tried)
    }

    /// A `pending` row for every inbound media message that has none yet.
    async fn discover(&self) -> Result<(), DbErr> {
        let mut known = Query::select();
        known
            .column(media_file::Column::MessageId)
            .from(media_file::Entity);
        let fresh = message::Entity::find()
            .filter(
                message::Column::Direction
                    .eq(waos_engine::store::entity::message::MessageDirection::In),
            )
            .filter(message::Column::MediaId.is_not_null())
            .filter(message::Column::Id.not_in_subquery(known))
            .order_by_asc(message::Column::Id)
            .limit(BATCH * 5)
            .all(&self.db)
            .await?;
        if fresh.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let rows = fresh.into_iter().filter_map(|m| {
            Some(media_file::ActiveModel {
                message_id: Set(m.id),
                workspace_id: Set(m.workspace_id),
                conversation_id: Set(m.conversation_id),
                media_id: Set(m.media_id?),
                status: Set("pending".into()),
                attempts: Set(0),
                next_attempt_at: Set(now),
                mime_type: Set(None),
                size: Set(None),
                sha256: Set(None),
                path: Set(None),
                error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
        });
        // Another worker may have found the same messages: theirs stands.
        media_file::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(media_file::Column::MessageId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Due rows this worker won: each is taken by moving its due time ahead, conditionally.
    async fn claim(&self) -> Result<Vec<media_file::Model>, DbErr> {
        let now = Utc::now();
        let due = media_file::Entity::find()
            .filter(media_file::Column::Status.eq("pending"))
            .filter(media_file::Column::NextAttemptAt.lte(now))
            .order_by_asc(media_file::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let lease = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let mut mine = Vec::new();
        for row in due {
            let taken = media_file::Entity::update_many()
                .col_expr(media_file::Column::NextAttemptAt, Expr::value(lease))
                .filter(media_file::Column::MessageId.eq(row.message_id))
                .filter(media_file::Column::Status.eq("pending"))
                .filter(media_file::Column::NextAttemptAt.eq(row.next_attempt_at))
                .exec(&self.db)
                .await?;
            if taken.rows_affected == 1 {
                mine.push(row);
            }
        }
        Ok(mine)
    }

    async fn download(
        &self,
        row: &media_file::Model,
    ) -> Result<(String, u64, String, String), Failure> {
        let retry = |what: &str, error: &dyn std::fmt::Display| {
            Failure::Retry(json!({"message": format!("{what}: {error}")}))
        };
        let message = message::Entity::find_by_id(row.message_id)
            .one(&self.db)
            .await
            .map_err(|e| retry("reading the message", &e))?
            .ok_or_else(|| Failure::GiveUp(json!({"message": "the message is gone"})))?;
        let channel = channel::Entity::find_by_id(message.channel_id)
            .one(&self.db)
            .await
            .map_err(|e| retry("reading the channel", &e))?
            .ok_or_else(|| Failure::GiveUp(json!({"message": "the channel is gone"})))?;
        let token = self
            .sealer
            .open(&channel.access_token_sealed)
            .map_err(|_| {
                Failure::GiveUp(json!({"message": "the channel's token cannot be opened"}))
            })?;

        let lookup = self
            .http
            .get(format!(
                "{}/{}",
                self.settings.graph_url.trim_end_matches('/'),
                row.media_id
            ))
            .query(&[("phone_number_id", channel.phone_number_id.as_str())])
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| retry("asking Meta for the media URL", &e))?;
        let status = lookup.status();
        let meta: Value = lookup.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = meta
                .get("error")
                .cloned()
                .unwrap_or_else(|| json!({"http_status": status.as_u16()}));
            // Expired or unknown ids never come back; throttling and outages do.
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Failure::Retry(error)
            } else {
                Failure::GiveUp(error)
            });
        }
        let url = meta
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::GiveUp(json!({"message": "Meta gave no media URL"})))?;
        let announced = meta.get("file_size").and_then(|s| {
            s.as_u64()
                .or_else(|| s.as_str().and_then(|s| s.parse().ok()))
        });
        if announced.is_some_and(|size| size > self.settings.max_bytes) {
            return Err(Failure::GiveUp(
                json!({"message": format!("larger than media.max_bytes ({} bytes)", self.settings.max_bytes)}),
            ));
        }
        let mime = meta
            .get("mime_type")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_owned();
        let file = self
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| retry("downloading the media", &e))?;
        if !file.status().is_success() {
            return Err(retry("downloading the media", &file.status()));
        }
        if file
            .content_length()
            .is_some_and(|size| size > self.settings.max_bytes)
        {
            return Err(Failure::GiveUp(
                json!({"message": "larger than media.max_bytes"}),
            ));
        }
        let bytes = file
            .bytes()
            .await
            .map_err(|e| retry("downloading the media", &e))?;
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > self.settings.max_bytes {
            return Err(Failure::GiveUp(
                json!({"message": "larger than media.max_bytes"}),
            ));
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = meta.get("sha256").and_then(Value::as_str)
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(retry(
                "checking the download",
                &"its SHA-256 differs from Meta's",
            ));
        }
        // The file's name is ours (ids only), never the customer's.
        let relative = format!("{}/{}", row.workspace_id, row.message_id);
        let path = self.settings.dir.join(&relative);
        let write = async {
            if let Some(folder) = path.parent() {
                tokio::fs::create_dir_all(folder).await?;
            }
            let partial = path.with_extension("partial");
            tokio::fs::write(&partial, &bytes).await?;
            tokio::fs::rename(&partial, &path).await
        };
        write
            .await
            .map_err(|e| retry("writing the media file", &e))?;
        Ok((mime, size, digest, relative))
    }

    async fn finish(
        &self,
        row: media_file::Model,
        outcome: Result<(String, u64, String, String), Failure>,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let attempts = row.attempts + 1;
        let mut update = media_file::Entity::update_many()
            .col_expr(media_file::Column::Attempts, Expr::value(attempts))
            .col_expr(media_file::Column::UpdatedAt, Expr::value(now));
        update = match outcome {
            Ok((mime, size, digest, path)) => update
                .col_expr(media_file::Column::Status, Expr::value("stored"))
                .col_expr(media_file::Column::MimeType, Expr::value(mime))
                .col_expr(
                    media_file::Column::Size,
                    Expr::value(i64::try_from(size).unwrap_or(i64::MAX)),
                )
                .col_expr(media_file::Column::Sha256, Expr::value(digest))
                .col_expr(media_file::Column::Path, Expr::value(path))
                .col_expr(
                    media_file::Column::Error,
                    Expr::value(Option::<Value>::None),
                ),
            Err(Failure::Retry(error)) if attempts < self.settings.max_attempts => {
                let ceiling = self
                    .settings
                    .backoff_base
                    .saturating_mul(2u32.saturating_pow(u32::try_from(attempts - 1).unwrap_or(0)));
                let millis = u64::try_from(ceiling.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let wait = Duration::from_millis(rand::rng().random_range(millis / 2..=millis));
                update
                    .col_expr(
                        media_file::Column::NextAttemptAt,
                        Expr::value(now + chrono::Duration::from_std(wait).unwrap_or_default()),
                    )
                    .col_expr(media_file::Column::Error, Expr::value(Some(error)))
            }
            Err(Failure::Retry(error) | Failure::GiveUp(error)) => {
                tracing::warn!(message_id = %row.message_id, "media not downloaded; given up");
                update
                    .col_expr(media_file::Column::Status, Expr::value("failed"))
                    .col_expr(media_file::Column::Error, Expr::value(Some(error)))
            }
        };
        update
            .filter(media_file::Column::MessageId.eq(row.message_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Uploads an agent's file to Meta (`POST {graph_url}/{phone_number_id}/media`) and answers
/// Meta's media id, to send with `{kind: {id}}`. The error is Meta's reason, for the agent.
pub async fn upload(
    http: &reqwest::Client,
    graph_url: &str,
    phone_number_id: &str,
    token: &str,
    mime: &str,
    filename: &str,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(filename.to_owned())
        .mime_str(mime)
        .map_err(|_| format!("`{mime}` is not a content type"))?;
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", mime.to_owned())
        .part("file", part);
    let response = http
        .post(format!(
            "{}/{phone_number_id}/media",
            graph_url.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .map_err(|error| format!("no answer from the Graph API: {error}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body.get("id").and_then(Value::as_str) {
        Some(id) if status.is_success() => Ok(id.to_owned()),
        _ => Err(body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("Meta refused the upload ({status})"),
                str::to_owned,
            )),
    }
}
