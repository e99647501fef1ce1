//! The outbox: an agent's reply is stored with its message row and delivered by the sender.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outbox")
                    .col(string("id").primary_key())
                    .col(string("message_id"))
                    .col(string("channel_id"))
                    // pending, sent, failed (dead letter), paused (the channel's token is bad)
                    .col(string("status"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    // A sender claims rows for a while, so two senders never send the same row.
                    .col(string_null("claimed_by"))
                    .col(timestamp_with_time_zone_null("claimed_until"))
                    .col(json_binary("body"))
                    .col(json_binary_null("last_error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_due")
                    .table("outbox")
                    .col("status")
                    .col("next_attempt_at")
                    .to_owned(),
            )
            .await
    }
}
