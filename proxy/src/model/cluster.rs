//! The cluster as the model sees it: validated plain values, no Kubernetes types.
//!
//! `input` produces these from API objects; everything downstream works on them only, so the
//! model can be tested and benchmarked without building API objects.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::types::{Protocol, Scheduler};

/// A Service's identity: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: `namespace/name:port-name` (the port name may be empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: ServiceName,
    pub port: String,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// Which endpoints a class of frontends may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrafficPolicy {
    /// Any ready endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on this node; the client's source address is preserved.
    Local,
}

/// A Service Ferry proxies, with every setting that shapes its frontends.
///
/// Kept per Service rather than per port: the change tracker works per Service, and the
/// settings below are the same for all of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: ServiceName,
    /// One per IP family (dual stack has two); the families the Service is served in.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`, only those of the Service's families.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` except `ipMode: Proxy`, only the Service's families.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerClass`: which implementation assigns (and announces) those IPs.
    pub load_balancer_class: Option<String>,
    /// `spec.loadBalancerSourceRanges`; empty allows every source.
    pub source_ranges: Vec<IpNet>,
    pub ports: Vec<ServicePort>,
    pub scheduler: Scheduler,
    /// ClientIP session affinity and its timeout.
    pub affinity_timeout: Option<Duration>,
    /// Applies to NodePort, LoadBalancer and external IP frontends.
    pub external_traffic_policy: TrafficPolicy,
    /// Applies to ClusterIP frontends.
    pub internal_traffic_policy: TrafficPolicy,
    /// Set only with `externalTrafficPolicy: Local` on a LoadBalancer Service.
    pub health_check_node_port: Option<u16>,
}

impl ServiceInfo {
    pub fn port_name(&self, port: &ServicePort) -> ServicePortName {
        ServicePortName {
            service: self.name.clone(),
            port: port.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// An EndpointSlice's identity (slices are named independently of their Service).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceName {
    pub namespace: String,
    pub name: String,
}

/// An EndpointSlice of an IPv4 or IPv6 address type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSliceInfo {
    pub name: SliceName,
    /// From the `kubernetes.io/service-name` label.
    pub service: ServiceName,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<Endpoint>,
}

/// A port of a slice; matched to a Service port by name and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint of a slice (its port comes from the slice's ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    pub conditions: EndpointConditions,
    pub node_name: Option<String>,
    pub zone: Option<String>,
}

/// The EndpointSlice conditions, with the API's defaults for absent ones already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl EndpointConditions {
    pub const READY: Self = Self {
        ready: true,
        serving: true,
        terminating: false,
    };

    /// Rank used to keep the better copy of an endpoint listed by two slices.
    pub(crate) fn rank(self) -> u8 {
        u8::from(self.ready) * 2 + u8::from(self.serving)
    }
}

/// This node, as far as the model cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub addresses: Vec<NodeAddress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddress {
    pub address: IpAddr,
    pub kind: NodeAddressKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAddressKind {
    InternalIp,
    ExternalIp,
}
