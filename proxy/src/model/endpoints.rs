//! Which endpoints a frontend sends traffic to.
//!
//! Endpoints of a Service port are merged from all of the Service's slices, then chosen per
//! frontend by address family and traffic policy with KEP-1669 semantics: ready endpoints;
//! if there are none, endpoints that are serving while terminating (so a rolling update of the
//! last pods drains instead of failing); never not-serving ones.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::cluster::{EndpointConditions, EndpointSliceInfo, ServicePort, TrafficPolicy};
use super::frontend::NoEndpoints;
use super::types::RealServerKey;

/// Every real server gets the same weight: the schedulers balance, weights only drain.
pub const ENDPOINT_WEIGHT: u32 = 1;

#[derive(Debug, Clone, Copy)]
struct Candidate {
    conditions: EndpointConditions,
    local: bool,
}

/// The endpoints of one Service port, merged across slices and de-duplicated.
#[derive(Debug, Default)]
pub(crate) struct PortEndpoints {
    candidates: BTreeMap<RealServerKey, Candidate>,
}

/// The real servers chosen for one frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    pub real_servers: BTreeMap<RealServerKey, u32>,
    pub no_endpoints: Option<NoEndpoints>,
}

impl PortEndpoints {
    /// Collects the endpoints of the slice ports that match `port` by name and protocol.
    /// An endpoint listed twice (slices overlap while the controller moves endpoints) keeps
    /// its best conditions, so the result does not depend on the order of the slices.
    pub fn merge<'a>(
        slices: impl IntoIterator<Item = &'a EndpointSliceInfo>,
        port: &ServicePort,
        node_name: &str,
    ) -> Self {
        let mut merged = Self::default();
        for slice in slices {
            let matching = slice
                .ports
                .iter()
                .filter(|p| p.name == port.name && p.protocol == port.protocol);
            for slice_port in matching {
                for endpoint in &slice.endpoints {
                    let key = RealServerKey {
                        address: endpoint.address,
                        port: slice_port.port,
                    };
                    let candidate = Candidate {
                        conditions: endpoint.conditions,
                        local: endpoint.node_name.as_deref() == Some(node_name),
                    };
                    merged.add(key, candidate);
                }
            }
        }
        merged
    }

    fn add(&mut self, key: RealServerKey, candidate: Candidate) {
        let entry = self.candidates.entry(key).or_insert(candidate);
        if candidate.conditions.rank() > entry.conditions.rank() {
            entry.conditions = candidate.conditions;
        }
        entry.local |= candidate.local;
    }

    /// Chooses the real servers for a frontend on `frontend_address` under `policy`.
    pub fn select(&self, frontend_address: IpAddr, policy: TrafficPolicy) -> Selection {
        let local_only = policy == TrafficPolicy::Local;
        let real_servers = self.usable(frontend_address, local_only);
        let no_endpoints = if !real_servers.is_empty() {
            None
        } else if local_only && !self.usable(frontend_address, false).is_empty() {
            Some(NoEndpoints::Drop)
        } else {
            Some(NoEndpoints::Reject)
        };
        Selection {
            real_servers,
            no_endpoints,
        }
    }

    pub fn is_local(&self, key: &RealServerKey) -> bool {
        self.candidates.get(key).is_some_and(|c| c.local)
    }

    fn usable(&self, frontend_address: IpAddr, local_only: bool) -> BTreeMap<RealServerKey, u32> {
        let eligible = || {
            self.candidates.iter().filter(move |(key, candidate)| {
                key.address.is_ipv4() == frontend_address.is_ipv4()
                    && (candidate.local || !local_only)
            })
        };
        let weighted = |(key, _): (&RealServerKey, &Candidate)| (*key, ENDPOINT_WEIGHT);
        let ready: BTreeMap<_, _> = eligible()
            .filter(|(_, c)| c.conditions.ready)
            .map(weighted)
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        eligible()
            .filter(|(_, c)| c.conditions.serving && c.conditions.terminating)
            .map(weighted)
            .collect()
    }
}
