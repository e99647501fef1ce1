//! Automation and the agent's tools: rules per workspace, canned replies per workspace or team,
//! on each conversation what its rules have done (so a restart neither repeats nor forgets a
//! run), and on each message the id of the button or list row the customer chose.

use sea_orm_migration::{prelude::*, schema::*};

use crate::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CONVERSATION_COLUMNS: [&str; 3] =
    ["automation_pending", "automation_fired", "contact_is_new"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("automations")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(boolean("active").default(true))
                    .col(integer("position"))
                    // The trigger, conditions and actions as checked JSON.
                    .col(text("trigger"))
                    .col(text("conditions"))
                    .col(text("actions"))
                    .col(boolean("stop_after").default(false))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("automations_workspace")
                    .table("automations")
                    .col("workspace_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("canned_replies")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    // None: every team of the workspace.
                    .col(string_null("team_id"))
                    .col(string("shortcut"))
                    .col(text("text"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("canned_replies_shortcut")
                    .table("canned_replies")
                    .col("workspace_id")
                    .col("shortcut")
                    .unique()
                    .to_owned(),
            )
            .await?;
        add_columns(
            manager,
            "conversations",
            vec![
                // Its `conversation_created` rules have not run yet (set by ingest on a new one).
                boolean("automation_pending").default(false).to_owned(),
                // `{"<automation id>": "<start of the silence it fired for>"}`, timer rules.
                text("automation_fired").default("{}").to_owned(),
                // Its contact was first seen with this conversation.
                boolean("contact_is_new").default(false).to_owned(),
            ],
        )
        .await?;
        add_columns(manager, "messages", vec![text_null("button_payload")]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, "messages", &["button_payload"]).await?;
        drop_columns(manager, "conversations", &CONVERSATION_COLUMNS).await?;
        manager
            .drop_table(Table::drop().table("canned_replies").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("automations").to_owned())
            .await
    }
}
