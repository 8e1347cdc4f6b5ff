//! Who may announce: the Nodes (ready, not excluded from load balancers) and the proxies'
//! heartbeats (Leases), as this proxy has seen them, and what an election result changes for
//! this node. Pure: time comes in as a value.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The label that keeps a node out of external load balancers' backends (a well-known label
/// that cloud load balancers and MetalLB honour too).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// The Node's `Ready` condition is `True`.
    pub ready: bool,
    /// The Node carries [`EXCLUDE_LABEL`].
    pub excluded: bool,
}

/// A proxy's Lease as seen here: the time is this proxy's clock when the renewal was seen, so
/// clock skew between nodes does not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The Lease's `renewTime`, only to tell a renewal from a repeat.
    pub renewed: String,
    pub seen: Instant,
    pub valid_for: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    nodes: BTreeMap<String, NodeStatus>,
    heartbeats: BTreeMap<String, Heartbeat>,
}

impl Peers {
    pub fn set_node(&mut self, name: String, status: NodeStatus) {
        self.nodes.insert(name, status);
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Keeps only the named nodes (after a re-list).
    pub fn retain_nodes(&mut self, listed: &BTreeSet<String>) {
        self.nodes.retain(|name, _| listed.contains(name));
    }

    /// Records a Lease of `node` renewed at `renewed`, seen at `now`: a new renewal restarts
    /// its validity, a repeat (a re-list) does not.
    pub fn saw_heartbeat(
        &mut self,
        node: String,
        renewed: String,
        valid_for: Duration,
        now: Instant,
    ) {
        let repeat = self
            .heartbeats
            .get(&node)
            .is_some_and(|known| known.renewed == renewed && known.valid_for == valid_for);
        if !repeat {
            let heartbeat = Heartbeat {
                renewed,
                seen: now,
                valid_for,
            };
            self.heartbeats.insert(node, heartbeat);
        }
    }

    /// A released (deleted) Lease: the proxy stopped on purpose.
    pub fn remove_heartbeat(&mut self, node: &str) {
        self.heartbeats.remove(node);
    }

    pub fn retain_heartbeats(&mut self, listed: &BTreeSet<String>) {
        self.heartbeats.retain(|node, _| listed.contains(node));
    }

    /// Nodes that are Ready, not excluded, and whose proxy renewed its Lease recently enough.
    pub fn candidates(&self, now: Instant) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|(_, status)| status.ready && !status.excluded)
            .filter(|(name, _)| self.heartbeat_live(name, now))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `node`'s proxy renewed its Lease recently enough, as seen here.
    pub fn heartbeat_live(&self, node: &str, now: Instant) -> bool {
        self.heartbeats
            .get(node)
            .is_some_and(|beat| now < beat.seen + beat.valid_for)
    }
}

/// What this node announces, and what an election changed about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    winners: BTreeMap<IpAddr, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Addresses this node announces from now on.
    pub started: Vec<IpAddr>,
    /// Addresses it no longer announces.
    pub stopped: Vec<IpAddr>,
    /// Of `started`, those another node announced before: failovers.
    pub taken_over: Vec<IpAddr>,
}

impl Ownership {
    /// Takes a new election result; returns what changed for `node`.
    pub fn update(&mut self, node: &str, winners: BTreeMap<IpAddr, String>) -> Change {
        let mut change = Change::default();
        for (address, winner) in &winners {
            let before = self.winners.get(address);
            if winner == node && before.is_none_or(|b| b != node) {
                change.started.push(*address);
                if before.is_some() {
                    change.taken_over.push(*address);
                }
            }
        }
        for (address, before) in &self.winners {
            if before == node && winners.get(address).is_none_or(|w| w != node) {
                change.stopped.push(*address);
            }
        }
        self.winners = winners;
        change
    }

    /// The addresses `node` announces.
    pub fn of(&self, node: &str) -> BTreeSet<IpAddr> {
        let mine = self.winners.iter().filter(|(_, winner)| *winner == node);
        mine.map(|(address, _)| *address).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: NodeStatus = NodeStatus {
        ready: true,
        excluded: false,
    };
    const VALID: Duration = Duration::from_secs(6);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn peers(now: Instant) -> Peers {
        let mut peers = Peers::default();
        for name in ["a", "b", "c", "d"] {
            peers.set_node(name.into(), READY);
            peers.saw_heartbeat(name.into(), "t0".into(), VALID, now);
        }
        peers
    }

    #[test]
    fn only_ready_included_nodes_with_a_live_proxy_are_candidates() {
        let now = Instant::now();
        let mut peers = peers(now);
        peers.set_node(
            "b".into(),
            NodeStatus {
                ready: false,
                ..READY
            },
        );
        peers.set_node(
            "c".into(),
            NodeStatus {
                excluded: true,
                ..READY
            },
        );
        peers.set_node("e".into(), READY); // no proxy heartbeat
        peers.saw_heartbeat("ghost".into(), "t0".into(), VALID, now); // no Node
        assert_eq!(peers.candidates(now), set(&["a", "d"]));
    }

    #[test]
    fn a_heartbeat_expires_unless_renewed_and_a_repeat_is_no_renewal() {
        let start = Instant::now();
        let mut peers = peers(start);
        let later = start + Duration::from_secs(4);
        peers.saw_heartbeat("a".into(), "t1".into(), VALID, later);
        peers.saw_heartbeat("b".into(), "t0".into(), VALID, later); // re-listed, not renewed
        let expired = start + VALID;
        assert_eq!(peers.candidates(expired), set(&["a"]));
    }

    #[test]
    fn a_released_lease_or_a_deleted_node_is_no_candidate_at_once() {
        let now = Instant::now();
        let mut peers = peers(now);
        peers.remove_heartbeat("a");
        peers.remove_node("b");
        peers.retain_nodes(&set(&["b", "c", "d"]));
        peers.retain_heartbeats(&set(&["a", "b", "c"]));
        assert_eq!(peers.candidates(now), set(&["c"]));
    }

    #[test]
    fn ownership_reports_starts_stops_and_takeovers() {
        let mut ownership = Ownership::default();
        let winners = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(address, node)| (ip(address), (*node).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let first = ownership.update("a", winners(&[("192.0.2.1", "a"), ("192.0.2.2", "b")]));
        assert_eq!(first.started, [ip("192.0.2.1")]);
        assert!(first.taken_over.is_empty() && first.stopped.is_empty());

        let failover = ownership.update("a", winners(&[("192.0.2.1", "a"), ("192.0.2.2", "a")]));
        assert_eq!(failover.started, [ip("192.0.2.2")]);
        assert_eq!(failover.taken_over, [ip("192.0.2.2")]);
        assert_eq!(ownership.of("a"), [ip("192.0.2.1"), ip("192.0.2.2")].into());

        let gone = ownership.update("a", winners(&[("192.0.2.2", "c")]));
        assert_eq!(gone.stopped, [ip("192.0.2.1"), ip("192.0.2.2")]);
        assert!(gone.started.is_empty());
        assert!(ownership.of("a").is_empty());
    }
}
