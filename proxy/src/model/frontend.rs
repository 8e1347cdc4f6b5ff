//! A frontend: one address and port where a Service port is reachable, and everything either
//! dataplane (IPVS + helper nftables table, or pure nftables) needs to serve it.

use ipnet::IpNet;

use super::cluster::{ServiceName, ServicePortName, TrafficPolicy};
use super::types::{Protocol, RealServerKey, VirtualServer};

/// How a frontend is reached. The order is the precedence when two Services claim the same
/// address and port: a ClusterIP always beats an externalIP that copies it (CVE-2020-8554).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalIp,
}

impl FrontendKind {
    /// Whether the address must be bound on `ferry-ipvs0`; NodePorts use the node's own.
    pub fn binds_address(self) -> bool {
        self != FrontendKind::NodePort
    }

    /// Whether traffic arrives from outside the cluster (subject to `externalTrafficPolicy`).
    pub fn is_external(self) -> bool {
        self != FrontendKind::ClusterIp
    }
}

/// Which connections to a frontend get their source address rewritten to the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Masquerade {
    /// Every connection (external frontends with `externalTrafficPolicy: Cluster`).
    Always,
    /// Connections from outside the configured cluster CIDRs (ClusterIPs).
    FromOutsideCluster,
    /// None: the client address is preserved (`externalTrafficPolicy: Local`).
    Never,
}

/// What a new connection to a frontend without real servers gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoEndpoints {
    /// The Service has no usable endpoint at all: fail fast (ICMP unreachable / TCP reset).
    Reject,
    /// The Service has endpoints, but none on this node and the policy is Local.
    Drop,
}

/// One desired virtual server, with the Service port it serves and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub service: ServicePortName,
    pub kind: FrontendKind,
    /// Scheduler, persistence and the chosen real servers (weight 1 each).
    pub server: VirtualServer,
    /// The policy that chose the real servers (internal for ClusterIPs, external otherwise).
    pub traffic_policy: TrafficPolicy,
    pub masquerade: Masquerade,
    /// Allowed client sources (LoadBalancer frontends only); empty allows all.
    pub source_ranges: Vec<IpNet>,
    /// `Some` exactly when `server.real_servers` is empty.
    pub no_endpoints: Option<NoEndpoints>,
}

impl Frontend {
    /// Precedence among frontends claiming the same virtual server: lower wins.
    pub(crate) fn precedence(&self) -> (FrontendKind, &ServicePortName) {
        (self.kind, &self.service)
    }
}

/// The health check that load balancers probe on a `externalTrafficPolicy: Local` Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub service: ServiceName,
    pub node_port: u16,
    /// Endpoints on this node that external traffic may use: 200 when > 0, 503 otherwise.
    pub local_endpoints: usize,
}

/// A local endpoint that may reach itself through its Service: such connections must be
/// masqueraded, or the pod would see a reply from itself to itself and drop it.
/// Matched as (destination address, protocol, destination port, source address = destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HairpinEndpoint {
    pub protocol: Protocol,
    pub endpoint: RealServerKey,
}
