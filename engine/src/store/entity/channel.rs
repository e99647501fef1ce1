//! The `channels` table.

use sea_orm::entity::prelude::*;

use crate::ids::{ChannelId, TeamId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ChannelId,
    pub workspace_id: WorkspaceId,
    pub team_id: TeamId,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub waba_id: Option<String>,
    pub access_token_sealed: Vec<u8>,
    pub required_skills: Json,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub active: bool,
    /// Some of its messages were erased: ingest looks their wamids up by erasure tag too.
    pub has_erased_messages: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
