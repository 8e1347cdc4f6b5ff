//! Service → [`ServiceInfo`].

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::parse::{address, bounded, cidr, keep_valid, namespaced_name, port_number, protocol};
use super::{Converted, Ignored, InputError, MAX_ADDRESSES, MAX_SERVICE_PORTS, Skip};
use crate::model::cluster::{ServiceInfo, ServiceName, ServicePort, TrafficPolicy};
use crate::model::types::Scheduler;

/// Services with this label belong to another proxy (kube-proxy honours it the same way).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Chooses the IPVS scheduler of a Service.
pub const SCHEDULER_ANNOTATION: &str = "ferry.dev/ipvs-scheduler";

/// The API's default for `sessionAffinityConfig.clientIP.timeoutSeconds`, and its maximum.
const DEFAULT_AFFINITY_SECONDS: u64 = 10_800;
const MAX_AFFINITY_SECONDS: i32 = 86_400;

pub fn service_info(service: &Service) -> Result<Converted<ServiceInfo>, Skip> {
    let (namespace, name) = namespaced_name(&service.metadata)?;
    if let Some(proxy) = service
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SERVICE_PROXY_NAME_LABEL))
    {
        return Err(Skip::Ignored(Ignored::OtherProxy(proxy.clone())));
    }
    let spec = service.spec.as_ref().ok_or(InputError::NoUsablePorts)?;
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if service_type == "ExternalName" {
        return Err(Skip::Ignored(Ignored::ExternalName));
    }
    let exposes_node_ports = matches!(service_type, "NodePort" | "LoadBalancer");
    let is_load_balancer = service_type == "LoadBalancer";

    let mut warnings = Vec::new();
    let cluster_ips = cluster_ips(spec, &mut warnings)?;
    let in_families = FamilyFilter(&cluster_ips);
    let ports = ports(spec, exposes_node_ports, &mut warnings)?;
    let external_ips = keep_valid(
        bounded(
            "spec.externalIPs",
            spec.external_ips.as_ref(),
            MAX_ADDRESSES,
        )?,
        |value| in_families.check("spec.externalIPs", address("spec.externalIPs", value)?),
        &mut warnings,
    );
    let source_ranges = source_ranges(spec, &mut warnings)?;
    let load_balancer_ips = if !is_load_balancer {
        Vec::new()
    } else if source_ranges.is_none() {
        warnings.push(InputError::NoValidSourceRange);
        Vec::new()
    } else {
        load_balancer_ips(service, &in_families, &mut warnings)?
    };
    let external_traffic_policy = traffic_policy(spec.external_traffic_policy.as_deref());
    let value = ServiceInfo {
        name: ServiceName { namespace, name },
        cluster_ips,
        external_ips,
        load_balancer_ips,
        load_balancer_class: spec.load_balancer_class.clone(),
        source_ranges: source_ranges.unwrap_or_default(),
        ports,
        scheduler: scheduler(service, &mut warnings),
        affinity_timeout: affinity_timeout(spec, &mut warnings),
        external_traffic_policy,
        internal_traffic_policy: traffic_policy(spec.internal_traffic_policy.as_deref()),
        health_check_node_port: health_check_node_port(spec, is_load_balancer, &mut warnings),
    };
    Ok(Converted { value, warnings })
}

/// The Service's families are those of its cluster IPs; other addresses must be of one.
struct FamilyFilter<'a>(&'a [IpAddr]);

impl FamilyFilter<'_> {
    fn check(&self, field: &'static str, address: IpAddr) -> Result<IpAddr, InputError> {
        if self.0.iter().any(|ip| ip.is_ipv4() == address.is_ipv4()) {
            Ok(address)
        } else {
            Err(InputError::WrongFamily { field, address })
        }
    }
}

fn cluster_ips(spec: &ServiceSpec, warnings: &mut Vec<InputError>) -> Result<Vec<IpAddr>, Skip> {
    const FIELD: &str = "spec.clusterIPs";
    let listed = bounded(FIELD, spec.cluster_ips.as_ref(), MAX_ADDRESSES)?;
    let values: Vec<&String> = if listed.is_empty() {
        spec.cluster_ip.iter().collect()
    } else {
        listed.iter().collect()
    };
    if values.first().is_some_and(|ip| ip.as_str() == "None") {
        return Err(Skip::Ignored(Ignored::Headless));
    }
    let mut ips = keep_valid(values, |value| address(FIELD, value), warnings);
    // One address per family: a second one of the same family is meaningless to the API.
    let mut seen_v4 = false;
    let mut seen_v6 = false;
    ips.retain(|ip| {
        let seen = if ip.is_ipv4() {
            &mut seen_v4
        } else {
            &mut seen_v6
        };
        !std::mem::replace(seen, true)
    });
    if ips.is_empty() {
        return Err(InputError::NoClusterIp.into());
    }
    Ok(ips)
}

fn ports(
    spec: &ServiceSpec,
    exposes_node_ports: bool,
    warnings: &mut Vec<InputError>,
) -> Result<Vec<ServicePort>, InputError> {
    let listed = bounded("spec.ports", spec.ports.as_ref(), MAX_SERVICE_PORTS)?;
    let ports: Vec<ServicePort> = listed
        .iter()
        .filter_map(|port| {
            service_port(port, exposes_node_ports)
                .map_err(|e| warnings.push(e))
                .ok()
        })
        .collect();
    if ports.is_empty() {
        return Err(InputError::NoUsablePorts);
    }
    Ok(ports)
}

fn service_port(
    port: &k8s_openapi::api::core::v1::ServicePort,
    exposes_node_ports: bool,
) -> Result<ServicePort, InputError> {
    let node_port = port
        .node_port
        .filter(|_| exposes_node_ports)
        .map(|number| port_number("spec.ports[].nodePort", number))
        .transpose()?;
    Ok(ServicePort {
        name: port.name.clone().unwrap_or_default(),
        protocol: protocol("spec.ports[].protocol", port.protocol.as_deref())?,
        port: port_number("spec.ports[].port", port.port)?,
        node_port,
    })
}

/// `None` when ranges were given but none is valid: serving the LoadBalancer IPs then would
/// open them to every source, so they are not served at all.
fn source_ranges(
    spec: &ServiceSpec,
    warnings: &mut Vec<InputError>,
) -> Result<Option<Vec<IpNet>>, InputError> {
    const FIELD: &str = "spec.loadBalancerSourceRanges";
    let listed = bounded(
        FIELD,
        spec.load_balancer_source_ranges.as_ref(),
        MAX_ADDRESSES,
    )?;
    let mut ranges = keep_valid(listed, |value| cidr(FIELD, value), warnings);
    ranges.sort();
    ranges.dedup();
    Ok((listed.is_empty() || !ranges.is_empty()).then_some(ranges))
}

/// Ingress IPs the load balancer delivers with the IP as destination (`ipMode` VIP or unset);
/// with `ipMode: Proxy` it delivers to the NodePort, so the IP must not be captured here.
fn load_balancer_ips(
    service: &Service,
    in_families: &FamilyFilter,
    warnings: &mut Vec<InputError>,
) -> Result<Vec<IpAddr>, InputError> {
    const FIELD: &str = "status.loadBalancer.ingress[].ip";
    let ingress = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let ingress = bounded("status.loadBalancer.ingress", ingress, MAX_ADDRESSES)?;
    let delivered_to_vip = ingress
        .iter()
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_ref());
    let mut ips = keep_valid(
        delivered_to_vip,
        |value| in_families.check(FIELD, address(FIELD, value)?),
        warnings,
    );
    ips.sort();
    ips.dedup();
    Ok(ips)
}

fn traffic_policy(value: Option<&str>) -> TrafficPolicy {
    match value {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    }
}

fn scheduler(service: &Service, warnings: &mut Vec<InputError>) -> Scheduler {
    let annotations = service.metadata.annotations.as_ref();
    let Some(name) = annotations.and_then(|a| a.get(SCHEDULER_ANNOTATION)) else {
        return Scheduler::default();
    };
    Scheduler::from_kernel_name(name.trim()).unwrap_or_else(|| {
        warnings.push(InputError::UnknownScheduler(name.clone()));
        Scheduler::default()
    })
}

fn affinity_timeout(spec: &ServiceSpec, warnings: &mut Vec<InputError>) -> Option<Duration> {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let configured = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    let seconds = match configured {
        None => DEFAULT_AFFINITY_SECONDS,
        Some(seconds @ 1..=MAX_AFFINITY_SECONDS) => seconds.unsigned_abs().into(),
        Some(invalid) => {
            warnings.push(InputError::AffinityTimeout(invalid));
            DEFAULT_AFFINITY_SECONDS
        }
    };
    Some(Duration::from_secs(seconds))
}

fn health_check_node_port(
    spec: &ServiceSpec,
    is_load_balancer: bool,
    warnings: &mut Vec<InputError>,
) -> Option<u16> {
    let local = traffic_policy(spec.external_traffic_policy.as_deref()) == TrafficPolicy::Local;
    let number = spec
        .health_check_node_port
        .filter(|_| is_load_balancer && local)?;
    port_number("spec.healthCheckNodePort", number)
        .map_err(|e| warnings.push(e))
        .ok()
}
