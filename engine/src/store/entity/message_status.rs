//! The `message_statuses` table.

use sea_orm::entity::prelude::*;

use crate::ids::MessageId;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "message_statuses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub phone_number_id: String,
    pub wamid: String,
    pub status: String,
    pub provider_timestamp: DateTimeUtc,
    pub recipient_id: Option<String>,
    pub errors: Option<Json>,
    pub raw: Json,
    pub message_id: Option<MessageId>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
