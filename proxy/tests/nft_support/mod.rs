//! Fixtures for the nftables tests, reading like the cluster.
//!
//! Address plan: pods 10.244.0.0/16 (this node's 10.244.1.0/24, the other node's
//! 10.244.2.0/24) and fd00:10:244::/48; Services 10.96.0.0/12 and fd00:10:96::/112; this node
//! 192.168.50.10 and fd00:50::10, the other 192.168.50.11; clients outside the cluster
//! 192.168.60.0/24. Real-kernel tests use these only inside namespaces they create.

#![allow(dead_code)] // Each test crate uses a different part of the fixtures.

use std::net::IpAddr;
use std::time::Duration;

use ferry_proxy::model::types::{Protocol, RealServerKey, Scheduler};
use ferry_proxy::model::{
    Desired, Endpoint, EndpointConditions, EndpointSliceInfo, ModelConfig, NodeAddress,
    NodeAddressKind, NodeContext, NodeInfo, ServiceInfo, ServiceName, ServicePort, SliceName,
    SlicePort, Snapshot, TrafficPolicy, desired,
};
use ferry_proxy::nft::Ruleset;
use ferry_proxy::nft::tracer::{Origin, Outcome, Packet, Path, Tracer};
use ipnet::IpNet;

pub const THIS_NODE: &str = "node-a";
pub const OTHER_NODE: &str = "node-b";
pub const NODE_IP: &str = "192.168.50.10";
pub const NODE_IP6: &str = "fd00:50::10";
pub const CLUSTER_CIDRS: [&str; 2] = ["10.244.0.0/16", "fd00:10:244::/48"];

#[track_caller]
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[track_caller]
pub fn net(text: &str) -> IpNet {
    text.parse().expect("test network")
}

#[track_caller]
pub fn endpoint(text: &str, port: u16) -> RealServerKey {
    RealServerKey {
        address: ip(text),
        port,
    }
}

/// A ClusterIP Service with no ports yet; `build` fills in the rest.
pub fn service(namespace: &str, name: &str, build: impl FnOnce(&mut ServiceInfo)) -> ServiceInfo {
    let mut service = ServiceInfo {
        name: ServiceName::new(namespace, name),
        cluster_ips: Vec::new(),
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        load_balancer_class: None,
        source_ranges: Vec::new(),
        ports: Vec::new(),
        scheduler: Scheduler::default(),
        affinity_timeout: None,
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
    };
    build(&mut service);
    service
}

pub fn port(name: &str, protocol: Protocol, port: u16, node_port: Option<u16>) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port,
        node_port,
    }
}

pub fn affinity(seconds: u64) -> Option<Duration> {
    Some(Duration::from_secs(seconds))
}

/// A slice of `service` with one port and endpoints as (address, node, ready).
pub fn slice(
    service: &ServiceInfo,
    suffix: &str,
    slice_port: (&str, Protocol, u16),
    endpoints: &[(&str, &str, bool)],
) -> EndpointSliceInfo {
    let (name, protocol, port) = slice_port;
    EndpointSliceInfo {
        name: SliceName {
            namespace: service.name.namespace.clone(),
            name: format!("{}-{suffix}", service.name.name),
        },
        service: service.name.clone(),
        ports: vec![SlicePort {
            name: name.into(),
            protocol,
            port,
        }],
        endpoints: endpoints
            .iter()
            .map(|(address, node, ready)| Endpoint {
                address: ip(address),
                conditions: if *ready {
                    EndpointConditions::READY
                } else {
                    EndpointConditions {
                        ready: false,
                        serving: false,
                        terminating: true,
                    }
                },
                node_name: Some((*node).into()),
                zone: None,
            })
            .collect(),
    }
}

/// This node and the objects of the cluster.
pub struct Cluster {
    pub snapshot: Snapshot,
    pub config: ModelConfig,
    pub node: NodeInfo,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            snapshot: Snapshot::default(),
            config: ModelConfig {
                node_port_addresses: None,
                cluster_cidrs: CLUSTER_CIDRS.iter().map(|c| net(c)).collect(),
                masquerade_all: false,
            },
            node: NodeInfo {
                name: THIS_NODE.into(),
                addresses: [NODE_IP, NODE_IP6]
                    .iter()
                    .map(|a| NodeAddress {
                        address: ip(a),
                        kind: NodeAddressKind::InternalIp,
                    })
                    .collect(),
            },
        }
    }
}

impl Cluster {
    pub fn with(mut self, service: ServiceInfo, slices: Vec<EndpointSliceInfo>) -> Self {
        self.snapshot.upsert_service(service);
        for slice in slices {
            self.snapshot.upsert_slice(slice);
        }
        self
    }

    pub fn desired(&self) -> Desired {
        desired(&self.snapshot, &NodeContext::new(&self.node, &self.config))
    }

    pub fn ruleset(&self) -> Ruleset {
        ferry_proxy::nft::build(&self.desired(), &self.config.cluster_cidrs)
    }
}

/// A connection's first packet, arriving on an interface unless `from_node`.
pub fn packet(source: &str, destination: &str, protocol: Protocol, port: u16) -> Packet {
    Packet {
        source: ip(source),
        destination: ip(destination),
        protocol,
        port,
        origin: Origin::Interface,
    }
}

pub fn from_node(mut packet: Packet) -> Packet {
    packet.origin = Origin::Node;
    packet
}

/// A tracer on this node: connections to its addresses are delivered locally.
pub fn tracer(ruleset: &Ruleset) -> Tracer<'_> {
    Tracer::new(ruleset).with_local_addresses([ip(NODE_IP), ip(NODE_IP6)])
}

#[track_caller]
pub fn outcome(ruleset: &Ruleset, packet: Packet) -> Outcome {
    traced(&tracer(ruleset), packet)
}

#[track_caller]
pub fn traced(tracer: &Tracer<'_>, packet: Packet) -> Outcome {
    tracer
        .trace(&packet)
        .unwrap_or_else(|e| panic!("trace of {packet:?} failed: {e}"))
}

/// What a connection no service rule touches experiences.
pub fn untouched() -> Outcome {
    Outcome::Accept(Path::default())
}

/// A web Service 10.96.0.10:80/TCP with two ready endpoints, one on this node.
pub fn web(build: impl FnOnce(&mut ServiceInfo)) -> Cluster {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10")];
        s.ports = vec![port("http", Protocol::Tcp, 80, None)];
        build(s);
    });
    let endpoints = slice(
        &web,
        "a",
        ("http", Protocol::Tcp, 8080),
        &[
            ("10.244.1.5", THIS_NODE, true),
            ("10.244.2.7", OTHER_NODE, true),
        ],
    );
    Cluster::default().with(web, vec![endpoints])
}
