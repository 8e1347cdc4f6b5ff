//! Conntrack, the kernel edge that forgets stale UDP flows.
//!
//! Library choice: `netlink-packet-netfilter` 0.4 (rust-netlink, MIT) has ctnetlink messages
//! (`IPCTNL_MSG_CT_GET` dumps, `IPCTNL_MSG_CT_DELETE` by tuple) with typed tuples, on the same
//! `netlink-packet-core` as `ipvs`, so it carries the codec and `ipvs::socket` the requests. It
//! lacks dump filters (`CTA_FILTER`), so flows are matched here, after a dump of one address
//! family, the way conntrack-tools and kube-proxy's library do on kernels without filters.
//!
//! Only UDP needs this: a UDP "connection" has no end, so after its backend goes away the
//! kernel keeps sending a client's datagrams along the old conntrack entry until it times out.

mod codec;
mod fake;
mod netlink;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use crate::model::types::{Protocol, RealServerKey, VirtualServerKey};

pub use codec::decode_flow;
pub use fake::FakeConntrack;
pub use netlink::NetlinkConntrack;

/// The operations Ferry needs from conntrack. Both return how many entries were deleted.
pub trait Conntrack: Send + Sync {
    /// Deletes UDP flows a client sent to `frontend` that IPVS (or DNAT) turned to `backend`:
    /// after the backend is removed, their next datagram is scheduled afresh.
    fn delete_udp_flows_to_backend(
        &self,
        frontend: VirtualServerKey,
        backend: RealServerKey,
    ) -> impl Future<Output = Result<usize, ConntrackError>> + Send;

    /// Deletes every UDP flow to `frontend`, whatever its backend: when a Service goes from
    /// no endpoints to some, flows created while it had none must not linger.
    fn delete_udp_flows_to_frontend(
        &self,
        frontend: VirtualServerKey,
    ) -> impl Future<Output = Result<usize, ConntrackError>> + Send;
}

/// One conntrack entry, as far as Ferry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// IANA protocol number.
    pub protocol: u8,
    /// The direction the first packet took: client to frontend.
    pub original: FlowTuple,
    /// The direction answers take: backend to client, after NAT.
    pub reply: FlowTuple,
    /// Conntrack zone; deleting needs it.
    pub zone: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// Which UDP flows to delete: those to `frontend`, and answered by `backend` if given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFilter {
    frontend: SocketAddr,
    backend: Option<SocketAddr>,
}

impl FlowFilter {
    /// The filter for a frontend, refusing anything but UDP: only UDP flows outlive their
    /// backend this way, and deleting TCP or SCTP entries would cut live connections.
    pub fn udp(
        frontend: VirtualServerKey,
        backend: Option<RealServerKey>,
    ) -> Result<Self, ConntrackError> {
        if frontend.protocol != Protocol::Udp {
            return Err(ConntrackError::NotUdp { frontend });
        }
        Ok(Self {
            frontend: SocketAddr::new(frontend.address, frontend.port),
            backend: backend.map(|backend| SocketAddr::new(backend.address, backend.port)),
        })
    }

    pub fn matches(&self, flow: &Flow) -> bool {
        flow.protocol == Protocol::Udp.number()
            && flow.original.destination == self.frontend
            && self
                .backend
                .is_none_or(|backend| flow.reply.source == backend)
    }

    pub fn is_ipv4(&self) -> bool {
        self.frontend.is_ipv4()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack cleanup is only for UDP frontends, not {frontend}")]
    NotUdp { frontend: VirtualServerKey },
    /// EPERM: ctnetlink needs CAP_NET_ADMIN.
    #[error("permission denied for {operation}: ctnetlink needs CAP_NET_ADMIN")]
    PermissionDenied { operation: &'static str },
    #[error("the kernel rejected {operation}: {source}")]
    Rejected {
        operation: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("ctnetlink socket failed during {operation}: {source}")]
    Socket {
        operation: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed ctnetlink reply during {operation}: {source}")]
    Decode {
        operation: &'static str,
        #[source]
        source: netlink_packet_core::DecodeError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(protocol: Protocol, frontend: &str, backend: &str) -> Flow {
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        Flow {
            protocol: protocol.number(),
            original: FlowTuple {
                source: client,
                destination: frontend.parse().unwrap(),
            },
            reply: FlowTuple {
                source: backend.parse().unwrap(),
                destination: client,
            },
            zone: 0,
        }
    }

    fn key(protocol: Protocol, address: &str, port: u16) -> VirtualServerKey {
        VirtualServerKey {
            protocol,
            address: address.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn a_backend_filter_needs_frontend_and_backend_to_match() {
        let backend = RealServerKey {
            address: "10.244.1.5".parse().unwrap(),
            port: 5353,
        };
        let filter = FlowFilter::udp(key(Protocol::Udp, "10.96.0.10", 53), Some(backend)).unwrap();
        assert!(filter.matches(&flow(Protocol::Udp, "10.96.0.10:53", "10.244.1.5:5353")));
        assert!(
            !filter.matches(&flow(Protocol::Udp, "10.96.0.10:53", "10.244.1.5:5354")),
            "other backend port"
        );
        assert!(
            !filter.matches(&flow(Protocol::Udp, "10.96.0.10:53", "10.244.2.7:5353")),
            "other backend"
        );
        assert!(
            !filter.matches(&flow(Protocol::Udp, "10.96.0.10:54", "10.244.1.5:5353")),
            "other frontend port"
        );
        assert!(
            !filter.matches(&flow(Protocol::Tcp, "10.96.0.10:53", "10.244.1.5:5353")),
            "TCP"
        );
    }

    #[test]
    fn a_frontend_filter_takes_any_backend() {
        let filter = FlowFilter::udp(key(Protocol::Udp, "fd00:96::a", 53), None).unwrap();
        assert!(filter.matches(&flow(
            Protocol::Udp,
            "[fd00:96::a]:53",
            "[fd00:244::5]:5353"
        )));
        assert!(!filter.matches(&flow(
            Protocol::Udp,
            "[fd00:96::b]:53",
            "[fd00:244::5]:5353"
        )));
    }

    #[test]
    fn only_udp_frontends_are_accepted() {
        let result = FlowFilter::udp(key(Protocol::Tcp, "10.96.0.1", 443), None);
        assert!(matches!(result, Err(ConntrackError::NotUdp { .. })));
    }
}
