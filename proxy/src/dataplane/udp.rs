//! UDP conntrack cleanup, shared by both modes.
//!
//! The IPVS diff emits the cleanups itself, from the kernel's real servers. The nftables mode
//! has no such state to read back, so it compares the UDP frontends of the previous and the
//! new desired state by the same rules (see `diff`): a removed backend loses its flows, a
//! frontend that goes away or goes from no endpoints to some loses all of its flows.

use std::collections::{BTreeMap, BTreeSet};

use tracing::debug;

use super::conntrack_failure;
use crate::conntrack::Conntrack;
use crate::diff::Op;
use crate::metrics::Metrics;
use crate::model::Desired;
use crate::model::types::{Protocol, RealServerKey, VirtualServerKey};

/// Each UDP frontend with the endpoints new flows may reach.
pub(super) type UdpFrontends = BTreeMap<VirtualServerKey, BTreeSet<RealServerKey>>;

pub(super) fn udp_frontends(desired: &Desired) -> UdpFrontends {
    desired
        .virtual_servers()
        .iter()
        .filter(|(key, _)| key.protocol == Protocol::Udp)
        .map(|(key, frontend)| {
            let serving = frontend.server.real_servers.iter().filter(|(_, w)| **w > 0);
            (*key, serving.map(|(endpoint, _)| *endpoint).collect())
        })
        .collect()
}

/// The cleanups that going from `before` to `after` calls for.
pub(super) fn cleanups(before: &UdpFrontends, after: &UdpFrontends) -> Vec<Op> {
    let mut ops = Vec::new();
    for (frontend, old) in before {
        match after.get(frontend) {
            None => ops.push(Op::DeleteConntrackToFrontend {
                frontend: *frontend,
            }),
            Some(new) => {
                ops.extend(
                    old.difference(new)
                        .map(|backend| Op::DeleteConntrackToBackend {
                            frontend: *frontend,
                            backend: *backend,
                        }),
                )
            }
        }
    }
    for (frontend, new) in after {
        let was_serving = before.get(frontend).is_some_and(|old| !old.is_empty());
        if !was_serving && !new.is_empty() {
            ops.push(Op::DeleteConntrackToFrontend {
                frontend: *frontend,
            });
        }
    }
    ops
}

/// Runs a conntrack op; returns whether it succeeded. Other ops are not conntrack's.
pub(super) async fn clean(conntrack: &impl Conntrack, op: &Op, metrics: &Metrics) -> bool {
    let deleted = match *op {
        Op::DeleteConntrackToBackend { frontend, backend } => {
            conntrack
                .delete_udp_flows_to_backend(frontend, backend)
                .await
        }
        Op::DeleteConntrackToFrontend { frontend } => {
            conntrack.delete_udp_flows_to_frontend(frontend).await
        }
        _ => return false,
    };
    match deleted {
        Ok(flows) => {
            debug!(?op, flows, "deleted stale UDP flows");
            true
        }
        Err(error) => {
            conntrack_failure(metrics, &error);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend(port: u16) -> VirtualServerKey {
        VirtualServerKey {
            protocol: Protocol::Udp,
            address: "10.96.0.10".parse().unwrap(),
            port,
        }
    }

    fn backend(last: u8) -> RealServerKey {
        RealServerKey {
            address: format!("10.244.1.{last}").parse().unwrap(),
            port: 5353,
        }
    }

    fn frontends(entries: &[(u16, &[u8])]) -> UdpFrontends {
        entries
            .iter()
            .map(|(port, backends)| {
                (
                    frontend(*port),
                    backends.iter().map(|b| backend(*b)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_rules_match_the_ipvs_diff() {
        let before = frontends(&[(53, &[1, 2]), (54, &[]), (55, &[3])]);
        let after = frontends(&[(53, &[2]), (54, &[4]), (56, &[5]), (57, &[])]);
        assert_eq!(
            cleanups(&before, &after),
            [
                Op::DeleteConntrackToBackend {
                    frontend: frontend(53),
                    backend: backend(1)
                },
                Op::DeleteConntrackToFrontend {
                    frontend: frontend(55)
                },
                Op::DeleteConntrackToFrontend {
                    frontend: frontend(54)
                },
                Op::DeleteConntrackToFrontend {
                    frontend: frontend(56)
                },
            ]
        );
        assert!(cleanups(&after, &after).is_empty());
    }
}
