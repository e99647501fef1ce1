//! Inbound messages and reactions, and the routing snapshot of a conversation a message opens.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::Value;

use crate::ids::MessageId;
use crate::meta::{DeliveryStatus, InboundMessage};
use crate::store::entity::message::MessageDirection;
use crate::store::entity::{channel, contact, conversation, message, team};

use super::batch::{Pending, ROW_OVERHEAD_BYTES, json_len};
use super::tx::TxWriter;
use super::{InboundEvent, IngestReport};

impl TxWriter<'_> {
    pub(super) async fn store_message(
        &mut self,
        inbound: &InboundMessage,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let Some(channel) = self.channel(&inbound.phone_number_id).await? else {
            return self
                .store_unrouted(
                    &inbound.phone_number_id,
                    "message",
                    inbound.wamid.clone(),
                    &inbound.raw,
                    report,
                )
                .await;
        };
        let key = (inbound.phone_number_id.clone(), inbound.wamid.clone());
        let already = match self.messages.get(&key) {
            Some(cached) => cached.is_some(),
            None => message::Entity::find()
                .filter(message::Column::PhoneNumberId.eq(&inbound.phone_number_id))
                .filter(message::Column::Wamid.eq(&inbound.wamid))
                .one(self.txn)
                .await?
                .is_some(),
        };
        if already {
            report.duplicates += 1;
            return Ok(());
        }
        let (contact, new_contact) = self.upsert_contact(channel.workspace_id, inbound).await?;
        let (conversation, opened) = self
            .open_conversation(&channel, &contact, new_contact, inbound)
            .await?;

        let now = Utc::now();
        let message_id = MessageId::new();
        let context_wamid = inbound
            .original_wamid
            .clone()
            .or_else(|| inbound.reaction.as_ref().map(|r| r.target_wamid.clone()))
            .or_else(|| inbound.context_wamid.clone());
        let row = message::ActiveModel {
            id: Set(message_id),
            workspace_id: Set(channel.workspace_id),
            conversation_id: Set(conversation.id),
            channel_id: Set(channel.id),
            phone_number_id: Set(inbound.phone_number_id.clone()),
            wamid: Set(Some(inbound.wamid.clone())),
            direction: Set(MessageDirection::In),
            kind: Set(inbound.kind.clone()),
            text: Set(inbound.text.clone()),
            media_id: Set(inbound.media_id.clone()),
            context_wamid: Set(context_wamid.clone()),
            reaction: Set(None),
            status: Set(DeliveryStatus::Received),
            error: Set(None),
            raw: Set(inbound.raw.clone()),
            provider_timestamp: Set(inbound.timestamp),
            created_at: Set(now),
            updated_at: Set(now),
            automated: Set(false),
            button_payload: Set(inbound.button_payload.clone()),
        };
        let stored = message::Model {
            id: message_id,
            workspace_id: channel.workspace_id,
            conversation_id: conversation.id,
            channel_id: channel.id,
            phone_number_id: inbound.phone_number_id.clone(),
            wamid: Some(inbound.wamid.clone()),
            direction: MessageDirection::In,
            kind: inbound.kind.clone(),
            text: inbound.text.clone(),
            media_id: inbound.media_id.clone(),
            context_wamid,
            reaction: None,
            status: DeliveryStatus::Received,
            error: None,
            raw: Value::Null,
            provider_timestamp: inbound.timestamp,
            created_at: now,
            updated_at: now,
            automated: false,
            button_payload: inbound.button_payload.clone(),
        };
        let view: crate::inbox::MessageView = stored.clone().into();
        self.messages.insert(key, Some(stored));
        // Counted now; `flush_messages` takes it back if another process stored it first.
        report.messages_stored += 1;
        if opened {
            report.conversations_opened += 1;
        }
        self.pending_by_id
            .insert(message_id, self.pending_messages.len());
        self.pending_messages.push(Pending {
            row,
            bytes: ROW_OVERHEAD_BYTES
                + inbound.text.as_ref().map_or(0, String::len)
                + json_len(&inbound.raw),
            id: message_id.to_string(),
            submission: self.submission,
            opened,
        });
        if let Some(reaction) = &inbound.reaction {
            self.react(
                &inbound.phone_number_id,
                &reaction.target_wamid,
                &reaction.emoji,
            )
            .await?;
        }
        let snapshot = match opened {
            true => Some(Box::new(
                self.routing_snapshot(&channel, contact, new_contact, &conversation, &view)
                    .await?,
            )),
            false => None,
        };
        self.events.push(InboundEvent {
            workspace_id: channel.workspace_id,
            team_id: conversation.team_id,
            channel_id: channel.id,
            conversation_id: conversation.id,
            message_id,
            opened,
            message: view,
            conversation: snapshot,
        });
        Ok(())
    }

    /// A conversation this message opened, as routing needs it: from the rows at hand, plus
    /// the agent of the contact's previous conversation (a new contact has none).
    pub(super) async fn routing_snapshot(
        &mut self,
        channel: &channel::Model,
        contact: contact::Model,
        new_contact: bool,
        conversation: &conversation::Model,
        message: &crate::inbox::MessageView,
    ) -> Result<crate::routing::store::StoredConversation, DbErr> {
        let team = match self.teams.get(&conversation.team_id) {
            Some(cached) => cached.clone(),
            None => {
                let found = team::Entity::find_by_id(conversation.team_id)
                    .one(self.txn)
                    .await?;
                self.teams.insert(conversation.team_id, found.clone());
                found
            }
        };
        let sticky = match new_contact {
            true => None,
            false => crate::routing::store::previous_agent(self.txn, conversation).await?,
        };
        crate::routing::store::StoredConversation::from_rows(
            conversation.clone(),
            Some(contact),
            team.as_ref(),
            Some(channel),
            sticky,
            Some(message.clone()),
        )
        .map(|stored| crate::routing::store::StoredConversation {
            fresh: true,
            ..stored
        })
    }

    /// Puts a reaction on the message it reacts to: in the row still to be written when that
    /// message came in this same batch, else in the stored row.
    pub(super) async fn react(
        &mut self,
        phone_number_id: &str,
        target_wamid: &str,
        emoji: &Option<String>,
    ) -> Result<(), DbErr> {
        let target = self
            .messages
            .get(&(phone_number_id.to_owned(), target_wamid.to_owned()))
            .cloned()
            .flatten();
        if let Some(index) = target.and_then(|t| self.pending_by_id.get(&t.id).copied()) {
            self.pending_messages[index].row.reaction = Set(emoji.clone());
            return Ok(());
        }
        message::Entity::update_many()
            .col_expr(
                message::Column::Reaction,
                sea_orm::sea_query::Expr::value(emoji.clone()),
            )
            .filter(message::Column::PhoneNumberId.eq(phone_number_id))
            .filter(message::Column::Wamid.eq(target_wamid))
            .exec(self.txn)
            .await?;
        Ok(())
    }
}
