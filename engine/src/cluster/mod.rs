//! Several nodes on one database (issue #16; shared/DESIGN.md, "Beyond one machine").
//!
//! Each workspace's routing is owned by one node at a time, under a lease in a NATS JetStream
//! key-value bucket ([`lease`]); the lease's revision is the fencing epoch its owner's
//! routing-state writes will carry. What exists so far is the lease itself; ownership,
//! handing events to the owner and failover build on it.

pub mod lease;

pub use lease::{ClusterError, Holder, Lease, Leases};
