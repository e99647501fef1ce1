//! The `messages` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub workspace_id: String,
    pub conversation_id: String,
    pub channel_id: String,
    pub phone_number_id: String,
    pub wamid: Option<String>,
    pub direction: String,
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub context_wamid: Option<String>,
    pub reaction: Option<String>,
    pub status: String,
    pub error: Option<Json>,
    pub raw: Json,
    pub provider_timestamp: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
