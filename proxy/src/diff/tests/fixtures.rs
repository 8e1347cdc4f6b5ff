//! Kernel states and desired dataplanes written the way `ipvsadm -Ln` shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::diff::{DiffConfig, Ownership};
use crate::model::types::{
    KernelRealServer, KernelState, KernelVirtualServer, Protocol, RealServerKey, Scheduler,
    VirtualServer, VirtualServerKey, VirtualServerParams,
};
use crate::model::{
    Desired, Frontend, FrontendKind, Masquerade, NoEndpoints, ServiceDataplane, ServiceName,
    ServicePortName, TrafficPolicy,
};

pub const NODE_ADDRESS: &str = "192.168.1.10";

/// `TCP/10.96.0.10:80`
#[track_caller]
pub fn vs(text: &str) -> VirtualServerKey {
    let (protocol, rest) = text.split_once('/').expect("PROTO/ADDR:PORT");
    let (address, port) = rest.rsplit_once(':').expect("ADDR:PORT");
    VirtualServerKey {
        protocol: match protocol {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => panic!("unknown protocol {other}"),
        },
        address: address.parse().expect("address"),
        port: port.parse().expect("port"),
    }
}

/// `10.244.1.5:8080`
#[track_caller]
pub fn rs(text: &str) -> RealServerKey {
    let (address, port) = text.rsplit_once(':').expect("ADDR:PORT");
    RealServerKey {
        address: address.parse().expect("address"),
        port: port.parse().expect("port"),
    }
}

pub fn round_robin() -> VirtualServerParams {
    VirtualServerParams {
        scheduler: Scheduler::RoundRobin,
        persistence: None,
    }
}

/// A frontend of its own Service (named after the key), so frontends never collide.
pub fn frontend(key: VirtualServerKey, kind: FrontendKind, server: VirtualServer) -> Frontend {
    let no_endpoints = server
        .real_servers
        .is_empty()
        .then_some(NoEndpoints::Reject);
    Frontend {
        service: ServicePortName {
            service: ServiceName::new("test", key.to_string()),
            port: String::new(),
        },
        kind,
        server,
        traffic_policy: TrafficPolicy::Cluster,
        masquerade: Masquerade::Always,
        source_ranges: Vec::new(),
        no_endpoints,
    }
}

pub fn desired_of(frontends: impl IntoIterator<Item = (VirtualServerKey, Frontend)>) -> Desired {
    let mut desired = Desired::default();
    for (key, frontend) in frontends {
        let name = frontend.service.service.clone();
        let dataplane = ServiceDataplane {
            frontends: vec![(key, frontend)],
            ..ServiceDataplane::default()
        };
        desired.replace_service(&name, Some(dataplane));
    }
    desired
}

/// A desired dataplane from `(key, kind, real servers)`, every real server at weight 1.
#[track_caller]
pub fn desired(servers: &[(&str, FrontendKind, &[&str])]) -> Desired {
    desired_of(servers.iter().map(|(key, kind, backends)| {
        let server = VirtualServer {
            params: round_robin(),
            real_servers: backends.iter().map(|b| (rs(b), 1)).collect(),
        };
        (vs(key), frontend(vs(key), *kind, server))
    }))
}

/// A real server as the kernel reports it: `(address:port, weight, active, inactive)`.
pub type KernelRs<'a> = (&'a str, u32, u32, u32);

/// A kernel state from `(key, real servers)` and the addresses on `ferry-ipvs0`.
#[track_caller]
pub fn kernel(servers: &[(&str, &[KernelRs])], bound: &[&str]) -> KernelState {
    let virtual_servers = servers
        .iter()
        .map(|(key, backends)| {
            let real_servers: BTreeMap<_, _> = backends
                .iter()
                .map(|&(backend, weight, active, inactive)| {
                    let counters = KernelRealServer {
                        weight,
                        active_connections: active,
                        inactive_connections: inactive,
                        masquerade: true,
                    };
                    (rs(backend), counters)
                })
                .collect();
            let server = KernelVirtualServer {
                params: Some(round_robin()),
                real_servers,
            };
            (vs(key), server)
        })
        .collect();
    KernelState {
        virtual_servers,
        bound_addresses: bound.iter().map(|a| a.parse().expect("address")).collect(),
    }
}

pub fn config() -> DiffConfig {
    DiffConfig {
        grace_period: Duration::from_secs(30),
        ownership: Ownership {
            node_port_addresses: BTreeSet::from([NODE_ADDRESS.parse().expect("address")]),
            ..Ownership::default()
        },
    }
}

/// One line per op, e.g. `add-rs TCP/10.96.0.10:80 10.244.1.5:8080 w1`.
pub fn render(ops: &[crate::diff::Op]) -> Vec<String> {
    use crate::diff::Op;
    ops.iter()
        .map(|op| match op {
            Op::AddVirtualServer { key, .. } => format!("add-vs {key}"),
            Op::UpdateVirtualServer { key, .. } => format!("update-vs {key}"),
            Op::DeleteVirtualServer { key } => format!("delete-vs {key}"),
            Op::AddRealServer {
                key,
                real_server,
                weight,
            } => {
                format!("add-rs {key} {real_server} w{weight}")
            }
            Op::UpdateRealServer {
                key,
                real_server,
                weight,
            } => {
                format!("update-rs {key} {real_server} w{weight}")
            }
            Op::DeleteRealServer { key, real_server } => format!("delete-rs {key} {real_server}"),
            Op::BindAddress { address } => format!("bind {address}"),
            Op::UnbindAddress { address } => format!("unbind {address}"),
            Op::DeleteConntrackToBackend { frontend, backend } => {
                format!("conntrack {frontend} -> {backend}")
            }
            Op::DeleteConntrackToFrontend { frontend } => format!("conntrack {frontend}"),
        })
        .collect()
}
