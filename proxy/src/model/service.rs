//! One Service's share of the dataplane, built without looking at any other Service.
//!
//! This independence is what makes partial syncs cheap: when a Service or one of its slices
//! changes, only [`service_dataplane`] for that Service runs again, and
//! [`Desired::replace_service`](super::Desired::replace_service) swaps the result in.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::cluster::{EndpointSliceInfo, ServiceInfo, ServicePort, TrafficPolicy};
use super::config::NodeContext;
use super::endpoints::PortEndpoints;
use super::frontend::{Frontend, FrontendKind, HairpinEndpoint, HealthCheck, Masquerade};
use super::types::{VirtualServer, VirtualServerKey, VirtualServerParams};

/// Everything one Service contributes to the desired dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDataplane {
    /// Every frontend the Service claims, in a stable order. Claims on the same virtual server
    /// by other Services are settled by [`Desired`](super::Desired).
    pub frontends: Vec<(VirtualServerKey, Frontend)>,
    pub health_check: Option<HealthCheck>,
    pub hairpin: BTreeSet<HairpinEndpoint>,
}

/// Builds the frontends, health check and hairpin endpoints of one Service from its slices.
pub fn service_dataplane(
    service: &ServiceInfo,
    slices: &[&EndpointSliceInfo],
    node: &NodeContext,
) -> ServiceDataplane {
    let params = VirtualServerParams {
        scheduler: service.scheduler,
        persistence: service.affinity_timeout,
    };
    let mut dataplane = ServiceDataplane::default();
    let mut health_check = pending_health_check(service);
    for port in &service.ports {
        let endpoints = PortEndpoints::merge(slices.iter().copied(), port, &node.node_name);
        let builder = PortFrontends {
            service,
            port,
            params: &params,
            endpoints: &endpoints,
            node,
        };
        for (kind, key) in frontend_keys(service, port, node) {
            let frontend = builder.frontend(kind, key.address);
            let local = frontend
                .server
                .real_servers
                .keys()
                .filter(|rs| endpoints.is_local(rs));
            dataplane
                .hairpin
                .extend(local.map(|&endpoint| HairpinEndpoint {
                    protocol: port.protocol,
                    endpoint,
                }));
            dataplane.frontends.push((key, frontend));
        }
        if let Some(check) = &mut health_check {
            check
                .local_endpoints
                .extend(local_endpoints(service, &endpoints));
        }
    }
    dataplane.health_check = health_check.map(|check| HealthCheck {
        service: service.name.clone(),
        node_port: check.node_port,
        local_endpoints: check.local_endpoints.len(),
    });
    dataplane
}

/// A health check being counted: distinct local endpoint addresses over all ports.
struct PendingHealthCheck {
    node_port: u16,
    local_endpoints: BTreeSet<IpAddr>,
}

/// Only `externalTrafficPolicy: Local` Services have one: load balancers use it to skip
/// nodes without local endpoints.
fn pending_health_check(service: &ServiceInfo) -> Option<PendingHealthCheck> {
    let node_port = service.health_check_node_port?;
    (service.external_traffic_policy == TrafficPolicy::Local).then(|| PendingHealthCheck {
        node_port,
        local_endpoints: BTreeSet::new(),
    })
}

/// The endpoints external traffic may use on this node, in every family of the Service.
fn local_endpoints(service: &ServiceInfo, endpoints: &PortEndpoints) -> Vec<IpAddr> {
    service
        .cluster_ips
        .iter()
        .flat_map(|&family| {
            endpoints
                .select(family, TrafficPolicy::Local)
                .real_servers
                .into_keys()
        })
        .map(|rs| rs.address)
        .collect()
}

/// What every frontend of one Service port shares.
struct PortFrontends<'a> {
    service: &'a ServiceInfo,
    port: &'a ServicePort,
    params: &'a VirtualServerParams,
    endpoints: &'a PortEndpoints,
    node: &'a NodeContext,
}

impl PortFrontends<'_> {
    fn frontend(&self, kind: FrontendKind, address: IpAddr) -> Frontend {
        let traffic_policy = if kind.is_external() {
            self.service.external_traffic_policy
        } else {
            self.service.internal_traffic_policy
        };
        let selection = self.endpoints.select(address, traffic_policy);
        let masquerade = match (kind, traffic_policy) {
            (FrontendKind::ClusterIp, _) => self.node.cluster_ip_masquerade,
            (_, TrafficPolicy::Local) => Masquerade::Never,
            (_, TrafficPolicy::Cluster) => Masquerade::Always,
        };
        let source_ranges = if kind == FrontendKind::LoadBalancer {
            self.service.source_ranges.clone()
        } else {
            Vec::new()
        };
        Frontend {
            service: self.service.port_name(self.port),
            kind,
            server: VirtualServer {
                params: self.params.clone(),
                real_servers: selection.real_servers,
            },
            traffic_policy,
            masquerade,
            source_ranges,
            no_endpoints: selection.no_endpoints,
        }
    }
}

/// Where a Service port is reachable on this node. NodePorts listen only on node addresses of
/// the Service's own families, as a single-stack Service has no endpoints in the other one.
fn frontend_keys(
    service: &ServiceInfo,
    port: &ServicePort,
    node: &NodeContext,
) -> Vec<(FrontendKind, VirtualServerKey)> {
    let at = |kind: FrontendKind, address: IpAddr, number: u16| {
        (
            kind,
            VirtualServerKey {
                protocol: port.protocol,
                address,
                port: number,
            },
        )
    };
    let served_family = |address: &IpAddr| {
        service
            .cluster_ips
            .iter()
            .any(|ip| ip.is_ipv4() == address.is_ipv4())
    };
    let mut keys: Vec<_> = service
        .cluster_ips
        .iter()
        .map(|&ip| at(FrontendKind::ClusterIp, ip, port.port))
        .collect();
    if let Some(node_port) = port.node_port {
        let addresses = node.node_port_addresses.iter().filter(|a| served_family(a));
        keys.extend(addresses.map(|&ip| at(FrontendKind::NodePort, ip, node_port)));
    }
    keys.extend(
        service
            .load_balancer_ips
            .iter()
            .map(|&ip| at(FrontendKind::LoadBalancer, ip, port.port)),
    );
    keys.extend(
        service
            .external_ips
            .iter()
            .map(|&ip| at(FrontendKind::ExternalIp, ip, port.port)),
    );
    keys
}
