//! Several nodes on one database (issue #16; shared/DESIGN.md, "Beyond one machine").
//!
//! Each workspace's routing is owned by one node at a time, under a lease in a NATS JetStream
//! key-value bucket ([`lease`]); the lease's revision is the fencing epoch its owner's
//! routing-state writes carry.
//!
//! - [`lease`]: one workspace's lease (take, renew, hand back) and the nodes' heartbeats.
//! - [`ownership`]: this node's fair share of the workspaces, kept every round, and the
//!   [`Epochs`] of the leases it holds, which routing's state writes carry.
//!
//! - [`bus`]: what needs a workspace's routing goes to its owner over NATS (ingest's events,
//!   the API's calls, sockets and their frames), and settings changes reach every node.
//!
//! Routing follows the leases: the directory routes only the workspaces held
//! (`routing::directory`), told by the rounds through [`Change`].

pub mod bus;
pub mod lease;
pub mod node;
pub mod ownership;

pub use lease::{ClusterError, Holder, Lease, Leases};
pub use node::{ClusterView, HeldWorkspace, Node, NodeView, single_node_view};
pub use ownership::{Change, ClusterConfig, Epochs, Ownership, Round};
