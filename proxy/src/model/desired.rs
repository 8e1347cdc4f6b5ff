//! The desired dataplane: the union of every Service's share, with conflicts settled.
//!
//! # Partial syncs
//! A full build is [`desired`]. A change tracker that knows which Services changed since the
//! last sync (a Service object, or any slice labelled with its name, see
//! [`Snapshot::upsert_slice`]) keeps the previous `Desired` and calls
//! [`Desired::update_service`] for each of them instead: the cost is that of the changed
//! Services, not of the cluster. A change to the Node or to the [`ModelConfig`] changes every
//! Service's frontends, so it needs a full build. Both paths run the same code, and a test
//! checks that they agree.
//!
//! [`ModelConfig`]: super::ModelConfig

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::cluster::ServiceName;
use super::config::NodeContext;
use super::frontend::{Frontend, HairpinEndpoint, HealthCheck, NoEndpoints};
use super::service::{ServiceDataplane, service_dataplane};
use super::snapshot::Snapshot;
use super::types::{Protocol, VirtualServerKey};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    virtual_servers: BTreeMap<VirtualServerKey, Frontend>,
    /// Claims that lost to a frontend of higher precedence on the same virtual server, kept so
    /// they take over when the winner goes away. Empty unless Services collide.
    shadowed: BTreeMap<VirtualServerKey, Vec<Frontend>>,
    services: BTreeMap<ServiceName, ServiceExtras>,
}

/// What a Service contributed besides its frontends, and which keys it claimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ServiceExtras {
    claimed: Vec<VirtualServerKey>,
    health_check: Option<HealthCheck>,
    hairpin: BTreeSet<HairpinEndpoint>,
}

/// Builds the whole desired dataplane.
pub fn desired(snapshot: &Snapshot, node: &NodeContext) -> Desired {
    let mut desired = Desired::default();
    for service in snapshot.services() {
        desired.update_service(snapshot, &service.name, node);
    }
    desired
}

impl Desired {
    /// Rebuilds one Service's share from the snapshot; removes it if the Service is gone.
    pub fn update_service(&mut self, snapshot: &Snapshot, name: &ServiceName, node: &NodeContext) {
        let dataplane = snapshot.service(name).map(|service| {
            let slices: Vec<_> = snapshot.slices_of(name).collect();
            service_dataplane(service, &slices, node)
        });
        self.replace_service(name, dataplane);
    }

    /// Replaces the share of Service `name` with `dataplane` (built for that Service), or
    /// removes it.
    pub fn replace_service(&mut self, name: &ServiceName, dataplane: Option<ServiceDataplane>) {
        if let Some(previous) = self.services.remove(name) {
            for key in &previous.claimed {
                self.release(key, name);
            }
        }
        let Some(dataplane) = dataplane else { return };
        let mut extras = ServiceExtras {
            claimed: Vec::with_capacity(dataplane.frontends.len()),
            health_check: dataplane.health_check,
            hairpin: dataplane.hairpin,
        };
        for (key, frontend) in dataplane.frontends {
            extras.claimed.push(key);
            self.claim(key, frontend);
        }
        self.services.insert(name.clone(), extras);
    }

    fn claim(&mut self, key: VirtualServerKey, frontend: Frontend) {
        match self.virtual_servers.entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(frontend);
            }
            Entry::Occupied(mut holder) => {
                let loser = if frontend.precedence() < holder.get().precedence() {
                    holder.insert(frontend)
                } else {
                    frontend
                };
                let shadowed = self.shadowed.entry(key).or_default();
                shadowed.push(loser);
                shadowed.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
            }
        }
    }

    fn release(&mut self, key: &VirtualServerKey, service: &ServiceName) {
        let mut shadowed = self.shadowed.remove(key).unwrap_or_default();
        shadowed.retain(|f| f.service.service != *service);
        let holder_released = self
            .virtual_servers
            .get(key)
            .is_some_and(|f| f.service.service == *service);
        if holder_released {
            if shadowed.is_empty() {
                self.virtual_servers.remove(key);
            } else {
                self.virtual_servers.insert(*key, shadowed.remove(0));
            }
        }
        if !shadowed.is_empty() {
            self.shadowed.insert(*key, shadowed);
        }
    }

    /// The virtual servers to program, each with the Service port it serves and how.
    pub fn virtual_servers(&self) -> &BTreeMap<VirtualServerKey, Frontend> {
        &self.virtual_servers
    }

    /// Addresses to bind on `ferry-ipvs0`: ClusterIPs, LoadBalancer and external IPs.
    pub fn bound_addresses(&self) -> BTreeSet<IpAddr> {
        self.virtual_servers
            .iter()
            .filter(|(_, f)| f.kind.binds_address())
            .map(|(key, _)| key.address)
            .collect()
    }

    /// UDP frontends: their conntrack entries outlive backend changes and need cleaning.
    pub fn udp_frontends(&self) -> impl Iterator<Item = &VirtualServerKey> {
        self.virtual_servers
            .keys()
            .filter(|key| key.protocol == Protocol::Udp)
    }

    /// Frontends that accept only some client sources (`loadBalancerSourceRanges`).
    pub fn source_ranges(&self) -> impl Iterator<Item = (&VirtualServerKey, &[IpNet])> {
        self.virtual_servers
            .iter()
            .filter(|(_, f)| !f.source_ranges.is_empty())
            .map(|(key, f)| (key, f.source_ranges.as_slice()))
    }

    /// Frontends whose new connections must be dropped: a Local policy and no endpoint on
    /// this node, while other nodes have some (the load balancer's health check steers away).
    pub fn dropped_frontends(&self) -> impl Iterator<Item = &VirtualServerKey> {
        self.virtual_servers
            .iter()
            .filter(|(_, f)| f.no_endpoints == Some(NoEndpoints::Drop))
            .map(|(key, _)| key)
    }

    /// Health checks to serve, one per `externalTrafficPolicy: Local` Service with a port.
    pub fn health_checks(&self) -> impl Iterator<Item = &HealthCheck> {
        self.services
            .values()
            .filter_map(|s| s.health_check.as_ref())
    }

    /// Local endpoints that may reach themselves through a Service (masqueraded).
    pub fn hairpin_endpoints(&self) -> BTreeSet<HairpinEndpoint> {
        self.services
            .values()
            .flat_map(|s| s.hairpin.iter().copied())
            .collect()
    }

    /// Claims that lost a collision, for a warning: another Service serves that address and
    /// port.
    pub fn conflicts(&self) -> impl Iterator<Item = (&VirtualServerKey, &Frontend)> {
        self.shadowed
            .iter()
            .flat_map(|(key, losers)| losers.iter().map(move |f| (key, f)))
    }
}
