//! Fencing for several nodes (#16), by workspace: the epoch of the lease the workspace was
//! last taken over under. A routing write carrying an older epoch is refused for every one of
//! its conversations, also those opened (or reopened) after the takeover, whose own epoch a
//! node that lost the lease would otherwise still pass. One node writes no epoch.

use sea_orm_migration::{prelude::*, schema::*};

use crate::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            manager,
            "workspaces",
            vec![big_integer("owner_epoch").default(0).to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, "workspaces", &["owner_epoch"]).await
    }
}
