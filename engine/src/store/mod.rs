//! Durable state through SeaORM, the same code on SQLite (embedded default) and Postgres.

pub mod entity;

use std::path::Path;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use waos_migrations::Migrator;

/// Opens the database at `url`, creating a SQLite file (and its folder) when needed.
///
/// A pooled connection is pinged before use only when it has been idle for `ping_idle_after`:
/// sqlx already pings every connection as it goes back to the pool, so a ping on every acquire
/// as well made each lone query cost three round trips instead of two (seen in the profile).
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    ping_idle_after: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let url = sqlite_url_with_create(url)?;
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_timeout(acquire_timeout)
        .test_before_acquire_if_idle_for(ping_idle_after)
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
    if let Some(parent) = Path::new(file)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| DbErr::Custom(format!("creating {}: {error}", parent.display())))?;
    }
    Ok(if path.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Begins a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes fails at once
/// with SQLITE_BUSY when another writer got there in between, instead of waiting its turn.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
    } else {
        db.begin().await
    }
}
