//! Background work that talks to the outside or to the database in bulk.
//!
//! - [`sender`]: delivers agents' replies from the outbox to Meta's Graph API, retrying by
//!   Meta's error code, pausing a channel whose token Meta rejects; paced by [`pacing`] (each
//!   number's budget and each customer's, shared through Redis when configured).
//! - [`templates`]: fetches each account's message templates from Meta.
//! - [`media`]: downloads inbound media before Meta's ids expire.
//!
//! Each worker is one testable step (`run_once`) plus a loop that stops on shutdown.

pub mod media;
pub mod pacing;
pub mod sender;
pub mod templates;
