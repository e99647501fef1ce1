//! Data-subject requests (access, export, correction, restriction, objection, erasure) and what
//! they leave on a contact.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A restricted contact's data is kept but no longer worked on: no replies go out.
        manager
            .alter_table(
                Table::alter()
                    .table("contacts")
                    .add_column(boolean("restricted").default(false))
                    .to_owned(),
            )
            .await?;
        // An objecting contact gets no marketing templates.
        manager
            .alter_table(
                Table::alter()
                    .table("contacts")
                    .add_column(boolean("objected").default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("contacts")
                    .add_column(timestamp_with_time_zone_null("erased_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("data_requests")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("contact_id"))
                    .col(string("kind"))
                    .col(string("status"))
                    .col(json_binary_null("changes"))
                    .col(string_null("requested_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("due_at"))
                    .col(timestamp_with_time_zone_null("completed_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("data_requests_by_workspace")
                    .table("data_requests")
                    .col("workspace_id")
                    .col("id")
                    .to_owned(),
            )
            .await
    }
}
