//! Time as a routing input: business-hours calendars and SLA policies per workspace, a team's
//! calendar, out-of-hours reply, SLA policy and inactivity rule, and on each conversation the
//! clocks of its current cycle (due dates the conversation actor's timers are armed from, so a
//! restart re-arms them) and the replies those clocks measure.

use sea_orm_migration::{prelude::*, schema::*};

use crate::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TEAM_COLUMNS: [&str; 6] = [
    "calendar_id",
    "out_of_hours_reply",
    "offer_outside_hours",
    "sla_policy_id",
    "auto_resolve_after_secs",
    "auto_resolve_message",
];

const CONVERSATION_COLUMNS: [&str; 12] = [
    "cycle_started_at",
    "sla_policy_id",
    "first_response_due_at",
    "next_response_due_at",
    "resolution_due_at",
    "sla_breached",
    "sla_met",
    "sla_warned",
    "awaiting_reply_since",
    "first_replied_at",
    "last_agent_reply_at",
    "out_of_hours_replied_at",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("calendars")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(string("time_zone"))
                    // `{"mon": [["09:00","17:00"]], ...}`, normalised.
                    .col(text("weekly"))
                    // `[{"date": "2026-12-25", "intervals": [], "label": "..."}]`, by date.
                    .col(text("overrides"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("calendars_workspace")
                    .table("calendars")
                    .col("workspace_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("sla_policies")
                    .col(string("id").primary_key())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(integer_null("first_response_secs"))
                    .col(integer_null("next_response_secs"))
                    .col(integer_null("resolution_secs"))
                    .col(boolean("business_hours").default(false))
                    .col(integer_null("warn_before_secs"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sla_policies_workspace")
                    .table("sla_policies")
                    .col("workspace_id")
                    .to_owned(),
            )
            .await?;
        add_columns(
            manager,
            "teams",
            vec![
                string_null("calendar_id"),
                text_null("out_of_hours_reply"),
                boolean("offer_outside_hours").default(true).to_owned(),
                string_null("sla_policy_id"),
                integer_null("auto_resolve_after_secs"),
                text_null("auto_resolve_message"),
            ],
        )
        .await?;
        add_columns(
            manager,
            "conversations",
            vec![
                // The customer message that opened (or reopened) the current cycle.
                timestamp_with_time_zone_null("cycle_started_at"),
                string_null("sla_policy_id"),
                timestamp_with_time_zone_null("first_response_due_at"),
                timestamp_with_time_zone_null("next_response_due_at"),
                timestamp_with_time_zone_null("resolution_due_at"),
                // JSON arrays of metric names, for the current cycle.
                text("sla_breached").default("[]").to_owned(),
                text("sla_met").default("[]").to_owned(),
                text("sla_warned").default("[]").to_owned(),
                // The oldest customer message not yet answered by an agent.
                timestamp_with_time_zone_null("awaiting_reply_since"),
                timestamp_with_time_zone_null("first_replied_at"),
                timestamp_with_time_zone_null("last_agent_reply_at"),
                timestamp_with_time_zone_null("out_of_hours_replied_at"),
            ],
        )
        .await?;
        // Out-of-hours replies and automations are not an agent's words.
        add_columns(
            manager,
            "messages",
            vec![boolean("automated").default(false).to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, "messages", &["automated"]).await?;
        drop_columns(manager, "conversations", &CONVERSATION_COLUMNS).await?;
        drop_columns(manager, "teams", &TEAM_COLUMNS).await?;
        manager
            .drop_table(Table::drop().table("sla_policies").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("calendars").to_owned())
            .await
    }
}
