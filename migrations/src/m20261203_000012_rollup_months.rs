//! Rollups by day and by month, with compact histograms: `daily_rollups` becomes `rollups`,
//! whose rows are one day (`span` `day`, `period` YYYY-MM-DD) or one month (`month`, YYYY-MM)
//! of the workspace's zone, so a year's report reads twelve month rows per line instead of
//! 365 day rows. Histograms are binary (HDR V2), not JSON. Rollups are derived from the facts:
//! the old table is dropped and every fact is marked uncounted, so the rollers count them again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn recount_facts() -> UpdateStatement {
    Query::update()
        .table("conversation_facts")
        .value("rolled", false)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("daily_rollups").to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("rollups")
                    .col(string("workspace_id"))
                    // day or month.
                    .col(string("span"))
                    // workspace, team, agent, channel, team_agent, channel_agent.
                    .col(string("scope"))
                    .col(string("scope_id"))
                    // YYYY-MM-DD or YYYY-MM in the workspace's time zone.
                    .col(string("period"))
                    .col(string("metric"))
                    .col(big_integer("count"))
                    .col(big_integer("sum"))
                    .col(big_integer("business_sum"))
                    // Seconds, an HDR histogram in its V2 encoding.
                    .col(blob("histogram"))
                    .col(blob("business_histogram"))
                    // Reports read one span, scope and id over a range of periods.
                    .primary_key(
                        Index::create()
                            .col("workspace_id")
                            .col("span")
                            .col("scope")
                            .col("scope_id")
                            .col("period")
                            .col("metric"),
                    )
                    .to_owned(),
            )
            .await?;
        manager.exec_stmt(recount_facts()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("rollups").to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("daily_rollups")
                    .col(string("workspace_id"))
                    .col(string("day"))
                    .col(string("scope"))
                    .col(string("scope_id"))
                    .col(string("metric"))
                    .col(big_integer("count"))
                    .col(big_integer("sum"))
                    .col(big_integer("business_sum"))
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
        manager.exec_stmt(recount_facts()).await
    }
}
