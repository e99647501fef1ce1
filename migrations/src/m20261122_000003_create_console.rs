//! What the console adds: tags and internal notes on conversations, Meta's message templates,
//! downloaded media, and what the sender needs to pace and order its sends.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A JSON array of strings, kept on the row so every view of a conversation has its tags
        // without another query.
        manager
            .alter_table(
                Table::alter()
                    .table("conversations")
                    .add_column(text("tags").default("[]"))
                    .to_owned(),
            )
            .await?;

        // Whom a row goes to (phone or user id), so that a sender keeps each customer's messages
        // in order and paces them; and what it is (`reply`, or `read` for a read receipt).
        manager
            .alter_table(
                Table::alter()
                    .table("outbox")
                    .add_column(string_null("recipient"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("outbox")
                    .add_column(string("kind").default("reply"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("conversation_notes")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("conversation_id"))
                    .col(string_null("author_id"))
                    .col(text("text"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("conversation_notes_by_conversation")
                    .table("conversation_notes")
                    .col("conversation_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;

        // Templates belong to a WhatsApp Business Account; channels of one account share them.
        manager
            .create_table(
                Table::create()
                    .table("message_templates")
                    .col(string("id").primary_key())
                    .col(string("waba_id"))
                    .col(string("name"))
                    .col(string("language"))
                    .col(string("category"))
                    .col(string("status"))
                    .col(json_binary("components"))
                    .col(timestamp_with_time_zone("synced_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("message_templates_by_name")
                    .table("message_templates")
                    .col("waba_id")
                    .col("name")
                    .col("language")
                    .unique()
                    .to_owned(),
            )
            .await?;

        // One row per inbound media message: `pending` until `stored` or `failed` (with Meta's
        // reason). A worker claims a row by moving its `next_attempt_at` ahead (a lease), so two
        // workers never fetch the same file.
        manager
            .create_table(
                Table::create()
                    .table("media_files")
                    .col(string("message_id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("conversation_id"))
                    .col(string("media_id"))
                    .col(string("status"))
                    .col(integer("attempts"))
                    .col(timestamp_with_time_zone("next_attempt_at"))
                    .col(string_null("mime_type"))
                    .col(big_integer_null("size"))
                    .col(string_null("sha256"))
                    .col(string_null("path"))
                    .col(json_binary_null("error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("media_files_due")
                    .table("media_files")
                    .col("status")
                    .col("next_attempt_at")
                    .to_owned(),
            )
            .await
    }
}
