//! Builders that read like the cluster, and a renderer that reads like `ipvsadm -Ln`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeStatus,
    Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::input::{
    SCHEDULER_ANNOTATION, SERVICE_NAME_LABEL, endpoint_slice_info, node_info, service_info,
};
use crate::model::{
    Desired, FrontendKind, ModelConfig, NoEndpoints, NodeContext, Snapshot, desired,
};

pub const THIS_NODE: &str = "node-a";
pub const OTHER_NODE: &str = "node-b";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// A ClusterIP Service; `build` adds addresses, ports and policies.
pub fn service(namespace: &str, name: &str, build: impl FnOnce(&mut ServiceBuilder)) -> Service {
    let mut builder = ServiceBuilder(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    });
    build(&mut builder);
    builder.0
}

pub struct ServiceBuilder(pub Service);

impl ServiceBuilder {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.get_or_insert_with(ServiceSpec::default)
    }

    pub fn cluster_ip(&mut self, ip: &str) -> &mut Self {
        let spec = self.spec();
        spec.cluster_ip.get_or_insert_with(|| ip.into());
        spec.cluster_ips
            .get_or_insert_with(Vec::new)
            .push(ip.into());
        self
    }

    pub fn port(&mut self, name: &str, protocol: &str, port: i32) -> &mut Self {
        self.spec()
            .ports
            .get_or_insert_with(Vec::new)
            .push(ServicePort {
                name: Some(name.into()),
                protocol: Some(protocol.into()),
                port,
                ..ServicePort::default()
            });
        self
    }

    pub fn tcp(&mut self, name: &str, port: i32) -> &mut Self {
        self.port(name, "TCP", port)
    }

    pub fn udp(&mut self, name: &str, port: i32) -> &mut Self {
        self.port(name, "UDP", port)
    }

    /// Makes it a NodePort Service (unless already a LoadBalancer) with `node_port` on the
    /// last port added.
    pub fn node_port(&mut self, node_port: i32) -> &mut Self {
        let spec = self.spec();
        if spec.type_.as_deref() != Some("LoadBalancer") {
            spec.type_ = Some("NodePort".into());
        }
        if let Some(port) = spec.ports.as_mut().and_then(|p| p.last_mut()) {
            port.node_port = Some(node_port);
        }
        self
    }

    /// Makes it a LoadBalancer Service with this ingress IP in its status.
    pub fn load_balancer(&mut self, ingress_ip: &str) -> &mut Self {
        self.ingress(ingress_ip, None)
    }

    pub fn ingress(&mut self, ip: &str, ip_mode: Option<&str>) -> &mut Self {
        self.spec().type_ = Some("LoadBalancer".into());
        let status = self.0.status.get_or_insert_with(ServiceStatus::default);
        let lb = status
            .load_balancer
            .get_or_insert_with(LoadBalancerStatus::default);
        lb.ingress
            .get_or_insert_with(Vec::new)
            .push(LoadBalancerIngress {
                ip: Some(ip.into()),
                ip_mode: ip_mode.map(Into::into),
                ..LoadBalancerIngress::default()
            });
        self
    }

    pub fn external_ip(&mut self, ip: &str) -> &mut Self {
        self.spec()
            .external_ips
            .get_or_insert_with(Vec::new)
            .push(ip.into());
        self
    }

    pub fn source_range(&mut self, cidr: &str) -> &mut Self {
        let ranges = self
            .spec()
            .load_balancer_source_ranges
            .get_or_insert_with(Vec::new);
        ranges.push(cidr.into());
        self
    }

    /// ClientIP affinity; `None` leaves the timeout to the default.
    pub fn affinity(&mut self, timeout_seconds: Option<i32>) -> &mut Self {
        let spec = self.spec();
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig { timeout_seconds }),
        });
        self
    }

    pub fn external_local(&mut self, health_check_node_port: Option<i32>) -> &mut Self {
        let spec = self.spec();
        spec.external_traffic_policy = Some("Local".into());
        spec.health_check_node_port = health_check_node_port;
        self
    }

    pub fn internal_local(&mut self) -> &mut Self {
        self.spec().internal_traffic_policy = Some("Local".into());
        self
    }

    pub fn headless(&mut self) -> &mut Self {
        self.spec().cluster_ip = Some("None".into());
        self.spec().cluster_ips = Some(vec!["None".into()]);
        self
    }

    pub fn external_name(&mut self, name: &str) -> &mut Self {
        self.spec().type_ = Some("ExternalName".into());
        self.spec().external_name = Some(name.into());
        self
    }

    pub fn label(&mut self, key: &str, value: &str) -> &mut Self {
        let labels = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(key.into(), value.into());
        self
    }

    pub fn scheduler(&mut self, name: &str) -> &mut Self {
        let annotations = self
            .0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(SCHEDULER_ANNOTATION.into(), name.into());
        self
    }
}

/// An EndpointSlice of `service`, IPv4 unless `build` says otherwise.
pub fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    build: impl FnOnce(&mut SliceBuilder),
) -> EndpointSlice {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.into(),
        service.into(),
    )]));
    let mut builder = SliceBuilder(EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: None,
    });
    build(&mut builder);
    builder.0
}

pub struct SliceBuilder(pub EndpointSlice);

impl SliceBuilder {
    pub fn ipv6(&mut self) -> &mut Self {
        self.0.address_type = "IPv6".into();
        self
    }

    pub fn port(&mut self, name: &str, protocol: &str, port: i32) -> &mut Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(EndpointPort {
                name: Some(name.into()),
                protocol: Some(protocol.into()),
                port: Some(port),
                app_protocol: None,
            });
        self
    }

    pub fn tcp(&mut self, name: &str, port: i32) -> &mut Self {
        self.port(name, "TCP", port)
    }

    pub fn udp(&mut self, name: &str, port: i32) -> &mut Self {
        self.port(name, "UDP", port)
    }

    fn endpoint(&mut self, address: &str, node: &str, conditions: [bool; 3]) -> &mut Self {
        let [ready, serving, terminating] = conditions;
        self.0.endpoints.push(Endpoint {
            addresses: vec![address.into()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: Some(node.into()),
            ..Endpoint::default()
        });
        self
    }

    pub fn ready(&mut self, address: &str, node: &str) -> &mut Self {
        self.endpoint(address, node, [true, true, false])
    }

    /// Running but failing its readiness probe.
    pub fn not_ready(&mut self, address: &str, node: &str) -> &mut Self {
        self.endpoint(address, node, [false, false, false])
    }

    /// Shutting down and still passing its readiness probe.
    pub fn terminating_serving(&mut self, address: &str, node: &str) -> &mut Self {
        self.endpoint(address, node, [false, true, true])
    }

    /// Shutting down and no longer passing its readiness probe.
    pub fn terminating_not_serving(&mut self, address: &str, node: &str) -> &mut Self {
        self.endpoint(address, node, [false, false, true])
    }
}

/// A Node with the given InternalIPs and ExternalIPs.
pub fn node(name: &str, internal: &[&str], external: &[&str]) -> Node {
    let address = |kind: &str, ip: &str| NodeAddress {
        address: ip.into(),
        type_: kind.into(),
    };
    let addresses = internal
        .iter()
        .map(|ip| address("InternalIP", ip))
        .chain(external.iter().map(|ip| address("ExternalIP", ip)))
        .chain([NodeAddress {
            address: name.into(),
            type_: "Hostname".into(),
        }])
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(addresses),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// The node the tests run as: dual stack, with a public address.
pub fn this_node() -> Node {
    node(
        THIS_NODE,
        &["192.168.1.10", "fd00:192:168:1::10"],
        &["203.0.113.10"],
    )
}

pub fn default_config() -> ModelConfig {
    ModelConfig {
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().expect("CIDR"),
            "fd00:10:244::/56".parse().expect("CIDR"),
        ],
        ..ModelConfig::default()
    }
}

/// The snapshot a watcher would hold: objects the input layer refuses are left out.
pub fn snapshot(services: &[Service], slices: &[EndpointSlice]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for converted in services.iter().filter_map(|s| service_info(s).ok()) {
        snapshot.upsert_service(converted.value);
    }
    for converted in slices.iter().filter_map(|s| endpoint_slice_info(s).ok()) {
        snapshot.upsert_slice(converted.value);
    }
    snapshot
}

#[track_caller]
pub fn context(node: &Node, config: &ModelConfig) -> NodeContext {
    let node = node_info(node).expect("test node converts").value;
    NodeContext::new(&node, config)
}

/// The model on this node with the default config.
#[track_caller]
pub fn model(services: &[Service], slices: &[EndpointSlice]) -> Desired {
    model_with(services, slices, &default_config())
}

#[track_caller]
pub fn model_with(services: &[Service], slices: &[EndpointSlice], config: &ModelConfig) -> Desired {
    desired(&snapshot(services, slices), &context(&this_node(), config))
}

/// One line per virtual server: `TCP/10.96.0.10:80 cluster-ip ns/web:http -> 10.244.1.5:8080`,
/// or `-> reject` / `-> drop` when it has no real server.
pub fn render(desired: &Desired) -> Vec<String> {
    desired
        .virtual_servers()
        .iter()
        .map(|(key, frontend)| {
            let kind = match frontend.kind {
                FrontendKind::ClusterIp => "cluster-ip",
                FrontendKind::NodePort => "node-port",
                FrontendKind::LoadBalancer => "load-balancer",
                FrontendKind::ExternalIp => "external-ip",
            };
            let backends = match frontend.no_endpoints {
                Some(NoEndpoints::Reject) => "reject".to_owned(),
                Some(NoEndpoints::Drop) => "drop".to_owned(),
                None => {
                    let servers = frontend.server.real_servers.keys();
                    servers
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            };
            format!("{key} {kind} {} -> {backends}", frontend.service)
        })
        .collect()
}

/// A table case: the cluster, and the virtual servers this node should have.
pub struct Case {
    pub name: &'static str,
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub want: &'static [&'static str],
}

#[track_caller]
pub fn check_all(cases: Vec<Case>) {
    for case in cases {
        let got = render(&model(&case.services, &case.slices));
        assert_eq!(got, case.want, "case {:?}", case.name);
    }
}
