//! The WaOS domain: ids, Meta's webhook decoding, durable ingest, and the routing engine.
//!
//! Map:
//! - [`ids`]: newtype ids for every entity.
//! - [`meta`]: Meta's webhook envelope decoded item by item; pure, no IO.
//! - [`ingest`]: the group-commit writer that stores webhook items exactly once, then hands new
//!   inbound messages to routing through [`ingest::InboundHandoff`].
//! - [`store`]: the SeaORM connection, migrations and entities (SQLite or Postgres).
//! - [`admin`], [`auth`], [`api_tokens`], [`inbox`]: workspace administration, sign-in and
//!   sessions, integrations' tokens, and the conversation queries behind the REST API, each
//!   scoped by workspace and role.
//! - [`authz`]: the one table of who may do what (actors × actions), asked by every route and
//!   websocket frame after tenancy.
//! - [`crypto`]: token hashes, argon2 passwords, sealed channel tokens.
//! - [`routing`]: the routing engine behind one facade, [`routing::Engine`] (its actors,
//!   directory, supervisor per workspace, conversation and agent, are private to this crate),
//!   and the pure routing policy; see its module map for the message flow.
//! - [`automation`]: rules (pure evaluation with a trace, run by the conversation actor) and
//!   placeholders; [`canned`]: canned replies; [`cache`]: the settings cache the actors share.
//! - [`annotations`], [`templates`], [`outbound`], [`media`], [`privacy`]: tags and notes,
//!   message templates, replies queued for the sender, media, and data requests and retention.
//! - [`error`]: the engine's error type (a value the database refuses is bad input, not an
//!   outage).
//! - [`search`]: contacts by name or number, a contact's conversations, messages by their
//!   words (Postgres full text or SQLite FTS5), scoped like conversations.
//! - [`presence`]: where agents are (in-process or Redis, with TTL heartbeats).
//! - [`reports`]: facts recorded per conversation cycle, their daily rollups, and the summary
//!   and daily figures read from them; [`replay`]: a recorded range run again through the
//!   routing core on a simulated clock, under another policy or staffing (`waos replay`).
//! - [`html`]: escaping for the pages the engine writes itself.
//! - [`cluster`]: several nodes: workspace leases in NATS JetStream, their revision the fencing
//!   epoch that routing's state writes carry; each node keeps a fair share of them
//!   ([`cluster::Ownership`]) and routes only those; the bus ([`cluster::bus`]) takes events,
//!   calls and sockets of the other workspaces to their owners.
//! - [`audit`]: the append-only audit trail and its batched writer (a bounded queue; each row
//!   carries its event's own time; flushed at shutdown).
//!
//! Concurrency: one ingest writer task owns all webhook writes (group commit); REST calls run
//! on the web workers and go straight to the database pool; the routing actors run on one engine
//! thread of their own.
//!
//! ```text
//! webhook ─► meta::decode ─► IngestWriter (one tx for many requests) ─► commit ─► 200
//!                                                                   └─► InboundHandoff ─► routing
//! ```

pub mod admin;
pub mod annotations;
pub mod api_tokens;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod automation;
pub mod cache;
pub mod canned;
pub mod cluster;
pub mod crypto;
pub mod error;
pub mod html;
pub mod ids;
pub mod inbox;
pub mod ingest;
pub mod media;
pub mod meta;
pub mod outbound;
pub mod presence;
pub mod privacy;
pub mod replay;
pub mod reports;
pub mod routing;
pub mod search;
pub mod store;
pub mod templates;
pub mod time;

pub use error::EngineError;
