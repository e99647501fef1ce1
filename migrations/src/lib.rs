//! WaOS schema migrations, one file per migration, applied in order by [`Migrator`].
//!
//! The same statements run on SQLite (the embedded default) and Postgres. Ids are UUID text,
//! times are `timestamp with time zone`, JSON is `jsonb` on Postgres and text on SQLite.
//! `waos serve` applies pending migrations on start; `waos migrate` applies them alone.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_core;
mod m20261122_000002_create_outbox;
mod m20261122_000003_create_console;
mod m20261122_000004_create_privacy;
mod m20261201_000005_flag_erased_channels;
mod m20261201_000006_create_api_tokens;
mod m20261201_000007_create_time;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_core::Migration),
            Box::new(m20261122_000002_create_outbox::Migration),
            Box::new(m20261122_000003_create_console::Migration),
            Box::new(m20261122_000004_create_privacy::Migration),
            Box::new(m20261201_000005_flag_erased_channels::Migration),
            Box::new(m20261201_000006_create_api_tokens::Migration),
            Box::new(m20261201_000007_create_time::Migration),
        ]
    }
}
