//! Background work that talks to the outside or to the database in bulk.
//!
//! - [`sender`]: delivers agents' replies from the outbox to Meta's Graph API, retrying by
//!   Meta's error code, pausing a channel whose token Meta rejects.
//!
//! Each worker is one testable step (`run_once`) plus a loop that stops on shutdown.

pub mod sender;
