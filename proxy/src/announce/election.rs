//! Which node answers for each LoadBalancer address: a pure function of the addresses, who
//! may serve each of them, and the candidate nodes.
//!
//! Every proxy runs the same election on the same inputs and keeps only the addresses it won,
//! so no coordination beyond the inputs is needed. The winner of an address is the eligible
//! candidate with the highest score `SHA-256(node, address)` (rendezvous hashing): addresses
//! spread evenly over the nodes, and a node coming or going moves only the addresses it wins
//! or won, never the others. SHA-256 (from `ring`, already linked for TLS) rather than std's
//! hasher, whose output may change between Rust releases: proxies of two versions must agree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Which nodes may answer for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligible {
    /// `externalTrafficPolicy: Cluster`: any candidate serves it.
    AnyNode,
    /// `externalTrafficPolicy: Local`: only nodes with a ready endpoint of the Service, or
    /// the traffic would be dropped there.
    NodesWithEndpoints(BTreeSet<String>),
}

impl Eligible {
    fn admits(&self, node: &str) -> bool {
        match self {
            Eligible::AnyNode => true,
            Eligible::NodesWithEndpoints(nodes) => nodes.contains(node),
        }
    }

    /// Two Services sharing an address: a node may answer if it serves either. (The operator
    /// lets Local Services share an address only when they select the same pods.)
    pub fn merge(self, other: Eligible) -> Eligible {
        match (self, other) {
            (Eligible::AnyNode, Eligible::AnyNode) => Eligible::AnyNode,
            (Eligible::NodesWithEndpoints(mut a), Eligible::NodesWithEndpoints(b)) => {
                a.extend(b);
                Eligible::NodesWithEndpoints(a)
            }
            (local @ Eligible::NodesWithEndpoints(_), Eligible::AnyNode)
            | (Eligible::AnyNode, local @ Eligible::NodesWithEndpoints(_)) => local,
        }
    }
}

/// The addresses to announce, with who may answer for each.
pub type Targets = BTreeMap<IpAddr, Eligible>;

/// The announcer of every address that has an eligible candidate; the others go unannounced.
pub fn elect(targets: &Targets, candidates: &BTreeSet<String>) -> BTreeMap<IpAddr, String> {
    targets
        .iter()
        .filter_map(|(address, eligible)| {
            let winner = candidates
                .iter()
                .filter(|node| eligible.admits(node))
                .max_by_key(|node| (score(node, *address), *node))?;
            Some((*address, winner.clone()))
        })
        .collect()
}

fn score(node: &str, address: IpAddr) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(node.as_bytes());
    // A node name never holds a NUL: "ab"+"c" and "a"+"bc" cannot collide.
    context.update(&[0]);
    match address {
        IpAddr::V4(v4) => context.update(&v4.octets()),
        IpAddr::V6(v6) => context.update(&v6.octets()),
    }
    let mut score = [0; 32];
    score.copy_from_slice(context.finish().as_ref());
    score
}

#[cfg(test)]
mod tests;
