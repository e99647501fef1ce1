//! Full-text search over message texts: on Postgres a GIN index on the 'simple' `tsvector` of
//! each text (no stemming: it suits mixed Arabic and English); on SQLite an FTS5 table kept in
//! step with `messages` by triggers (an erasure's update and a retention delete included),
//! filled from the messages already stored. The FTS row of a message has the message row's
//! `rowid`, so a trigger finds it by key, not by a scan.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE_UP: &[&str] = &[
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text)",
    "INSERT INTO messages_fts (rowid, text) SELECT rowid, text FROM messages WHERE text IS NOT NULL",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.text IS NOT NULL BEGIN
        INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
     END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
        DELETE FROM messages_fts WHERE rowid = old.rowid;
        INSERT INTO messages_fts (rowid, text) SELECT new.rowid, new.text WHERE new.text IS NOT NULL;
     END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        DELETE FROM messages_fts WHERE rowid = old.rowid;
     END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
];

const POSTGRES_UP: &[&str] = &[
    "CREATE INDEX messages_text_search ON messages USING GIN (to_tsvector('simple', coalesce(text, '')))",
];

const POSTGRES_DOWN: &[&str] = &["DROP INDEX messages_text_search"];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => run(manager, SQLITE_UP).await,
            _ => run(manager, POSTGRES_UP).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => run(manager, SQLITE_DOWN).await,
            _ => run(manager, POSTGRES_DOWN).await,
        }
    }
}
