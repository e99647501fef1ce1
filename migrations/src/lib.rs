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
mod m20261202_000008_create_automation;
mod m20261202_000009_create_search;
mod m20261202_000010_ticket_sessions;
mod m20261203_000011_create_reports;
mod m20261203_000012_rollup_months;
mod m20261204_000013_owner_epoch;
mod m20261208_000014_workspace_epoch;

/// SQLite alters one column per statement.
pub(crate) async fn add_columns(
    manager: &SchemaManager<'_>,
    table: &'static str,
    columns: Vec<ColumnDef>,
) -> Result<(), DbErr> {
    for column in columns {
        manager
            .alter_table(Table::alter().table(table).add_column(column).to_owned())
            .await?;
    }
    Ok(())
}

pub(crate) async fn drop_columns(
    manager: &SchemaManager<'_>,
    table: &'static str,
    columns: &[&'static str],
) -> Result<(), DbErr> {
    for column in columns {
        manager
            .alter_table(Table::alter().table(table).drop_column(*column).to_owned())
            .await?;
    }
    Ok(())
}

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
            Box::new(m20261202_000008_create_automation::Migration),
            Box::new(m20261202_000009_create_search::Migration),
            Box::new(m20261202_000010_ticket_sessions::Migration),
            Box::new(m20261203_000011_create_reports::Migration),
            Box::new(m20261203_000012_rollup_months::Migration),
            Box::new(m20261204_000013_owner_epoch::Migration),
            Box::new(m20261208_000014_workspace_epoch::Migration),
        ]
    }
}
