//! The diff itself: current kernel state × desired dataplane → ordered ops.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::graceful::GracefulState;
use super::op::Op;
use super::ownership::DiffConfig;
use crate::model::Desired;
use crate::model::types::{
    KernelRealServer, KernelState, KernelVirtualServer, Protocol, RealServerKey, VirtualServer,
    VirtualServerKey,
};

/// The ops that take the kernel from `current` to `desired`, and the next graceful state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub ops: Vec<Op>,
    pub graceful: GracefulState,
}

/// Compares the kernel with the desired dataplane.
///
/// The ops come in this order: virtual servers created or updated, each followed by its real
/// servers; then addresses bound (a bound address without its virtual server would answer
/// with a reset); then virtual servers deleted; then addresses unbound; then conntrack
/// cleanups (after the IPVS change, or new entries would follow the old state).
pub fn diff(
    current: &KernelState,
    desired: &Desired,
    graceful: &GracefulState,
    now: Instant,
    config: &DiffConfig,
) -> Diff {
    let mut plan = Plan::new(graceful, now, config.grace_period);
    for (key, frontend) in desired.virtual_servers() {
        plan.reconcile(key, current.virtual_servers.get(key), &frontend.server);
    }
    let wanted = desired.virtual_servers();
    let addresses = desired.bound_addresses();
    let unwanted = current
        .virtual_servers
        .keys()
        .filter(|key| !wanted.contains_key(key));
    for key in unwanted {
        // An address Ferry is about to bind is Ferry's too: judging ownership on it now
        // keeps a second diff empty.
        let on_dummy =
            current.bound_addresses.contains(&key.address) || addresses.contains(&key.address);
        if config.ownership.owns(key, on_dummy) {
            plan.deletes.push(Op::DeleteVirtualServer { key: *key });
            if key.protocol == Protocol::Udp {
                plan.conntrack
                    .push(Op::DeleteConntrackToFrontend { frontend: *key });
            }
        }
    }
    plan.binds.extend(
        addresses
            .difference(&current.bound_addresses)
            .map(|&address| Op::BindAddress { address }),
    );
    plan.unbinds.extend(
        current
            .bound_addresses
            .difference(&addresses)
            .map(|&address| Op::UnbindAddress { address }),
    );
    plan.finish()
}

/// The ops so far, by phase, and the graceful state being built.
struct Plan<'a> {
    previous: &'a GracefulState,
    now: Instant,
    grace_period: Duration,
    servers: Vec<Op>,
    binds: Vec<Op>,
    deletes: Vec<Op>,
    unbinds: Vec<Op>,
    conntrack: Vec<Op>,
    graceful: GracefulState,
}

impl<'a> Plan<'a> {
    fn new(previous: &'a GracefulState, now: Instant, grace_period: Duration) -> Self {
        Self {
            previous,
            now,
            grace_period,
            servers: Vec::new(),
            binds: Vec::new(),
            deletes: Vec::new(),
            unbinds: Vec::new(),
            conntrack: Vec::new(),
            graceful: GracefulState::default(),
        }
    }

    fn finish(self) -> Diff {
        let phases = [
            self.servers,
            self.binds,
            self.deletes,
            self.unbinds,
            self.conntrack,
        ];
        Diff {
            ops: phases.into_iter().flatten().collect(),
            graceful: self.graceful,
        }
    }

    /// Brings one virtual server (absent from the kernel when `existing` is `None`) to `wanted`.
    fn reconcile(
        &mut self,
        key: &VirtualServerKey,
        existing: Option<&KernelVirtualServer>,
        wanted: &VirtualServer,
    ) {
        if existing.is_some_and(|existing| matches(existing, wanted)) {
            return;
        }
        let no_real_servers = BTreeMap::new();
        let existing_real_servers = match existing {
            None => {
                self.servers.push(Op::AddVirtualServer {
                    key: *key,
                    params: wanted.params.clone(),
                });
                &no_real_servers
            }
            Some(existing) => {
                if existing.params.as_ref() != Some(&wanted.params) {
                    self.servers.push(Op::UpdateVirtualServer {
                        key: *key,
                        params: wanted.params.clone(),
                    });
                }
                &existing.real_servers
            }
        };
        for (real_server, &weight) in &wanted.real_servers {
            let op = match existing_real_servers.get(real_server) {
                None => Op::AddRealServer {
                    key: *key,
                    real_server: *real_server,
                    weight,
                },
                Some(kernel) if kernel.weight != weight || !kernel.masquerade => {
                    Op::UpdateRealServer {
                        key: *key,
                        real_server: *real_server,
                        weight,
                    }
                }
                Some(_) => continue,
            };
            self.servers.push(op);
        }
        for (real_server, kernel) in existing_real_servers {
            if !wanted.real_servers.contains_key(real_server) {
                self.retire(key, real_server, kernel);
            }
        }
        let was_serving = existing_real_servers.values().any(|rs| rs.weight > 0);
        if key.protocol == Protocol::Udp && !was_serving && !wanted.real_servers.is_empty() {
            self.conntrack
                .push(Op::DeleteConntrackToFrontend { frontend: *key });
        }
    }

    /// Removes a real server that is no longer wanted: UDP at once (conntrack is its only
    /// state), TCP/SCTP after draining.
    fn retire(
        &mut self,
        key: &VirtualServerKey,
        real_server: &RealServerKey,
        kernel: &KernelRealServer,
    ) {
        let delete = Op::DeleteRealServer {
            key: *key,
            real_server: *real_server,
        };
        if key.protocol == Protocol::Udp {
            self.servers.push(delete);
            self.conntrack.push(Op::DeleteConntrackToBackend {
                frontend: *key,
                backend: *real_server,
            });
            return;
        }
        let started = self.previous.started(key, real_server).unwrap_or(self.now);
        let expired = self.now.saturating_duration_since(started) >= self.grace_period;
        if !kernel.has_connections() || expired {
            self.servers.push(delete);
            return;
        }
        if kernel.weight != 0 {
            self.servers.push(Op::UpdateRealServer {
                key: *key,
                real_server: *real_server,
                weight: 0,
            });
        }
        self.graceful.insert(*key, *real_server, started);
    }
}

/// Whether the kernel already has exactly `wanted`: the common case, checked in one linear
/// pass so a resync of an unchanged cluster stays cheap.
fn matches(existing: &KernelVirtualServer, wanted: &VirtualServer) -> bool {
    let as_wanted = existing
        .real_servers
        .iter()
        .map(|(rs, kernel)| (rs, kernel.masquerade.then_some(kernel.weight)));
    existing.params.as_ref() == Some(&wanted.params)
        && as_wanted.eq(wanted.real_servers.iter().map(|(rs, w)| (rs, Some(*w))))
}
