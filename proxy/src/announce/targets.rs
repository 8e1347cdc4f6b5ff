//! The addresses to announce, from the Services and EndpointSlices the proxy already holds.

use std::collections::BTreeSet;

use super::election::{Eligible, Targets};
use crate::model::{ServiceInfo, Snapshot, TrafficPolicy};

/// The `spec.loadBalancerClass` of Services served by Ferry's LoadBalancerPools (the operator
/// defines it; the proxy does not depend on the operator crate).
pub const FERRY_LOAD_BALANCER_CLASS: &str = "ferry.dev/pool";

/// The LoadBalancer IPs of the Services Ferry's pools serve (class `ferry.dev/pool`, or no
/// class, which default pools take), with the nodes that may answer for each. Another
/// implementation's addresses are served by the dataplane but announced by that
/// implementation.
pub fn targets(snapshot: &Snapshot) -> Targets {
    let mut targets = Targets::new();
    let ours = snapshot.services().filter(|s| is_ferrys(s));
    for service in ours.filter(|s| !s.load_balancer_ips.is_empty()) {
        let eligible = match service.external_traffic_policy {
            TrafficPolicy::Cluster => Eligible::AnyNode,
            TrafficPolicy::Local => Eligible::NodesWithEndpoints(endpoint_nodes(snapshot, service)),
        };
        for address in &service.load_balancer_ips {
            let merged = match targets.remove(address) {
                Some(earlier) => earlier.merge(eligible.clone()),
                None => eligible.clone(),
            };
            targets.insert(*address, merged);
        }
    }
    targets
}

fn is_ferrys(service: &ServiceInfo) -> bool {
    service
        .load_balancer_class
        .as_deref()
        .is_none_or(|class| class == FERRY_LOAD_BALANCER_CLASS)
}

/// Nodes holding a ready endpoint of the Service.
fn endpoint_nodes(snapshot: &Snapshot, service: &ServiceInfo) -> BTreeSet<String> {
    snapshot
        .slices_of(&service.name)
        .flat_map(|slice| &slice.endpoints)
        .filter(|endpoint| endpoint.conditions.ready)
        .filter_map(|endpoint| endpoint.node_name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::types::{Protocol, Scheduler};
    use crate::model::{
        Endpoint, EndpointConditions, EndpointSliceInfo, ServiceName, ServicePort, SliceName,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn load_balancer(
        name: &str,
        address: &str,
        build: impl FnOnce(&mut ServiceInfo),
    ) -> ServiceInfo {
        let mut service = ServiceInfo {
            name: ServiceName::new("default", name),
            cluster_ips: vec![ip("10.96.0.10")],
            external_ips: vec![],
            load_balancer_ips: vec![ip(address)],
            load_balancer_class: None,
            source_ranges: vec![],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080),
            }],
            scheduler: Scheduler::RoundRobin,
            affinity_timeout: None,
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: None,
        };
        build(&mut service);
        service
    }

    fn slice(service: &str, endpoints: &[(&str, &str, bool)]) -> EndpointSliceInfo {
        EndpointSliceInfo {
            name: SliceName {
                namespace: "default".into(),
                name: format!("{service}-abc"),
            },
            service: ServiceName::new("default", service),
            ports: vec![],
            endpoints: endpoints
                .iter()
                .map(|(address, node, ready)| Endpoint {
                    address: ip(address),
                    conditions: EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::READY
                    },
                    node_name: Some((*node).into()),
                    zone: None,
                })
                .collect(),
        }
    }

    fn nodes(list: &[&str]) -> Eligible {
        Eligible::NodesWithEndpoints(list.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn ferrys_classes_are_announced_and_others_are_not() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_service(load_balancer("unclassed", "192.0.2.1", |_| {}));
        snapshot.upsert_service(load_balancer("ours", "192.0.2.2", |s| {
            s.load_balancer_class = Some(FERRY_LOAD_BALANCER_CLASS.into());
        }));
        snapshot.upsert_service(load_balancer("theirs", "192.0.2.3", |s| {
            s.load_balancer_class = Some("example.com/lb".into());
        }));
        let targets = targets(&snapshot);
        assert_eq!(
            targets,
            Targets::from([
                (ip("192.0.2.1"), Eligible::AnyNode),
                (ip("192.0.2.2"), Eligible::AnyNode),
            ])
        );
    }

    #[test]
    fn a_local_policy_lists_the_nodes_with_ready_endpoints() {
        let mut snapshot = Snapshot::default();
        snapshot.upsert_service(load_balancer("web", "192.0.2.1", |s| {
            s.external_traffic_policy = TrafficPolicy::Local;
        }));
        snapshot.upsert_slice(slice(
            "web",
            &[
                ("10.244.1.5", "node-a", true),
                ("10.244.2.5", "node-b", false),
                ("10.244.3.5", "node-c", true),
            ],
        ));
        let targets = targets(&snapshot);
        assert_eq!(targets[&ip("192.0.2.1")], nodes(&["node-a", "node-c"]));
    }

    #[test]
    fn services_sharing_an_address_are_merged() {
        let mut snapshot = Snapshot::default();
        let local = |s: &mut ServiceInfo| s.external_traffic_policy = TrafficPolicy::Local;
        snapshot.upsert_service(load_balancer("dns-tcp", "192.0.2.53", local));
        snapshot.upsert_service(load_balancer("dns-udp", "192.0.2.53", local));
        snapshot.upsert_slice(slice("dns-tcp", &[("10.244.1.5", "node-a", true)]));
        snapshot.upsert_slice(slice("dns-udp", &[("10.244.2.5", "node-b", true)]));
        let targets = targets(&snapshot);
        assert_eq!(targets[&ip("192.0.2.53")], nodes(&["node-a", "node-b"]));
    }
}
