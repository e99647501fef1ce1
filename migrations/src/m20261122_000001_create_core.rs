//! The core schema: tenancy, people, conversations, messages, webhook leftovers and the audit trail.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id() -> ColumnDef {
    string("id").primary_key().take()
}

fn created_at() -> ColumnDef {
    timestamp_with_time_zone("created_at")
}

fn index(name: &str, table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table.to_owned());
    for column in columns {
        stmt.col((*column).to_owned());
    }
    stmt.to_owned()
}

fn unique(name: &str, table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut stmt = index(name, table, columns);
    stmt.unique();
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("workspaces")
                    .col(id())
                    .col(string("name"))
                    // Retention in days per kind of data; null keeps forever.
                    .col(integer_null("retention_message_days"))
                    .col(integer_null("retention_media_days"))
                    .col(integer_null("retention_audit_days"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("teams")
                    .col(id())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(integer("offer_timeout_secs"))
                    .col(boolean("auto_accept"))
                    .col(boolean("active"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("teams_workspace", "teams", &["workspace_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("channels")
                    .col(id())
                    .col(string("workspace_id"))
                    .col(string("team_id"))
                    .col(string("phone_number_id"))
                    .col(string("display_phone_number"))
                    .col(string_null("waba_id"))
                    // The Graph token, sealed with the installation's secret key (nonce || ciphertext).
                    .col(blob("access_token_sealed"))
                    .col(json_binary("required_skills"))
                    .col(boolean("paused"))
                    .col(string_null("pause_reason"))
                    .col(boolean("active"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "channels_phone_number_id",
                "channels",
                &["phone_number_id"],
            ))
            .await?;
        manager
            .create_index(index("channels_workspace", "channels", &["workspace_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("agents")
                    .col(id())
                    .col(string("workspace_id"))
                    .col(string("name"))
                    .col(string("email"))
                    .col(string("password_hash"))
                    .col(string("role"))
                    .col(integer("capacity"))
                    .col(json_binary("skills"))
                    .col(boolean("active"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique("agents_email", "agents", &["email"]))
            .await?;
        manager
            .create_index(index("agents_workspace", "agents", &["workspace_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("agent_teams")
                    .col(string("agent_id"))
                    .col(string("team_id"))
                    .primary_key(Index::create().col("agent_id").col("team_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("agent_teams_team", "agent_teams", &["team_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("auth_tokens")
                    // SHA-256 of the token: the token itself is never stored.
                    .col(string("token_hash").primary_key())
                    .col(string("kind"))
                    .col(string("agent_id"))
                    .col(string("workspace_id"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("auth_tokens_agent", "auth_tokens", &["agent_id"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("contacts")
                    .col(id())
                    .col(string("workspace_id"))
                    // Personal data lives in these few columns (and in message text and raw JSON).
                    .col(string_null("phone"))
                    .col(string_null("user_id"))
                    .col(string_null("name"))
                    .col(string_null("username"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "contacts_workspace_phone",
                "contacts",
                &["workspace_id", "phone"],
            ))
            .await?;
        manager
            .create_index(unique(
                "contacts_workspace_user_id",
                "contacts",
                &["workspace_id", "user_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("conversations")
                    .col(id())
                    .col(string("workspace_id"))
                    .col(string("channel_id"))
                    .col(string("team_id"))
                    .col(string("contact_id"))
                    .col(string("status"))
                    .col(string_null("assigned_agent_id"))
                    .col(integer("priority"))
                    .col(timestamp_with_time_zone_null("last_inbound_at"))
                    .col(timestamp_with_time_zone_null("window_expires_at"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("resolved_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "conversations_workspace_status",
                "conversations",
                &["workspace_id", "status", "created_at"],
            ))
            .await?;
        manager
            .create_index(index(
                "conversations_agent",
                "conversations",
                &["assigned_agent_id", "status"],
            ))
            .await?;
        manager
            .create_index(index(
                "conversations_channel_contact",
                "conversations",
                &["channel_id", "contact_id", "created_at"],
            ))
            .await?;
        // At most one open conversation per (channel, contact): the ingest writer relies on it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX conversations_one_open ON conversations (channel_id, contact_id) \
                 WHERE status <> 'resolved'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("messages")
                    .col(id())
                    .col(string("workspace_id"))
                    .col(string("conversation_id"))
                    .col(string("channel_id"))
                    .col(string("phone_number_id"))
                    // Null until Meta accepts an outbound message.
                    .col(string_null("wamid"))
                    .col(string("direction"))
                    .col(string("kind"))
                    .col(text_null("text"))
                    .col(string_null("media_id"))
                    .col(string_null("context_wamid"))
                    // The customer's current reaction to this message, if any.
                    .col(string_null("reaction"))
                    .col(string("status"))
                    .col(json_binary_null("error"))
                    .col(json_binary("raw"))
                    .col(timestamp_with_time_zone("provider_timestamp"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "messages_wamid",
                "messages",
                &["phone_number_id", "wamid"],
            ))
            .await?;
        manager
            .create_index(index(
                "messages_conversation",
                "messages",
                &["conversation_id", "created_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("message_statuses")
                    .col(id())
                    .col(string("phone_number_id"))
                    .col(string("wamid"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("provider_timestamp"))
                    .col(string_null("recipient_id"))
                    .col(json_binary_null("errors"))
                    .col(json_binary("raw"))
                    // Set once the status is matched to a stored message; null means pending.
                    .col(string_null("message_id"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "message_statuses_key",
                "message_statuses",
                &["phone_number_id", "wamid", "status"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("unrouted_items")
                    .col(id())
                    .col(string("phone_number_id"))
                    .col(string("kind"))
                    .col(string("item_key"))
                    .col(json_binary("raw"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "unrouted_items_key",
                "unrouted_items",
                &["phone_number_id", "kind", "item_key"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("undecodable_items")
                    .col(id())
                    .col(string_null("phone_number_id"))
                    .col(string("reason"))
                    .col(blob("raw"))
                    .col(string("raw_sha256"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique(
                "undecodable_items_sha",
                "undecodable_items",
                &["raw_sha256"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    .col(big_pk_auto("id"))
                    .col(string_null("workspace_id"))
                    .col(string_null("conversation_id"))
                    .col(string_null("agent_id"))
                    .col(string("kind"))
                    .col(json_binary_null("reason"))
                    .col(text("text"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "audit_events_conversation",
                "audit_events",
                &["conversation_id", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "audit_events_workspace",
                "audit_events",
                &["workspace_id", "id"],
            ))
            .await?;
        Ok(())
    }
}
