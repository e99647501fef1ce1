//! Report rollups: every interval, the facts recorded since the last pass are counted into the
//! daily rollups (`waos_engine::reports::rollup`), so the reports answer from a few rows.

use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;
use waos_engine::reports::rollup;

pub struct Rollups {
    db: DatabaseConnection,
    /// Between passes; zero turns the rollups off (`waos reports rebuild` still counts).
    interval: Duration,
}

impl Rollups {
    pub fn new(db: DatabaseConnection, interval: Duration) -> Self {
        Self { db, interval }
    }

    /// One pass: every fact not counted yet; how many.
    pub async fn run_once(&self) -> Result<usize, DbErr> {
        rollup::roll_all(&self.db).await
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            match self.run_once().await {
                Ok(0) => {}
                Ok(counted) => tracing::debug!(counted, "report facts rolled up"),
                Err(error) => {
                    tracing::warn!(%error, "report rollup failed; trying again at the next pass")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
