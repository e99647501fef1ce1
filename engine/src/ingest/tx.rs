//! One transaction's writer: what the batch needs, looked up up front, and each item stored.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    TryInsertResult,
};
use serde_json::Value;

use crate::ids::{ChannelId, ContactId, ConversationId, MessageId, TeamId, WorkspaceId};
use crate::meta::Item;
use crate::store::entity::conversation::ConversationStatus;
use crate::store::entity::{
    channel, contact, conversation, message, message_status, team, undecodable_item, unrouted_item,
};

use super::batch::{Pending, STATEMENT_BYTES, by_pairs, insert_pending};
use super::{CUSTOMER_SERVICE_WINDOW, InboundEvent, IngestReport, StatusEvent, Submission};

/// A customer key within a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ContactKey {
    UserId(String),
    Phone(String),
}

/// One transaction's writes, with what the whole batch needs looked up up front (a few queries
/// per batch instead of several per message). A key in a cache is authoritative: `None` means
/// "looked up, absent". Keys not prefetched fall back to a query.
pub(super) struct TxWriter<'t> {
    pub(super) txn: &'t DatabaseTransaction,
    /// Channels by phone_number_id.
    pub(super) channels: HashMap<String, Option<channel::Model>>,
    /// The channels' teams by id (their offer settings go with a new conversation).
    pub(super) teams: HashMap<TeamId, Option<team::Model>>,
    /// Stored messages by (phone_number_id, wamid): duplicates and status targets.
    pub(super) messages: HashMap<(String, String), Option<message::Model>>,
    /// Contacts by (workspace_id, key).
    pub(super) contacts: HashMap<(WorkspaceId, ContactKey), Option<contact::Model>>,
    /// Open conversations by (channel_id, contact_id), for the contacts prefetched.
    pub(super) open: HashMap<(ChannelId, ContactId), Option<conversation::Model>>,
    /// The latest inbound time per conversation, written once per batch.
    pub(super) windows: HashMap<ConversationId, DateTime<Utc>>,
    /// Statuses already stored, by (phone_number_id, wamid, status), for this batch's wamids.
    pub(super) known_statuses: HashSet<(String, String, String)>,
    /// New messages and statuses, inserted together at the end of the batch (one statement
    /// per few hundred rows instead of one per row: the writer's round trips were its cost).
    pub(super) pending_messages: Vec<Pending<message::ActiveModel>>,
    /// Index into `pending_messages` by message id: a status or reaction for a message of this
    /// same batch changes the row before it is written.
    pub(super) pending_by_id: HashMap<MessageId, usize>,
    pub(super) pending_statuses: Vec<Pending<message_status::ActiveModel>>,
    /// The submission whose items are being stored (reports are per submission).
    pub(super) submission: usize,
    pub(super) events: Vec<InboundEvent>,
    pub(super) statuses: Vec<StatusEvent>,
    pub(super) reopen_window: ChronoDuration,
    pub(super) eraser: crate::crypto::WamidEraser,
}

impl TxWriter<'_> {
    /// Looks up, with one query each, the channels, stored messages, contacts and open
    /// conversations that this batch's items name.
    pub(super) async fn prefetch(&mut self, submissions: &[&Submission]) -> Result<(), DbErr> {
        let items = submissions.iter().flat_map(|s| s.items.iter());
        let mut numbers = Vec::new();
        let mut wamids: Vec<(String, String)> = Vec::new();
        let mut status_wamids: Vec<(String, String)> = Vec::new();
        let mut senders = Vec::new();
        for item in items {
            match item {
                Item::Message(m) => {
                    numbers.push(m.phone_number_id.clone());
                    wamids.push((m.phone_number_id.clone(), m.wamid.clone()));
                    senders.push((m.phone_number_id.clone(), m.sender.clone()));
                }
                Item::Status(s) => {
                    numbers.push(s.phone_number_id.clone());
                    wamids.push((s.phone_number_id.clone(), s.wamid.clone()));
                    status_wamids.push((s.phone_number_id.clone(), s.wamid.clone()));
                }
                _ => {}
            }
        }
        if numbers.is_empty() {
            return Ok(());
        }
        numbers.sort();
        numbers.dedup();
        let channels = channel::Entity::find()
            .filter(channel::Column::PhoneNumberId.is_in(numbers.clone()))
            .filter(channel::Column::Active.eq(true))
            .all(self.txn)
            .await?;
        for number in &numbers {
            let found = channels
                .iter()
                .find(|c| &c.phone_number_id == number)
                .cloned();
            self.channels.insert(number.clone(), found);
        }
        let mut team_ids: Vec<TeamId> = channels.iter().map(|c| c.team_id).collect();
        team_ids.sort();
        team_ids.dedup();
        let teams = team::Entity::find()
            .filter(team::Column::Id.is_in(team_ids.clone()))
            .all(self.txn)
            .await?;
        for id in team_ids {
            let found = teams.iter().find(|t| t.id == id).cloned();
            self.teams.insert(id, found);
        }

        // An erased message is stored under its tag: on a channel with erased messages, look
        // for both forms, and file what is found under the wamid Meta sends (its retries stay
        // duplicates). Every other channel's look-up stays as it was.
        let erased_numbers: HashSet<&String> = numbers
            .iter()
            .filter(|number| {
                matches!(self.channels.get(*number), Some(Some(channel)) if channel.has_erased_messages)
            })
            .collect();
        let mut by_tag: HashMap<(String, String), String> = HashMap::new();
        let mut wanted = wamids.clone();
        for (number, wamid) in wamids
            .iter()
            .filter(|(number, _)| erased_numbers.contains(number))
        {
            let tag = (number.clone(), self.eraser.tag(number, wamid));
            wanted.push(tag.clone());
            by_tag.insert(tag, wamid.clone());
        }
        let stored = message::Entity::find()
            .filter(by_pairs(
                &wanted,
                message::Column::PhoneNumberId,
                message::Column::Wamid,
            ))
            .all(self.txn)
            .await?;
        for key in wamids {
            self.messages.entry(key).or_insert(None);
        }
        for row in stored {
            if let Some(wamid) = row.wamid.clone() {
                let key = (row.phone_number_id.clone(), wamid);
                let key = match by_tag.get(&key) {
                    Some(raw) => (row.phone_number_id.clone(), raw.clone()),
                    None => key,
                };
                self.messages.insert(key, Some(row));
            }
        }
        if !status_wamids.is_empty() {
            let mut wanted = status_wamids.clone();
            wanted.extend(
                status_wamids
                    .iter()
                    .filter(|(number, _)| erased_numbers.contains(number))
                    .map(|(number, wamid)| (number.clone(), self.eraser.tag(number, wamid))),
            );
            let known = message_status::Entity::find()
                .filter(by_pairs(
                    &wanted,
                    message_status::Column::PhoneNumberId,
                    message_status::Column::Wamid,
                ))
                .all(self.txn)
                .await?;
            self.known_statuses.extend(known.into_iter().map(|row| {
                let wamid = by_tag
                    .get(&(row.phone_number_id.clone(), row.wamid.clone()))
                    .cloned()
                    .unwrap_or(row.wamid);
                (row.phone_number_id, wamid, row.status)
            }));
        }

        let mut workspaces: HashMap<WorkspaceId, (Vec<String>, Vec<String>)> = HashMap::new();
        for (number, sender) in &senders {
            let Some(Some(channel)) = self.channels.get(number) else {
                continue;
            };
            let keys = workspaces.entry(channel.workspace_id).or_default();
            keys.0.extend(sender.user_id.clone());
            keys.1.extend(sender.phone.clone());
        }
        let mut contact_ids = Vec::new();
        for (workspace, (user_ids, phones)) in workspaces {
            let found = contact::Entity::find()
                .filter(contact::Column::WorkspaceId.eq(workspace))
                .filter(
                    sea_orm::Condition::any()
                        .add(contact::Column::UserId.is_in(user_ids.clone()))
                        .add(contact::Column::Phone.is_in(phones.clone())),
                )
                .all(self.txn)
                .await?;
            for user_id in user_ids {
                self.contacts
                    .insert((workspace, ContactKey::UserId(user_id)), None);
            }
            for phone in phones {
                self.contacts
                    .insert((workspace, ContactKey::Phone(phone)), None);
            }
            for row in found {
                contact_ids.push(row.id);
                self.remember_contact(&row);
            }
        }
        if contact_ids.is_empty() {
            return Ok(());
        }
        let channel_ids: Vec<ChannelId> = channels.iter().map(|c| c.id).collect();
        let pairs: Vec<(ChannelId, ContactId)> = channel_ids
            .iter()
            .flat_map(|channel| contact_ids.iter().map(|contact| (*channel, *contact)))
            .collect();
        let open = conversation::Entity::find()
            .filter(by_pairs(
                &pairs,
                conversation::Column::ChannelId,
                conversation::Column::ContactId,
            ))
            .filter(conversation::Column::Status.ne(ConversationStatus::Resolved))
            .all(self.txn)
            .await?;
        for channel_id in &channel_ids {
            for contact_id in &contact_ids {
                self.open.insert((*channel_id, *contact_id), None);
            }
        }
        for row in open {
            self.open
                .insert((row.channel_id, row.contact_id), Some(row));
        }
        Ok(())
    }

    pub(super) fn remember_contact(&mut self, row: &contact::Model) {
        if let Some(user_id) = &row.user_id {
            self.contacts.insert(
                (row.workspace_id, ContactKey::UserId(user_id.clone())),
                Some(row.clone()),
            );
        }
        if let Some(phone) = &row.phone {
            self.contacts.insert(
                (row.workspace_id, ContactKey::Phone(phone.clone())),
                Some(row.clone()),
            );
        }
    }

    /// The contact with `key`, from the prefetch when it covered the key.
    pub(super) async fn contact_by(
        &self,
        workspace_id: WorkspaceId,
        key: ContactKey,
    ) -> Result<Option<contact::Model>, DbErr> {
        if let Some(cached) = self.contacts.get(&(workspace_id, key.clone())) {
            return Ok(cached.clone());
        }
        let column = match &key {
            ContactKey::UserId(user_id) => contact::Column::UserId.eq(user_id.clone()),
            ContactKey::Phone(phone) => contact::Column::Phone.eq(phone.clone()),
        };
        contact::Entity::find()
            .filter(contact::Column::WorkspaceId.eq(workspace_id))
            .filter(column)
            .one(self.txn)
            .await
    }

    /// Writes each touched conversation's 24-hour window once.
    /// (One statement per few hundred conversations, a `CASE` on the id.)
    pub(super) async fn flush_windows(&mut self) -> Result<(), DbErr> {
        use sea_orm::sea_query::{CaseStatement, Expr};
        let now = Utc::now();
        let windows: Vec<(ConversationId, DateTime<Utc>)> = self.windows.drain().collect();
        // Each conversation costs about 200 bytes of statement (its id three times, two times).
        for chunk in windows.chunks(STATEMENT_BYTES / 200) {
            let mut last_inbound = CaseStatement::new();
            let mut expires = CaseStatement::new();
            for (id, at) in chunk {
                last_inbound =
                    last_inbound.case(conversation::Column::Id.eq(*id), Expr::value(Some(*at)));
                expires = expires.case(
                    conversation::Column::Id.eq(*id),
                    Expr::value(Some(*at + CUSTOMER_SERVICE_WINDOW)),
                );
            }
            conversation::Entity::update_many()
                .col_expr(conversation::Column::LastInboundAt, last_inbound.into())
                .col_expr(conversation::Column::WindowExpiresAt, expires.into())
                .col_expr(conversation::Column::UpdatedAt, Expr::value(now))
                .filter(conversation::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
                .exec(self.txn)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn store_item(
        &mut self,
        item: &Item,
        leftover_key: &str,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        match item {
            Item::Message(message) => self.store_message(message, report).await,
            Item::Status(status) => self.store_status(status, report).await,
            Item::Undecodable {
                phone_number_id,
                reason,
                raw,
            } => {
                tracing::warn!(phone_number_id, reason, "undecodable webhook item kept raw");
                self.store_leftover(phone_number_id.clone(), reason, raw, leftover_key, report)
                    .await
            }
            Item::MetaError {
                phone_number_id,
                code,
                title,
                raw,
            } => {
                tracing::warn!(phone_number_id, code, title, "meta reported an error");
                let reason = format!(
                    "meta error {}: {}",
                    code.map_or_else(|| "?".to_owned(), |code| code.to_string()),
                    title.as_deref().unwrap_or("")
                );
                self.store_leftover(phone_number_id.clone(), &reason, raw, leftover_key, report)
                    .await
            }
        }
    }

    pub(super) async fn channel(
        &mut self,
        phone_number_id: &str,
    ) -> Result<Option<channel::Model>, DbErr> {
        if let Some(cached) = self.channels.get(phone_number_id) {
            return Ok(cached.clone());
        }
        let found = channel::Entity::find()
            .filter(channel::Column::PhoneNumberId.eq(phone_number_id))
            .filter(channel::Column::Active.eq(true))
            .one(self.txn)
            .await?;
        self.channels
            .insert(phone_number_id.to_owned(), found.clone());
        Ok(found)
    }

    pub(super) async fn store_unrouted(
        &self,
        phone_number_id: &str,
        kind: &str,
        item_key: String,
        raw: &Value,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let row = unrouted_item::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            phone_number_id: Set(phone_number_id.to_owned()),
            kind: Set(kind.to_owned()),
            item_key: Set(item_key),
            raw: Set(raw.clone()),
            created_at: Set(Utc::now()),
        };
        let inserted = unrouted_item::Entity::insert(row)
            .on_conflict_do_nothing_on([
                unrouted_item::Column::PhoneNumberId,
                unrouted_item::Column::Kind,
                unrouted_item::Column::ItemKey,
            ])
            .exec_without_returning(self.txn)
            .await?;
        count(inserted, &mut report.unrouted, &mut report.duplicates);
        Ok(())
    }

    pub(super) async fn store_leftover(
        &self,
        phone_number_id: Option<String>,
        reason: &str,
        raw: &Value,
        key: &str,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        let row = undecodable_item::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            phone_number_id: Set(phone_number_id),
            reason: Set(reason.to_owned()),
            raw: Set(serde_json::to_vec(raw).unwrap_or_default()),
            raw_sha256: Set(key.to_owned()),
            created_at: Set(Utc::now()),
        };
        let inserted = undecodable_item::Entity::insert(row)
            .on_conflict_do_nothing_on([undecodable_item::Column::RawSha256])
            .exec_without_returning(self.txn)
            .await?;
        count(inserted, &mut report.undecodable, &mut report.duplicates);
        Ok(())
    }

    /// Inserts the batch's new messages, a few hundred rows per statement. A row another
    /// process stored first (same number and wamid) is skipped by the unique index; it is
    /// then counted as a duplicate and not handed to routing.
    pub(super) async fn flush_messages(
        &mut self,
        reports: &mut [IngestReport],
    ) -> Result<(), DbErr> {
        let pending = std::mem::take(&mut self.pending_messages);
        self.pending_by_id.clear();
        let skipped = insert_pending(
            self.txn,
            &pending,
            &[message::Column::PhoneNumberId, message::Column::Wamid],
            message::Column::Id,
        )
        .await?;
        if skipped.is_empty() {
            return Ok(());
        }
        for row in pending.iter().filter(|p| skipped.contains(&p.id)) {
            if let Some(report) = reports.get_mut(row.submission) {
                report.messages_stored = report.messages_stored.saturating_sub(1);
                report.duplicates += 1;
                if row.opened {
                    report.conversations_opened = report.conversations_opened.saturating_sub(1);
                }
            }
        }
        self.events
            .retain(|event| !skipped.contains(&event.message_id.to_string()));
        Ok(())
    }

    /// Inserts the batch's new statuses, as `flush_messages` does messages.
    pub(super) async fn flush_statuses(
        &mut self,
        reports: &mut [IngestReport],
    ) -> Result<(), DbErr> {
        let pending = std::mem::take(&mut self.pending_statuses);
        let skipped = insert_pending(
            self.txn,
            &pending,
            &[
                message_status::Column::PhoneNumberId,
                message_status::Column::Wamid,
                message_status::Column::Status,
            ],
            message_status::Column::Id,
        )
        .await?;
        for row in pending.iter().filter(|p| skipped.contains(&p.id)) {
            if let Some(report) = reports.get_mut(row.submission) {
                report.statuses_stored = report.statuses_stored.saturating_sub(1);
                report.duplicates += 1;
            }
        }
        Ok(())
    }
}

pub(super) fn count(result: TryInsertResult<u64>, stored: &mut u64, duplicates: &mut u64) {
    match result {
        TryInsertResult::Inserted(n) if n > 0 => *stored += 1,
        _ => *duplicates += 1,
    }
}
