//! The `media_files` table: inbound media downloaded from Meta before its id expires.

use sea_orm::entity::prelude::*;

use crate::ids::{ConversationId, MessageId, WorkspaceId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "media_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: MessageId,
    pub workspace_id: WorkspaceId,
    pub conversation_id: ConversationId,
    pub media_id: String,
    /// `pending`, `stored`, `failed` (given up, with `error`).
    pub status: String,
    pub attempts: i32,
    /// When the row is due; a worker claims it by moving this ahead (a lease).
    pub next_attempt_at: DateTimeUtc,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    /// Relative to the media folder.
    pub path: Option<String>,
    pub error: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
