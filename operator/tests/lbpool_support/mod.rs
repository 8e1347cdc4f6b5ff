//! Fixtures for the allocator tests, written the way the cluster reads.
//!
//! Address plan: pools use the documentation ranges only — 192.0.2.0/24 (TEST-NET-1),
//! 198.51.100.0/24 (TEST-NET-2) and 2001:db8::/32. Services live in namespace `shop`, are
//! `type: LoadBalancer` with Ferry's class and one port TCP/80 unless a test says otherwise.
//! Ages are seconds after `T0`: `created(0)` is older than `created(5)`.
#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferry_operator::api::{LOAD_BALANCER_CLASS, LoadBalancerPool, LoadBalancerPoolSpec};
use ferry_operator::lbpool::{
    ADDRESSES_ANNOTATION, Assignments, Outcome, POOL_ANNOTATION, Problem, SHARING_ANNOTATION,
    ServiceKey, allocate,
};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Namespace, Service, ServicePort, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

pub const NAMESPACE: &str = "shop";

pub fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant"))
}

fn labels(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_owned(), value.to_owned())])
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(key, value)),
        match_expressions: None,
    }
}

/// A valid, auto-assigning, non-default pool created at `T0`.
pub fn pool(name: &str, addresses: &[&str]) -> LoadBalancerPool {
    let mut pool = LoadBalancerPool::new(
        name,
        LoadBalancerPoolSpec {
            addresses: addresses.iter().map(ToString::to_string).collect(),
            avoid_buggy_ips: false,
            auto_assign: true,
            default: false,
            service_selector: None,
            namespace_selector: None,
        },
    );
    pool.metadata.creation_timestamp = Some(at(0));
    pool
}

pub trait PoolFixture {
    fn created(self, seconds: i64) -> Self;
    fn avoiding_buggy_ips(self) -> Self;
    fn manual(self) -> Self;
    fn default_pool(self) -> Self;
    fn for_services(self, key: &str, value: &str) -> Self;
    fn for_namespaces(self, key: &str, value: &str) -> Self;
}

impl PoolFixture for LoadBalancerPool {
    fn created(mut self, seconds: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(seconds));
        self
    }

    fn avoiding_buggy_ips(mut self) -> Self {
        self.spec.avoid_buggy_ips = true;
        self
    }

    /// `autoAssign: false`.
    fn manual(mut self) -> Self {
        self.spec.auto_assign = false;
        self
    }

    fn default_pool(mut self) -> Self {
        self.spec.default = true;
        self
    }

    fn for_services(mut self, key: &str, value: &str) -> Self {
        self.spec.service_selector = Some(selector(key, value));
        self
    }

    fn for_namespaces(mut self, key: &str, value: &str) -> Self {
        self.spec.namespace_selector = Some(selector(key, value));
        self
    }
}

/// A Ferry-class LoadBalancer Service `shop/<name>` with port TCP/80, created at `T0`.
pub fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(NAMESPACE.into()),
            name: Some(name.into()),
            creation_timestamp: Some(at(0)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: Some(LOAD_BALANCER_CLASS.into()),
            ip_families: Some(vec!["IPv4".into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![port("TCP", 80)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn port(protocol: &str, number: i32) -> ServicePort {
    ServicePort {
        protocol: Some(protocol.into()),
        port: number,
        ..ServicePort::default()
    }
}

pub trait ServiceFixture {
    fn created(self, seconds: i64) -> Self;
    fn in_namespace(self, namespace: &str) -> Self;
    fn labelled(self, key: &str, value: &str) -> Self;
    fn annotated(self, key: &str, value: &str) -> Self;
    fn requesting(self, addresses: &str) -> Self;
    fn asking_for_pool(self, pool: &str) -> Self;
    fn sharing(self, key: &str) -> Self;
    fn legacy_ip(self, address: &str) -> Self;
    fn unclassed(self) -> Self;
    fn class(self, class: &str) -> Self;
    fn of_type(self, type_: &str) -> Self;
    fn ports(self, ports: &[(&str, i32)]) -> Self;
    fn local_traffic(self, app: &str) -> Self;
    fn families(self, policy: &str, families: &[&str]) -> Self;
    fn holding(self, addresses: &[&str]) -> Self;
}

impl ServiceFixture for Service {
    fn created(mut self, seconds: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(seconds));
        self
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    fn labelled(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    fn requesting(self, addresses: &str) -> Self {
        self.annotated(ADDRESSES_ANNOTATION, addresses)
    }

    fn asking_for_pool(self, pool: &str) -> Self {
        self.annotated(POOL_ANNOTATION, pool)
    }

    fn sharing(self, key: &str) -> Self {
        self.annotated(SHARING_ANNOTATION, key)
    }

    fn legacy_ip(mut self, address: &str) -> Self {
        spec(&mut self).load_balancer_ip = Some(address.into());
        self
    }

    fn unclassed(mut self) -> Self {
        spec(&mut self).load_balancer_class = None;
        self
    }

    fn class(mut self, class: &str) -> Self {
        spec(&mut self).load_balancer_class = Some(class.into());
        self
    }

    fn of_type(mut self, type_: &str) -> Self {
        spec(&mut self).type_ = Some(type_.into());
        self
    }

    fn ports(mut self, ports: &[(&str, i32)]) -> Self {
        spec(&mut self).ports = Some(ports.iter().map(|(p, n)| port(p, *n)).collect());
        self
    }

    fn local_traffic(mut self, app: &str) -> Self {
        let spec = spec(&mut self);
        spec.external_traffic_policy = Some("Local".into());
        spec.selector = Some(labels("app", app));
        self
    }

    fn families(mut self, policy: &str, families: &[&str]) -> Self {
        let spec = spec(&mut self);
        spec.ip_family_policy = Some(policy.into());
        spec.ip_families = Some(families.iter().map(ToString::to_string).collect());
        self
    }

    /// Its status lists these addresses, as Ferry writes them.
    fn holding(mut self, addresses: &[&str]) -> Self {
        let ingress = addresses
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".into()),
                ..LoadBalancerIngress::default()
            })
            .collect();
        self.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(ingress),
            }),
            ..ServiceStatus::default()
        });
        self
    }
}

fn spec(service: &mut Service) -> &mut ServiceSpec {
    service.spec.get_or_insert_default()
}

pub fn namespace(name: &str, label: (&str, &str)) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(label.0, label.1)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub fn key(name: &str) -> ServiceKey {
    ServiceKey::new(NAMESPACE, name)
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

/// The addresses `shop/<name>` should list, as text.
#[track_caller]
pub fn addresses(assignments: &Assignments, name: &str) -> Vec<String> {
    outcome(assignments, name)
        .addresses()
        .map(|a| a.to_string())
        .collect()
}

#[track_caller]
pub fn problem(assignments: &Assignments, name: &str) -> Option<Problem> {
    outcome(assignments, name).problem().cloned()
}

#[track_caller]
pub fn outcome<'a>(assignments: &'a Assignments, name: &str) -> &'a Outcome {
    assignments
        .services
        .get(&key(name))
        .unwrap_or_else(|| panic!("no outcome for shop/{name} in {assignments:#?}"))
}

/// Writes each outcome into the Service's status, as the controller does.
pub fn write_statuses(services: &mut [Service], assignments: &Assignments) {
    for service in services {
        let Some(key) = ServiceKey::of(service) else {
            continue;
        };
        let Some(outcome) = assignments.services.get(&key) else {
            continue;
        };
        let listed: Vec<String> = outcome.addresses().map(|a| a.to_string()).collect();
        let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
        *service = service.clone().holding(&listed);
    }
}

/// Allocates and writes statuses until nothing changes (at most `rounds` times); returns the
/// last assignments.
#[track_caller]
pub fn settle(
    pools: &[LoadBalancerPool],
    services: &mut [Service],
    namespaces: &[Namespace],
    rounds: usize,
) -> Assignments {
    let mut previous = None;
    for _ in 0..rounds {
        let assignments = allocate(pools, &*services, namespaces);
        if previous.as_ref() == Some(&assignments) {
            return assignments;
        }
        write_statuses(services, &assignments);
        previous = Some(assignments);
    }
    panic!("no fixpoint after {rounds} rounds: {previous:#?}");
}
