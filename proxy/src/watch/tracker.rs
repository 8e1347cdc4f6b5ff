//! The change tracker: the model's [`Snapshot`] plus which Services changed since the last
//! sync, over plain values.
//!
//! Like kube-proxy's `ServiceChangeTracker`, it records each changed Service's input as it
//! was before its first change, and compares at drain time: a Service whose changes cancel out
//! (a slice added then removed, an update and its revert) is not reported at all, so it costs
//! a partial sync nothing.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::model::{EndpointSliceInfo, NodeInfo, ServiceInfo, ServiceName, SliceName, Snapshot};

#[derive(Debug, Default)]
pub struct ChangeTracker {
    snapshot: Snapshot,
    node: Option<NodeInfo>,
    pending: BTreeMap<ServiceName, Pending>,
    node_changed: bool,
}

/// A Service changed since the last drain: its input before the first change, and the
/// trigger times of the slice changes since.
#[derive(Debug)]
struct Pending {
    before: ServiceInput,
    triggers: Vec<SystemTime>,
}

/// Everything the model reads for one Service.
#[derive(Debug, PartialEq)]
struct ServiceInput {
    service: Option<ServiceInfo>,
    slices: Vec<EndpointSliceInfo>,
}

impl ServiceInput {
    fn of(snapshot: &Snapshot, name: &ServiceName) -> Self {
        Self {
            service: snapshot.service(name).cloned(),
            slices: snapshot.slices_of(name).cloned().collect(),
        }
    }
}

/// What changed since the last drain.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Services whose input differs from the last drain.
    pub services: Vec<ServiceName>,
    /// The Node changed: every Service's frontends may differ.
    pub node_changed: bool,
    /// `last-change-trigger-time`s of the slice changes behind `services`.
    pub triggers: Vec<SystemTime>,
}

impl ChangeTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn node(&self) -> Option<&NodeInfo> {
        self.node.as_ref()
    }

    /// Whether anything may have changed since the last drain.
    pub fn has_changes(&self) -> bool {
        self.node_changed || !self.pending.is_empty()
    }

    pub fn upsert_service(&mut self, service: ServiceInfo) {
        self.note(&service.name);
        self.snapshot.upsert_service(service);
    }

    pub fn remove_service(&mut self, name: &ServiceName) {
        if self.snapshot.service(name).is_some() {
            self.note(name);
            self.snapshot.remove_service(name);
        }
    }

    /// `trigger` is the slice's `last-change-trigger-time`, for live changes only.
    pub fn upsert_slice(&mut self, slice: EndpointSliceInfo, trigger: Option<SystemTime>) {
        if let Some(previous) = self.snapshot.slice_owner(&slice.name).cloned() {
            self.note(&previous);
        }
        let service = slice.service.clone();
        self.note(&service);
        if !self.snapshot.upsert_slice(slice).is_empty()
            && let (Some(trigger), Some(pending)) = (trigger, self.pending.get_mut(&service))
        {
            pending.triggers.push(trigger);
        }
    }

    pub fn remove_slice(&mut self, name: &SliceName) {
        if let Some(owner) = self.snapshot.slice_owner(name).cloned() {
            self.note(&owner);
            self.snapshot.remove_slice(name);
        }
    }

    pub fn set_node(&mut self, node: Option<NodeInfo>) {
        if self.node != node {
            self.node = node;
            self.node_changed = true;
        }
    }

    /// Reports and forgets the changes since the last drain.
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes {
            node_changed: std::mem::take(&mut self.node_changed),
            ..Changes::default()
        };
        for (name, pending) in std::mem::take(&mut self.pending) {
            if pending.before != ServiceInput::of(&self.snapshot, &name) {
                changes.triggers.extend(pending.triggers);
                changes.services.push(name);
            }
        }
        changes
    }

    /// Records the Service's input before its first change since the last drain.
    fn note(&mut self, name: &ServiceName) {
        if !self.pending.contains_key(name) {
            let before = ServiceInput::of(&self.snapshot, name);
            let pending = Pending {
                before,
                triggers: Vec::new(),
            };
            self.pending.insert(name.clone(), pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::types::{Protocol, Scheduler};
    use crate::model::{Endpoint, EndpointConditions, ServicePort, SlicePort, TrafficPolicy};

    fn web() -> ServiceName {
        ServiceName::new("default", "web")
    }

    fn service(name: &ServiceName, cluster_ip: &str) -> ServiceInfo {
        ServiceInfo {
            name: name.clone(),
            cluster_ips: vec![cluster_ip.parse().unwrap()],
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_class: None,
            source_ranges: vec![],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: None,
            }],
            scheduler: Scheduler::RoundRobin,
            affinity_timeout: None,
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: None,
        }
    }

    fn slice(name: &str, service: &ServiceName, addresses: &[&str]) -> EndpointSliceInfo {
        EndpointSliceInfo {
            name: SliceName {
                namespace: service.namespace.clone(),
                name: name.into(),
            },
            service: service.clone(),
            ports: vec![SlicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
            endpoints: addresses
                .iter()
                .map(|address| Endpoint {
                    address: address.parse().unwrap(),
                    conditions: EndpointConditions::READY,
                    node_name: None,
                    zone: None,
                })
                .collect(),
        }
    }

    fn slice_name(name: &str) -> SliceName {
        SliceName {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_change_is_reported_once() {
        let mut tracker = ChangeTracker::new();
        tracker.upsert_service(service(&web(), "10.96.0.10"));
        assert!(tracker.has_changes());
        assert_eq!(tracker.drain().services, [web()]);
        assert!(!tracker.has_changes());
        assert_eq!(tracker.drain(), Changes::default());
    }

    #[test]
    fn changes_that_cancel_out_vanish() {
        let mut tracker = ChangeTracker::new();
        tracker.upsert_service(service(&web(), "10.96.0.10"));
        tracker.upsert_slice(slice("web-1", &web(), &["10.244.1.2"]), None);
        tracker.drain();

        tracker.upsert_slice(slice("web-2", &web(), &["10.244.2.2"]), None);
        tracker.remove_slice(&slice_name("web-2"));
        tracker.upsert_service(service(&web(), "10.96.0.11"));
        tracker.upsert_service(service(&web(), "10.96.0.10"));
        assert!(tracker.has_changes(), "something happened");
        assert_eq!(tracker.drain(), Changes::default(), "but nothing changed");
    }

    #[test]
    fn a_slice_moving_between_services_changes_both() {
        let api = ServiceName::new("default", "api");
        let mut tracker = ChangeTracker::new();
        tracker.upsert_slice(slice("shared", &web(), &["10.244.1.2"]), None);
        tracker.drain();
        tracker.upsert_slice(slice("shared", &api, &["10.244.1.2"]), None);
        assert_eq!(tracker.drain().services, [api, web()]);
    }

    #[test]
    fn trigger_times_follow_the_changes_they_caused() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let mut tracker = ChangeTracker::new();
        tracker.upsert_slice(slice("web-1", &web(), &["10.244.1.2"]), Some(at));
        assert_eq!(tracker.drain().triggers, [at]);

        let unchanged = slice("web-1", &web(), &["10.244.1.2"]);
        tracker.upsert_slice(unchanged, Some(at + Duration::from_secs(1)));
        assert_eq!(
            tracker.drain(),
            Changes::default(),
            "a resent slice is no change"
        );
    }

    #[test]
    fn removing_what_is_not_there_is_no_change() {
        let mut tracker = ChangeTracker::new();
        tracker.remove_service(&web());
        tracker.remove_slice(&slice_name("web-1"));
        assert!(!tracker.has_changes());
    }

    #[test]
    fn a_node_change_is_reported_once() {
        let node = NodeInfo {
            name: "node-a".into(),
            addresses: vec![],
        };
        let mut tracker = ChangeTracker::new();
        tracker.set_node(Some(node.clone()));
        assert!(tracker.drain().node_changed);
        tracker.set_node(Some(node));
        assert!(!tracker.has_changes());
    }
}
