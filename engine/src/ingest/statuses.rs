//! Delivery statuses: every distinct one kept, a message's status moved forward only.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter,
};
use serde_json::Value;

use crate::meta::{DeliveryStatus, StatusUpdate, status_rank};
use crate::store::entity::{message, message_status};

use super::batch::{Pending, ROW_OVERHEAD_BYTES, json_len};
use super::tx::TxWriter;
use super::{IngestReport, StatusEvent};

impl TxWriter<'_> {
    /// Keeps every distinct status, and moves the message's status forward only.
    pub(super) async fn store_status(
        &mut self,
        status: &StatusUpdate,
        report: &mut IngestReport,
    ) -> Result<(), DbErr> {
        if self.channel(&status.phone_number_id).await?.is_none() {
            return self
                .store_unrouted(
                    &status.phone_number_id,
                    "status",
                    format!("{}:{}", status.wamid, status.status),
                    &status.raw,
                    report,
                )
                .await;
        }
        let key = (status.phone_number_id.clone(), status.wamid.clone());
        let target = match self.messages.get(&key) {
            Some(cached) => cached.clone(),
            None => {
                message::Entity::find()
                    .filter(message::Column::PhoneNumberId.eq(&status.phone_number_id))
                    .filter(message::Column::Wamid.eq(&status.wamid))
                    .one(self.txn)
                    .await?
            }
        };
        let status_key = (
            status.phone_number_id.clone(),
            status.wamid.clone(),
            status.status.clone(),
        );
        if !self.known_statuses.insert(status_key) {
            report.duplicates += 1;
            return Ok(());
        }
        let id = uuid::Uuid::now_v7().to_string();
        // A status of an erased message keeps nothing that names the customer: its wamid is
        // the message's tag, and its recipient and raw body are dropped.
        let erased_tag = target
            .as_ref()
            .and_then(|m| m.wamid.clone())
            .filter(|wamid| wamid.starts_with(crate::crypto::ERASED_WAMID_PREFIX));
        let erased = erased_tag.is_some();
        let row = message_status::ActiveModel {
            id: Set(id.clone()),
            phone_number_id: Set(status.phone_number_id.clone()),
            wamid: Set(erased_tag.unwrap_or_else(|| status.wamid.clone())),
            status: Set(status.status.clone()),
            provider_timestamp: Set(status.timestamp),
            recipient_id: Set(status.recipient_id.clone().filter(|_| !erased)),
            errors: Set(status.errors.clone()),
            raw: Set(if erased {
                Value::Null
            } else {
                status.raw.clone()
            }),
            message_id: Set(target.as_ref().map(|m| m.id)),
            created_at: Set(Utc::now()),
        };
        self.pending_statuses.push(Pending {
            row,
            id,
            bytes: ROW_OVERHEAD_BYTES
                + json_len(&status.raw)
                + status.errors.as_ref().map_or(0, json_len),
            submission: self.submission,
            opened: false,
        });
        report.statuses_stored += 1;
        if let Some(target) = target {
            // Later statuses of the batch compare against the status written here.
            let before = target.status;
            let now = match self.pending_by_id.get(&target.id).copied() {
                // The message came in this batch: its row is still to be written.
                Some(index) => {
                    let now = advanced(target, &status.status, status.errors.clone());
                    let row = &mut self.pending_messages[index].row;
                    row.status = Set(now.status);
                    row.error = Set(now.error.clone());
                    now
                }
                None => {
                    apply_status(self.txn, target, &status.status, status.errors.clone()).await?
                }
            };
            if now.status != before {
                self.statuses.push(StatusEvent {
                    workspace_id: now.workspace_id,
                    conversation_id: now.conversation_id,
                    message_id: now.id,
                    wamid: status.wamid.clone(),
                    status: now.status,
                    error: now.error.clone(),
                });
            }
            self.messages.insert(key, Some(now));
        }
        Ok(())
    }
}

/// The message with its status moved forward (never back; a status we do not know moves
/// nothing); a failure keeps Meta's errors.
pub(super) fn advanced(
    mut target: message::Model,
    status: &str,
    errors: Option<Value>,
) -> message::Model {
    if let Some(status) = DeliveryStatus::parse(status)
        && status > target.status
    {
        target.status = status;
        if status == DeliveryStatus::Failed {
            target.error = errors;
        }
    }
    target
}

/// Moves a message's status forward (never back); a failure keeps Meta's errors.
pub(super) async fn apply_status(
    txn: &DatabaseTransaction,
    target: message::Model,
    status: &str,
    errors: Option<Value>,
) -> Result<message::Model, DbErr> {
    let now = advanced(target.clone(), status, errors);
    if now.status == target.status {
        return Ok(target);
    }
    let mut row = target.into_active_model();
    row.status = Set(now.status);
    row.error = Set(now.error);
    row.updated_at = Set(Utc::now());
    row.update(txn).await
}

/// Matches statuses that arrived before their message was stored (Meta does not order them)
/// and applies the highest one. Called when an outbound message gets its wamid.
pub async fn reconcile_pending_statuses(
    txn: &DatabaseTransaction,
    message: message::Model,
) -> Result<(), DbErr> {
    let Some(wamid) = message.wamid.clone() else {
        return Ok(());
    };
    let pending = message_status::Entity::find()
        .filter(message_status::Column::PhoneNumberId.eq(&message.phone_number_id))
        .filter(message_status::Column::Wamid.eq(&wamid))
        .all(txn)
        .await?;
    message_status::Entity::update_many()
        .col_expr(
            message_status::Column::MessageId,
            sea_orm::sea_query::Expr::value(message.id),
        )
        .filter(message_status::Column::PhoneNumberId.eq(&message.phone_number_id))
        .filter(message_status::Column::Wamid.eq(&wamid))
        .exec(txn)
        .await?;
    if let Some(best) = pending
        .into_iter()
        .max_by_key(|status| status_rank(&status.status))
    {
        apply_status(txn, message, &best.status, best.errors).await?;
    }
    Ok(())
}
