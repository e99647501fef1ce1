//! A websocket ticket remembers the session it was asked for, so that a socket opened with it
//! belongs to that session: changing one's password closes the sockets of the other sessions
//! and leaves this one's open.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("auth_tokens")
                    .add_column(string_null("session_hash"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("auth_tokens")
                    .drop_column("session_hash")
                    .to_owned(),
            )
            .await
    }
}
