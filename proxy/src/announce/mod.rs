//! L2 announcement of LoadBalancer IPs (`loadBalancerAnnouncement: l2`): one node per address
//! answers ARP and Neighbor Solicitations for it; the others stay silent.
//!
//! - [`targets`] (pure): which addresses to announce and which nodes may answer for each
//!   (every node for `externalTrafficPolicy: Cluster`, those with a ready endpoint for
//!   `Local`), from the Services and EndpointSlices the sync loop already holds; the sync loop
//!   publishes them after each successful sync, so an address is announced once it is served.
//! - [`election`] (pure): the announcer of each address among the candidates, by rendezvous
//!   hashing; [`peers`] (pure): the candidates (Ready Nodes whose proxy's Lease is live) and
//!   what a new result changes for this node.
//! - Edges: [`lease`] (this proxy's heartbeat Lease), [`announcer`] (the task that watches
//!   Nodes and Leases and elects), [`responder`] over [`socket`] (`AF_PACKET`) with the
//!   [`frame`] codec, on the [`interface`] holding the node's InternalIP (`link` ties those
//!   together for the announcer).
//!
//! A graceful stop silences the responder, then deletes the Lease: the peers re-elect on the
//! deletion and the new announcer sends a gratuitous ARP / unsolicited Neighbor Advertisement.
//! A crashed proxy is replaced once its Lease expires (`l2.leaseDuration`, 6 s by default).

pub mod announcer;
pub mod election;
pub mod frame;
pub mod interface;
pub mod lease;
mod link;
pub mod peers;
pub mod responder;
pub mod socket;
pub mod targets;

pub use announcer::{L2Settings, run};
pub use election::{Eligible, Targets, elect};
pub use targets::targets;
