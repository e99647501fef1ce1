//! Contacts found or created, and the conversation a message continues, opens or reopens.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};

use crate::ids::{ContactId, ConversationId, WorkspaceId};
use crate::meta::InboundMessage;
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::{channel, contact, conversation};

use super::CUSTOMER_SERVICE_WINDOW;
use super::tx::{ContactKey, TxWriter};

impl TxWriter<'_> {
    /// Finds the customer by business-scoped user id and/or phone, links the two when a message
    /// carries both, and keeps the profile name current; `true` when the contact is new.
    pub(super) async fn upsert_contact(
        &mut self,
        workspace_id: WorkspaceId,
        inbound: &InboundMessage,
    ) -> Result<(contact::Model, bool), DbErr> {
        let (contact, created) = self.find_or_create_contact(workspace_id, inbound).await?;
        self.remember_contact(&contact);
        Ok((contact, created))
    }

    pub(super) async fn find_or_create_contact(
        &self,
        workspace_id: WorkspaceId,
        inbound: &InboundMessage,
    ) -> Result<(contact::Model, bool), DbErr> {
        let sender = &inbound.sender;
        let by_user_id = match &sender.user_id {
            Some(user_id) => {
                self.contact_by(workspace_id, ContactKey::UserId(user_id.clone()))
                    .await?
            }
            None => None,
        };
        let by_phone = match (&by_user_id, &sender.phone) {
            (None, Some(phone)) => {
                self.contact_by(workspace_id, ContactKey::Phone(phone.clone()))
                    .await?
            }
            _ => None,
        };
        let now = Utc::now();
        let Some(existing) = by_user_id.or(by_phone) else {
            let row = contact::ActiveModel {
                id: Set(ContactId::new()),
                workspace_id: Set(workspace_id),
                phone: Set(sender.phone.clone()),
                user_id: Set(sender.user_id.clone()),
                name: Set(sender.name.clone()),
                username: Set(sender.username.clone()),
                created_at: Set(now),
                updated_at: Set(now),
                restricted: Set(false),
                objected: Set(false),
                erased_at: Set(None),
            };
            return Ok((row.insert(self.txn).await?, true));
        };
        let link_phone = match (&existing.phone, &sender.phone) {
            // Only link a phone no other contact of the workspace already has.
            (None, Some(phone)) => self
                .contact_by(workspace_id, ContactKey::Phone(phone.clone()))
                .await?
                .is_none(),
            _ => false,
        };
        let link_user_id = existing.user_id.is_none() && sender.user_id.is_some();
        let rename = sender.name.is_some() && sender.name != existing.name;
        let new_username = sender.username.is_some() && sender.username != existing.username;
        if !(link_phone || link_user_id || rename || new_username) {
            return Ok((existing, false));
        }
        let mut row = existing.into_active_model();
        if link_phone {
            row.phone = Set(sender.phone.clone());
        }
        if link_user_id {
            row.user_id = Set(sender.user_id.clone());
        }
        if rename {
            row.name = Set(sender.name.clone());
        }
        if new_username {
            row.username = Set(sender.username.clone());
        }
        row.updated_at = Set(now);
        Ok((row.update(self.txn).await?, false))
    }

    /// Continues the contact's open conversation on this channel, or opens a new one; moves the
    /// 24-hour window forward to this message's time.
    pub(super) async fn open_conversation(
        &mut self,
        channel: &channel::Model,
        contact: &contact::Model,
        new_contact: bool,
        inbound: &InboundMessage,
    ) -> Result<(conversation::Model, bool), DbErr> {
        let pair = (channel.id, contact.id);
        let (conversation, opened) = self
            .find_or_open_conversation(channel, contact, new_contact, inbound)
            .await?;
        self.open.insert(pair, Some(conversation.clone()));
        // The window moves to the latest message's time, written once per batch.
        let latest = self
            .windows
            .get(&conversation.id)
            .copied()
            .or(conversation.last_inbound_at);
        if latest.is_none_or(|last| inbound.timestamp > last) && !opened {
            self.windows.insert(conversation.id, inbound.timestamp);
        }
        Ok((conversation, opened))
    }

    pub(super) async fn find_or_open_conversation(
        &self,
        channel: &channel::Model,
        contact: &contact::Model,
        new_contact: bool,
        inbound: &InboundMessage,
    ) -> Result<(conversation::Model, bool), DbErr> {
        let now = Utc::now();
        let open = match self.open.get(&(channel.id, contact.id)) {
            Some(cached) => cached.clone(),
            None => {
                conversation::Entity::find()
                    .filter(conversation::Column::ChannelId.eq(channel.id))
                    .filter(conversation::Column::ContactId.eq(contact.id))
                    .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
                    .one(self.txn)
                    .await?
            }
        };
        let Some(open) = open else {
            if let Some(reopened) = self.reopen(channel, contact, inbound).await? {
                return Ok((reopened, true));
            }
            let row = conversation::ActiveModel {
                id: Set(ConversationId::new()),
                workspace_id: Set(channel.workspace_id),
                channel_id: Set(channel.id),
                team_id: Set(channel.team_id),
                contact_id: Set(contact.id),
                status: Set(ConversationStatus::Waiting),
                assigned_agent_id: Set(None),
                priority: Set(0),
                last_inbound_at: Set(Some(inbound.timestamp)),
                window_expires_at: Set(Some(inbound.timestamp + CUSTOMER_SERVICE_WINDOW)),
                created_at: Set(now),
                updated_at: Set(now),
                resolved_at: Set(None),
                tags: Set("[]".to_owned()),
                // Its `conversation_created` rules run when its actor starts.
                automation_pending: Set(true),
                automation_fired: Set("{}".to_owned()),
                contact_is_new: Set(new_contact),
                ..crate::time::clocks::new_cycle(inbound.timestamp)
            };
            return Ok((row.insert(self.txn).await?, true));
        };
        Ok((open, false))
    }

    /// Reopens the contact's last conversation on this channel if it was resolved within the
    /// reopen window; it waits for an agent again.
    pub(super) async fn reopen(
        &self,
        channel: &channel::Model,
        contact: &contact::Model,
        inbound: &InboundMessage,
    ) -> Result<Option<conversation::Model>, DbErr> {
        use sea_orm::QueryOrder;
        let now = Utc::now();
        let recent = conversation::Entity::find()
            .filter(conversation::Column::ChannelId.eq(channel.id))
            .filter(conversation::Column::ContactId.eq(contact.id))
            .filter(conversation::Column::Status.eq(ConversationStatus::Resolved))
            .filter(conversation::Column::ResolvedAt.gte(now - self.reopen_window))
            .order_by_desc(conversation::Column::ResolvedAt)
            .one(self.txn)
            .await?;
        let Some(recent) = recent else {
            return Ok(None);
        };
        let cycle = recent.cycle + 1;
        let mut row = recent.into_active_model();
        row.status = Set(ConversationStatus::Waiting);
        row.assigned_agent_id = Set(None);
        row.resolved_at = Set(None);
        row.last_inbound_at = Set(Some(inbound.timestamp));
        row.window_expires_at = Set(Some(inbound.timestamp + CUSTOMER_SERVICE_WINDOW));
        row.updated_at = Set(now);
        crate::time::clocks::start_cycle(&mut row, inbound.timestamp, cycle);
        // A new cycle: its timer rules may fire again.
        row.automation_fired = Set("{}".to_owned());
        let reopened = row.update(self.txn).await?;
        crate::audit::record(
            self.txn,
            crate::audit::AuditRecord {
                workspace_id: Some(reopened.workspace_id),
                conversation_id: Some(reopened.id),
                kind: crate::audit::AuditKind::Reopened,
                text: "reopened by a new customer message within the reopen window".to_owned(),
                ..Default::default()
            },
        )
        .await?;
        Ok(Some(reopened))
    }
}
