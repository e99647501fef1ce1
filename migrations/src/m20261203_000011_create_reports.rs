//! Reports: facts recorded as conversations are served (one per cycle and metric, keyed so a
//! retry writes nothing twice), their daily rollups per workspace, team, agent and channel in
//! the workspace's time zone, the zone itself, and what a cycle counts until its first
//! assignment (offers that went unanswered, when it was first assigned).

use sea_orm_migration::{prelude::*, schema::*};

use crate::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CONVERSATION_COLUMNS: [&str; 3] = ["cycle", "cycle_missed_offers", "cycle_assigned_at"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("conversation_facts")
                    .col(string("id").primary_key())
                    .col(string("conversation_id"))
                    // 1 for a conversation's first cycle, one more for each reopen.
                    .col(integer("cycle"))
                    .col(timestamp_with_time_zone("cycle_started_at"))
                    .col(string("metric"))
                    .col(string("workspace_id"))
                    .col(string("team_id"))
                    .col(string_null("agent_id"))
                    .col(string("channel_id"))
                    .col(timestamp_with_time_zone("ended_at"))
                    // Milliseconds for a duration, a count for the others.
                    .col(big_integer("value"))
                    // The same duration counted in the team calendar's open time.
                    .col(big_integer("business_value"))
                    .col(boolean("rolled").default(false))
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "conversation_facts_key",
                &["conversation_id", "cycle", "metric"][..],
                true,
            ),
            (
                "conversation_facts_time",
                &["workspace_id", "ended_at"][..],
                false,
            ),
            ("conversation_facts_rolled", &["rolled"][..], false),
        ] {
            let mut index = Index::create();
            index.name(name).table("conversation_facts");
            for column in columns {
                index.col(*column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("daily_rollups")
                    .col(string("workspace_id"))
                    // YYYY-MM-DD in the workspace's time zone.
                    .col(string("day"))
                    // workspace, team, agent, channel, team_agent, channel_agent.
                    .col(string("scope"))
                    .col(string("scope_id"))
                    .col(string("metric"))
                    .col(big_integer("count"))
                    .col(big_integer("sum"))
                    .col(big_integer("business_sum"))
                    // Seconds as `[[value, count], ...]` (an HDR histogram's recorded buckets).
                    .col(text("histogram"))
                    .col(text("business_histogram"))
                    .primary_key(
                        Index::create()
                            .col("workspace_id")
                            .col("day")
                            .col("scope")
                            .col("scope_id")
                            .col("metric"),
                    )
                    .to_owned(),
            )
            .await?;
        // Reports read one scope's days.
        manager
            .create_index(
                Index::create()
                    .name("daily_rollups_scope")
                    .table("daily_rollups")
                    .col("workspace_id")
                    .col("scope")
                    .col("scope_id")
                    .col("day")
                    .to_owned(),
            )
            .await?;
        add_columns(
            manager,
            "workspaces",
            vec![string("time_zone").default("UTC").to_owned()],
        )
        .await?;
        add_columns(
            manager,
            "conversations",
            vec![
                integer("cycle").default(1).to_owned(),
                integer("cycle_missed_offers").default(0).to_owned(),
                timestamp_with_time_zone_null("cycle_assigned_at"),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, "conversations", &CONVERSATION_COLUMNS).await?;
        drop_columns(manager, "workspaces", &["time_zone"]).await?;
        manager
            .drop_table(Table::drop().table("daily_rollups").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("conversation_facts").to_owned())
            .await
    }
}
