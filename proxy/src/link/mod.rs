//! The dummy link `ferry-ipvs0` that holds every address IPVS serves, so the kernel delivers
//! packets for them locally where IPVS picks them up.
//!
//! Library: `rtnetlink` 0.24 (MIT), on the same rust-netlink stack as `ipvs` and `conntrack`.
//! The link is Ferry's by name; addresses on it are Ferry's too, so the diff may delete any of
//! them, and nothing outside it is touched.

mod fake;
mod netlink;

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::IpAddr;

pub use fake::FakeLink;
pub use netlink::NetlinkLink;

/// The dummy link's name: recognisable as Ferry's, within IFNAMSIZ.
pub const LINK_NAME: &str = "ferry-ipvs0";

/// The operations Ferry needs on `ferry-ipvs0`.
pub trait Link: Send + Sync {
    /// Creates the dummy link if it is missing and sets it up. Idempotent.
    fn ensure_link(&self) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Addresses on the link, without the IPv6 link-local one the kernel adds by itself.
    fn list_addresses(&self) -> impl Future<Output = Result<BTreeSet<IpAddr>, LinkError>> + Send;

    /// Binds `address` as a /32 or /128.
    fn add_address(&self, address: IpAddr) -> impl Future<Output = Result<(), LinkError>> + Send;

    fn delete_address(&self, address: IpAddr)
    -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Deletes the link with its addresses, if it exists (`ferry-proxy cleanup`). Idempotent.
    fn delete_link(&self) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Addresses on every other link of the namespace: the node's own, where NodePorts may
    /// have been served (see `diff::Ownership`).
    fn host_addresses(&self) -> impl Future<Output = Result<BTreeSet<IpAddr>, LinkError>> + Send;
}

/// The prefix Ferry binds addresses with: one host.
pub fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// EOPNOTSUPP from RTM_NEWLINK: no dummy driver in the kernel.
    #[error(
        "the kernel cannot create dummy links (RTM_NEWLINK kind \"dummy\" returned EOPNOTSUPP): load the dummy module or build with CONFIG_DUMMY"
    )]
    DummyUnsupported,
    #[error("link {LINK_NAME} exists but is a {kind} link, not dummy: Ferry will not adopt it")]
    WrongKind { kind: String },
    /// ENODEV.
    #[error("link {LINK_NAME} does not exist")]
    LinkNotFound,
    /// EEXIST.
    #[error("{address} is already on {LINK_NAME}")]
    AddressExists { address: IpAddr },
    /// EADDRNOTAVAIL.
    #[error("{address} is not on {LINK_NAME}")]
    AddressNotFound { address: IpAddr },
    /// EPERM.
    #[error("permission denied for {operation} on {LINK_NAME}: needs CAP_NET_ADMIN")]
    PermissionDenied { operation: &'static str },
    #[error("the kernel rejected {operation} on {LINK_NAME}: {source}")]
    Rejected {
        operation: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("rtnetlink failed during {operation} on {LINK_NAME}: {detail}")]
    Netlink {
        operation: &'static str,
        detail: String,
    },
}
