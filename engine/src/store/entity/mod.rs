//! SeaORM entities, one per table (see the `waos-migrations` crate for the schema itself).

pub mod agent;
pub mod agent_team;
pub mod api_token;
pub mod audit_event;
pub mod auth_token;
pub mod automation;
pub mod calendar;
pub mod canned_reply;
pub mod channel;
pub mod contact;
pub mod conversation;
pub mod conversation_fact;
pub mod conversation_note;
pub mod data_request;
pub mod media_file;
pub mod message;
pub mod message_status;
pub mod message_template;
pub mod outbox;
pub mod rollup;
pub mod sla_policy;
pub mod team;
pub mod undecodable_item;
pub mod unrouted_item;
pub mod workspace;
