//! IPVS, the kernel edge that holds Ferry's virtual servers.
//!
//! Library choice: an IPVS generic-netlink codec of our own (`codec`) on the rust-netlink stack
//! (`netlink-packet-core` for attributes and framing, `netlink-packet-generic` for the genl header
//! and the `nlctrl` family lookup, `netlink-sys` for the socket). `nlrs` cannot update a service
//! (scheduler or persistence changes would need delete + add, which drops every connection) and
//! knows neither SCTP nor fwmark services; `netlink-packet-ipvs` 0.0.1 is built on an old
//! `netlink-packet-core` and unmaintained. The uapi (`include/uapi/linux/ip_vs.h`) is small and
//! stable, so owning the ~30 attributes we send and read is cheaper than patching either, and it
//! shares its stack with rtnetlink (`link`) and netlink-packet-netfilter (`conntrack`).
//!
//! `Ipvs` is deliberately narrow: no flush (a restart must keep established flows), no fwmark
//! services, masquerade forwarding only. `FakeIpvs` answers with the same error kinds the kernel
//! returns, so code written against the fake handles the kernel too.

pub mod codec;
mod fake;
mod netlink;
pub mod socket;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;

use crate::model::types::{RealServerKey, VirtualServerKey, VirtualServerParams};

pub use fake::FakeIpvs;
pub use netlink::NetlinkIpvs;

/// The operations Ferry needs from IPVS, over plain values.
pub trait Ipvs: Send + Sync {
    /// Every address-keyed virtual server in the kernel (fwmark services are skipped) with its
    /// real servers and counters.
    fn list_virtual_servers(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<VirtualServerKey, ObservedVirtualServer>, IpvsError>> + Send;

    /// The real servers of one virtual server, with their counters.
    fn list_real_servers(
        &self,
        key: VirtualServerKey,
    ) -> impl Future<Output = Result<BTreeMap<RealServerKey, ObservedRealServer>, IpvsError>> + Send;

    /// The counters of every address-keyed virtual server, without their real servers: one
    /// dump, cheap enough to run on every metrics scrape.
    fn list_stats(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<VirtualServerKey, VirtualServerStats>, IpvsError>> + Send;

    fn add_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;

    /// Changes scheduler and persistence in place, keeping connections and real servers.
    fn update_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;

    /// Deletes the virtual server with its real servers (and their connections).
    fn delete_virtual_server(
        &self,
        key: VirtualServerKey,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;

    fn add_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;

    /// Sets the weight (0 drains) and resets forwarding to masquerade.
    fn update_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;

    fn delete_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
    ) -> impl Future<Output = Result<(), IpvsError>> + Send;
}

/// A virtual server as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedVirtualServer {
    /// `None` when the kernel has settings Ferry never programs (a scheduler outside
    /// `Scheduler`, a persistence engine, a persistence netmask other than a single host,
    /// one-packet or scheduler flags): the diff should treat that as drift and update it.
    pub params: Option<VirtualServerParams>,
    pub stats: VirtualServerStats,
    pub real_servers: BTreeMap<RealServerKey, ObservedRealServer>,
}

/// Cumulative counters of a virtual server since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtualServerStats {
    /// Connections scheduled (the autoscaler's signal).
    pub connections: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A real server as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedRealServer {
    pub weight: u32,
    pub active_connections: u32,
    pub inactive_connections: u32,
    /// False when someone set another forwarding method (direct routing, tunnel): drift.
    pub masquerade: bool,
}

/// What an IPVS operation was about, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Resolving the "IPVS" generic-netlink family.
    Family,
    Listing,
    VirtualServer(VirtualServerKey),
    RealServer {
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Family => f.write_str("the IPVS family lookup"),
            Target::Listing => f.write_str("the virtual server list"),
            Target::VirtualServer(key) => write!(f, "virtual server {key}"),
            Target::RealServer {
                virtual_server,
                real_server,
            } => write!(
                f,
                "real server {real_server} of virtual server {virtual_server}"
            ),
        }
    }
}

/// IPVS failures, by the kernel's errno where it has one.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error(
        "this kernel has no IPVS: generic netlink family \"IPVS\" is not registered (is the ip_vs module loaded?)"
    )]
    Unavailable,
    /// EEXIST.
    #[error("{target} already exists")]
    AlreadyExists { target: Target },
    /// ESRCH for a virtual server, ENOENT for a real server.
    #[error("{target} does not exist")]
    NotFound { target: Target },
    /// ENOENT on adding or updating a virtual server: no `ip_vs_<name>` module.
    #[error(
        "scheduler {scheduler:?} is not available in this kernel (module ip_vs_{scheduler}) for {target}"
    )]
    UnknownScheduler {
        target: Target,
        scheduler: &'static str,
    },
    /// EPERM: IPVS commands need CAP_NET_ADMIN.
    #[error("permission denied for {target}: IPVS needs CAP_NET_ADMIN")]
    PermissionDenied { target: Target },
    /// Any other errno (EINVAL for a family mismatch, ERANGE for a weight above i32::MAX, ...).
    #[error("the kernel rejected the request for {target}: {source}")]
    Rejected {
        target: Target,
        #[source]
        source: io::Error,
    },
    #[error("IPVS netlink socket failed for {target}: {source}")]
    Socket {
        target: Target,
        #[source]
        source: io::Error,
    },
    #[error("malformed IPVS reply for {target}: {source}")]
    Decode {
        target: Target,
        #[source]
        source: netlink_packet_core::DecodeError,
    },
    /// NLM_F_DUMP_INTR: the table changed while it was dumped; the listing may be inconsistent.
    #[error("{target} changed while it was read; retry")]
    Interrupted { target: Target },
}
