//! Downloaded media as callers may see it: the file of a message, only for those who may see
//! its conversation (anyone else gets `NotFound`, as for the conversation itself).

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::auth::Principal;
use crate::error::EngineError;
use crate::ids::{ConversationId, MessageId};
use crate::inbox::find_conversation;
use crate::store::entity::media_file;

/// The stored file of one message of a conversation the caller may see.
pub async fn stored_file(
    db: &DatabaseConnection,
    caller: &Principal,
    conversation_id: ConversationId,
    message_id: MessageId,
) -> Result<media_file::Model, EngineError> {
    let conversation = find_conversation(db, caller, conversation_id).await?;
    media_file::Entity::find_by_id(message_id)
        .filter(media_file::Column::ConversationId.eq(conversation.id))
        .filter(media_file::Column::Status.eq("stored"))
        .one(db)
        .await?
        .ok_or(EngineError::NotFound("media"))
}
