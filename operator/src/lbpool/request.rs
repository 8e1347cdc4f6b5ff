//! What a Service asks of Ferry: whether Ferry serves it at all, which pool or addresses it
//! wants, whether it may share an address, and which addresses its status holds now.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::addresses::Family;
use super::pools::Pools;
use crate::api::LOAD_BALANCER_CLASS;

/// Asks for a pool by name.
pub const POOL_ANNOTATION: &str = "ferry.dev/pool";
/// Asks for specific addresses: comma-separated, at most one per family.
pub const ADDRESSES_ANNOTATION: &str = "ferry.dev/loadbalancer-ips";
/// Services with the same key may share an address if their ports do not clash.
pub const SHARING_ANNOTATION: &str = "ferry.dev/allow-shared-ip";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A Service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a stored Service (which always has a namespace).
    pub fn of(service: &Service) -> Option<ServiceKey> {
        Some(ServiceKey::new(service.namespace()?, service.name_any()))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The pool and addresses a Service asks for; neither means "any pool that admits it".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wish {
    pub pool: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// Which families a Service wants an address of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Families {
    /// In the order of `spec.ipFamilies`: the status lists addresses in this order.
    pub required: Vec<Family>,
    /// `PreferDualStack`'s second family: assigned when a pool has one free.
    pub optional: Option<Family>,
}

impl Families {
    pub fn all(&self) -> impl Iterator<Item = Family> + '_ {
        self.required.iter().copied().chain(self.optional)
    }
}

/// What decides whether two Services may share an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub key: Option<String>,
    /// The selector of a Service with `externalTrafficPolicy: Local`: in L2 mode the node
    /// that answers for the address must have the Service's endpoints, so Services on one
    /// address must have the same endpoints.
    pub local_backends: Option<String>,
    /// Protocol and port of each Service port.
    pub ports: BTreeSet<(String, i32)>,
}

impl Sharing {
    pub fn allows(&self, other: &Sharing) -> bool {
        self.key.is_some()
            && self.key == other.key
            && self.local_backends == other.local_backends
            && self.ports.is_disjoint(&other.ports)
    }
}

/// A Service Ferry serves.
#[derive(Debug)]
pub struct Claimant<'a> {
    pub key: ServiceKey,
    pub created: Timestamp,
    pub labels: &'a BTreeMap<String, String>,
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// `spec.loadBalancerClass` is Ferry's; otherwise it is unset and only default pools serve it.
    pub sets_class: bool,
    /// `Err` names what in the request cannot be read.
    pub wish: Result<Wish, String>,
    pub sharing: Sharing,
    pub families: Families,
    /// The addresses in `status.loadBalancer.ingress`, in order, without repeats.
    pub held: Vec<IpAddr>,
}

/// How Ferry stands to a Service.
#[derive(Debug)]
pub enum Standing<'a> {
    Served(Claimant<'a>),
    /// Ferry no longer serves it, but its status holds these addresses of Ferry's pools.
    Leaving(ServiceKey, Vec<IpAddr>),
    /// Another implementation's Service lists these addresses of Ferry's pools: Ferry leaves
    /// its status alone and gives the addresses to no one else.
    Foreign(ServiceKey, Vec<IpAddr>),
    Unrelated,
}

impl<'a> Standing<'a> {
    /// How Ferry stands to `service`, given its namespace's labels and the pools.
    pub fn of(
        service: &'a Service,
        namespace_labels: Option<&'a BTreeMap<String, String>>,
        pools: &Pools,
    ) -> Standing<'a> {
        let Some(key) = ServiceKey::of(service) else {
            return Standing::Unrelated;
        };
        let held = held_addresses(service);
        let spec = service.spec.as_ref();
        let wants_load_balancer = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let class = spec.and_then(|s| s.load_balancer_class.as_deref());
        let sets_class = class == Some(LOAD_BALANCER_CLASS);
        let foreign = wants_load_balancer && class.is_some() && !sets_class;
        let served = wants_load_balancer && !foreign && (sets_class || pools.serve_unclassed());
        if let Some(spec) = spec.filter(|_| served) {
            let families = families(spec);
            return Standing::Served(Claimant {
                created: service.creation_timestamp().map_or(Timestamp::MAX, |t| t.0),
                labels: service.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
                namespace_labels: namespace_labels.unwrap_or(&NO_LABELS),
                sets_class,
                wish: wish(service, spec, &families),
                sharing: sharing(service, spec),
                families,
                held,
                key,
            });
        }
        let listed: Vec<IpAddr> = held.into_iter().filter(|a| pools.covers(*a)).collect();
        match (listed.is_empty(), foreign) {
            (true, _) => Standing::Unrelated,
            (false, true) => Standing::Foreign(key, listed),
            (false, false) => Standing::Leaving(key, listed),
        }
    }
}

fn held_addresses(service: &Service) -> Vec<IpAddr> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut held: Vec<IpAddr> = Vec::new();
    for address in ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_ref()?.parse().ok())
    {
        if !held.contains(&address) {
            held.push(address);
        }
    }
    held
}

/// The families `spec.ipFamilies` and `spec.ipFamilyPolicy` ask for. The API server always
/// fills `ipFamilies`; IPv4 stands in when it is empty.
fn families(spec: &ServiceSpec) -> Families {
    let listed: Vec<Family> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|name| Family::from_service_field(name))
        .collect();
    let primary = listed.first().copied().unwrap_or(Family::V4);
    let secondary = listed.get(1).copied();
    match spec.ip_family_policy.as_deref() {
        Some("RequireDualStack") => Families {
            required: [Some(primary), secondary].into_iter().flatten().collect(),
            optional: None,
        },
        Some("PreferDualStack") => Families {
            required: vec![primary],
            optional: secondary,
        },
        _ => Families {
            required: vec![primary],
            optional: None,
        },
    }
}

fn annotation<'a>(service: &'a Service, name: &str) -> Option<&'a str> {
    service
        .annotations()
        .get(name)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

/// The requested pool and addresses. `spec.loadBalancerIP` (deprecated) is honoured; with
/// the annotation too, it must be one of the annotation's addresses.
fn wish(service: &Service, spec: &ServiceSpec, families: &Families) -> Result<Wish, String> {
    let parse = |text: &str, source: &str| {
        text.trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("{source}: {text:?} is not an IP address"))
    };
    let legacy = spec
        .load_balancer_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .map(|ip| parse(ip, "spec.loadBalancerIP"))
        .transpose()?;
    let addresses = match annotation(service, ADDRESSES_ANNOTATION) {
        Some(list) => {
            let addresses = list
                .split(',')
                .map(|ip| parse(ip, ADDRESSES_ANNOTATION))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(legacy) = legacy.filter(|ip| !addresses.contains(ip)) {
                return Err(format!(
                    "spec.loadBalancerIP {legacy} is not among {ADDRESSES_ANNOTATION} {list:?}"
                ));
            }
            addresses
        }
        None => legacy.into_iter().collect(),
    };
    let mut seen = BTreeSet::new();
    for address in &addresses {
        let family = Family::of(*address);
        if !seen.insert(family) {
            return Err(format!("more than one {family} address is requested"));
        }
        if !families.all().any(|f| f == family) {
            return Err(format!(
                "{address} is {family}, which the Service's ipFamilies and ipFamilyPolicy leave out"
            ));
        }
    }
    Ok(Wish {
        pool: annotation(service, POOL_ANNOTATION).map(str::to_owned),
        addresses,
    })
}

fn sharing(service: &Service, spec: &ServiceSpec) -> Sharing {
    let local = spec.external_traffic_policy.as_deref() == Some("Local");
    let selector = || {
        let pairs: Vec<String> = spec
            .selector
            .iter()
            .flatten()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        pairs.join(",")
    };
    Sharing {
        key: annotation(service, SHARING_ANNOTATION).map(str::to_owned),
        local_backends: local.then(selector),
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(spec: serde_json::Value, annotations: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": { "namespace": "shop", "name": "web", "annotations": annotations },
            "spec": spec,
        }))
        .expect("a Service")
    }

    fn standing(service: &Service) -> Standing<'_> {
        Standing::of(service, None, &Pools::read(&[]))
    }

    fn claimant(spec: serde_json::Value, annotations: serde_json::Value) -> (Wish, Families) {
        let service = service(spec, annotations);
        match standing(&service) {
            Standing::Served(claimant) => {
                (claimant.wish.expect("a readable wish"), claimant.families)
            }
            other => panic!("not served: {other:?}"),
        }
    }

    fn refusal(spec: serde_json::Value, annotations: serde_json::Value) -> String {
        let service = service(spec, annotations);
        match standing(&service) {
            Standing::Served(claimant) => claimant.wish.expect_err("an unreadable wish"),
            other => panic!("not served: {other:?}"),
        }
    }

    const OURS: &str = "ferry.dev/pool";

    #[test]
    fn annotations_and_the_legacy_field_make_the_wish() {
        let (wish, _) = claimant(
            json!({ "type": "LoadBalancer", "loadBalancerClass": OURS, "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack" }),
            json!({ "ferry.dev/loadbalancer-ips": "192.0.2.7, 2001:db8::7", "ferry.dev/pool": "edge" }),
        );
        assert_eq!(
            wish,
            Wish {
                pool: Some("edge".into()),
                addresses: vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            }
        );
        let (legacy, _) = claimant(
            json!({ "type": "LoadBalancer", "loadBalancerClass": OURS, "loadBalancerIP": "192.0.2.9" }),
            json!({}),
        );
        assert_eq!(legacy.addresses, ["192.0.2.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn contradictory_or_impossible_requests_are_explained() {
        let lb = json!({ "type": "LoadBalancer", "loadBalancerClass": OURS, "loadBalancerIP": "192.0.2.9" });
        assert_eq!(
            refusal(lb, json!({ "ferry.dev/loadbalancer-ips": "192.0.2.7" })),
            "spec.loadBalancerIP 192.0.2.9 is not among ferry.dev/loadbalancer-ips \"192.0.2.7\""
        );
        let single = json!({ "type": "LoadBalancer", "loadBalancerClass": OURS });
        assert_eq!(
            refusal(
                single.clone(),
                json!({ "ferry.dev/loadbalancer-ips": "192.0.2.7,192.0.2.8" })
            ),
            "more than one IPv4 address is requested"
        );
        assert_eq!(
            refusal(
                single.clone(),
                json!({ "ferry.dev/loadbalancer-ips": "2001:db8::1" })
            ),
            "2001:db8::1 is IPv6, which the Service's ipFamilies and ipFamilyPolicy leave out"
        );
        assert_eq!(
            refusal(single, json!({ "ferry.dev/loadbalancer-ips": "web" })),
            "ferry.dev/loadbalancer-ips: \"web\" is not an IP address"
        );
    }

    #[test]
    fn the_family_policy_decides_required_and_optional_families() {
        let families = |policy: &str| {
            let spec = json!({ "type": "LoadBalancer", "loadBalancerClass": OURS, "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": policy });
            claimant(spec, json!({})).1
        };
        assert_eq!(families("SingleStack").required, [Family::V6]);
        assert_eq!(
            families("PreferDualStack"),
            Families {
                required: vec![Family::V6],
                optional: Some(Family::V4)
            }
        );
        assert_eq!(
            families("RequireDualStack").required,
            [Family::V6, Family::V4]
        );
    }

    #[test]
    fn other_classes_are_foreign_and_former_load_balancers_leave() {
        let held = json!({ "loadBalancer": { "ingress": [{ "ip": "192.0.2.1" }] } });
        let mut other = service(
            json!({ "type": "LoadBalancer", "loadBalancerClass": "example.com/lb" }),
            json!({}),
        );
        other.status = serde_json::from_value(json!(held)).ok();
        let mut former = service(json!({ "type": "ClusterIP" }), json!({}));
        former.status = serde_json::from_value(json!(held)).ok();
        let pools = Pools::read(&[serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": { "name": "p" }, "spec": { "addresses": ["192.0.2.0/24"] },
        }))
        .expect("a pool")]);
        assert!(matches!(
            Standing::of(&other, None, &pools),
            Standing::Foreign(..)
        ));
        assert!(matches!(
            Standing::of(&former, None, &pools),
            Standing::Leaving(_, addresses) if addresses == ["192.0.2.1".parse::<IpAddr>().unwrap()]
        ));
        assert!(
            matches!(standing(&former), Standing::Unrelated),
            "an address outside every pool is not Ferry's"
        );
    }

    #[test]
    fn sharing_needs_one_key_the_same_local_backends_and_distinct_ports() {
        let sharing = |key: Option<&str>, local: Option<&str>, ports: &[(&str, i32)]| Sharing {
            key: key.map(str::to_owned),
            local_backends: local.map(str::to_owned),
            ports: ports.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        };
        let dns_udp = sharing(Some("dns"), None, &[("UDP", 53)]);
        assert!(dns_udp.allows(&sharing(Some("dns"), None, &[("TCP", 53)])));
        assert!(!dns_udp.allows(&sharing(Some("dns"), None, &[("UDP", 53)])));
        assert!(!dns_udp.allows(&sharing(Some("web"), None, &[("TCP", 80)])));
        assert!(!dns_udp.allows(&sharing(None, None, &[("TCP", 80)])));
        assert!(!dns_udp.allows(&sharing(Some("dns"), Some("app=dns"), &[("TCP", 53)])));
        assert!(!sharing(None, None, &[]).allows(&sharing(None, None, &[])));
    }
}
