//! Durable state through SeaORM, the same code on SQLite (embedded default) and Postgres.

pub mod entity;

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;
use waos_migrations::Migrator;

/// How long a request may wait for a pooled connection before it reports the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the database at `url`, creating a SQLite file (and its folder) when needed.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let url = sqlite_url_with_create(url)?;
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL lets readers proceed while the ingest writer commits.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

fn sqlite_url_with_create(url: &str) -> Result<String, DbErr> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(url.to_owned());
    };
    let file = path.split('?').next().unwrap_or(path);
    if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|error| DbErr::Custom(format!("creating {}: {error}", parent.display())))?;
    }
    Ok(if path.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    })
}
