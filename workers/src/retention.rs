//! Retention: every interval, each workspace's messages, media and audit events older than its
//! retention are removed (`PATCH /api/v1/workspaces/{id}` `{retention}`), files included.

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use waos_engine::privacy::{RetentionReport, apply_retention};

pub struct Retention {
    db: DatabaseConnection,
    media_dir: PathBuf,
    /// Between passes; zero turns retention off.
    interval: Duration,
}

impl Retention {
    pub fn new(db: DatabaseConnection, media_dir: PathBuf, interval: Duration) -> Self {
        Self {
            db,
            media_dir,
            interval,
        }
    }

    /// One pass: rows first, then their files.
    pub async fn run_once(&self) -> anyhow::Result<RetentionReport> {
        let report = apply_retention(&self.db, chrono::Utc::now()).await?;
        for relative in &report.media_to_delete {
            let path = self.media_dir.join(relative);
            if let Err(error) = tokio::fs::remove_file(&path).await
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, path = %path.display(), "expired media file not deleted");
            }
        }
        if report.messages + report.audit_events > 0 || !report.media_to_delete.is_empty() {
            tracing::info!(
                messages = report.messages,
                audit_events = report.audit_events,
                media = report.media_to_delete.len(),
                "retention applied"
            );
        }
        Ok(report)
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            if let Err(error) = self.run_once().await {
                tracing::warn!(error = %format!("{error:#}"), "retention pass failed");
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
