//! Integration tokens: a workspace's bearer tokens for other systems, each with a role and an
//! optional expiry. Only the SHA-256 of a token is stored; a revoked token keeps its row (the
//! trail of who made it and when it ended) and stops working at once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("api_tokens")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(string("role"))
                    .col(string("token_hash"))
                    // The admin who made it; none for the installation's bootstrap token.
                    .col(string_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("expires_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_tokens_hash")
                    .table("api_tokens")
                    .col("token_hash")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_tokens_workspace")
                    .table("api_tokens")
                    .col("workspace_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("api_tokens").to_owned())
            .await
    }
}
