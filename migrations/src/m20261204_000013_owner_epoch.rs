//! Fencing for several nodes (#16): each conversation keeps the epoch of the last lease its
//! routing state was written under. A write carrying an older epoch than the stored one is
//! refused, so a node that lost a workspace's lease cannot change its conversations even
//! before it notices. One node writes no epoch, and 0 is below every lease's.

use sea_orm_migration::{prelude::*, schema::*};

use crate::{add_columns, drop_columns};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            manager,
            "conversations",
            vec![big_integer("owner_epoch").default(0).to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(manager, "conversations", &["owner_epoch"]).await
    }
}
