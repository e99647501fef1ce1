//! Channels whose messages include erased ones: only their wamids need looking up by erasure
//! tag too, so every other channel's ingest look-ups stay as small as before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("channels")
                    .add_column(boolean("has_erased_messages").default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("channels")
                    .drop_column("has_erased_messages")
                    .to_owned(),
            )
            .await
    }
}
