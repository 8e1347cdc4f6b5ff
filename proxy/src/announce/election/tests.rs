//! Address plan: LoadBalancer addresses from 192.0.2.0/24 and 2001:db8::/64 (documentation
//! ranges), nodes `node-0` .. `node-N`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use proptest::prelude::*;

use super::{Eligible, Targets, elect};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nodes(count: usize) -> BTreeSet<String> {
    (0..count).map(|n| format!("node-{n}")).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

/// `count` addresses any node may serve.
fn cluster_targets(count: u32) -> Targets {
    (0..count)
        .map(|n| {
            let address = IpAddr::from([192, 0, 2 + (n / 256) as u8, (n % 256) as u8]);
            (address, Eligible::AnyNode)
        })
        .collect()
}

#[test]
fn every_address_gets_exactly_one_announcer_among_the_candidates() {
    let candidates = nodes(3);
    let targets = cluster_targets(20);
    let winners = elect(&targets, &candidates);
    assert_eq!(winners.len(), 20);
    assert!(winners.values().all(|node| candidates.contains(node)));
}

#[test]
fn without_candidates_nothing_is_announced() {
    assert!(elect(&cluster_targets(5), &BTreeSet::new()).is_empty());
}

#[test]
fn the_result_does_not_depend_on_who_computes_it_or_when() {
    let targets = cluster_targets(50);
    let first = elect(&targets, &nodes(4));
    let again = elect(&targets.clone(), &nodes(4).into_iter().rev().collect());
    assert_eq!(first, again);
}

#[test]
fn the_score_is_pinned_so_proxies_of_different_versions_agree() {
    // Changing the hash would make an upgraded proxy and an old one both claim an address.
    // The expected winners were computed apart: max over nodes of
    // sha256(node + "\0" + address octets), ties to the greater name.
    let targets = Targets::from([
        (ip("192.0.2.10"), Eligible::AnyNode),
        (ip("2001:db8::10"), Eligible::AnyNode),
    ]);
    let winners = elect(&targets, &names(&["node-a", "node-b", "node-c"]));
    let pinned: BTreeMap<IpAddr, String> = [
        (ip("192.0.2.10"), "node-b".to_owned()),
        (ip("2001:db8::10"), "node-a".to_owned()),
    ]
    .into();
    assert_eq!(winners, pinned);
}

#[test]
fn addresses_spread_over_the_nodes() {
    let winners = elect(&cluster_targets(300), &nodes(3));
    let mut per_node: BTreeMap<&String, usize> = BTreeMap::new();
    for node in winners.values() {
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3);
    // 100 each on average; a fair hash stays well within 60..140 for 300 draws.
    assert!(
        per_node.values().all(|count| (60..140).contains(count)),
        "{per_node:?}"
    );
}

#[test]
fn a_local_policy_address_goes_only_to_a_node_with_a_ready_endpoint() {
    let targets = Targets::from([(
        ip("192.0.2.1"),
        Eligible::NodesWithEndpoints(names(&["node-2"])),
    )]);
    let winners = elect(&targets, &nodes(4));
    assert_eq!(winners[&ip("192.0.2.1")], "node-2");
}

#[test]
fn a_local_policy_address_whose_endpoint_nodes_are_not_candidates_is_not_announced() {
    let targets = Targets::from([(
        ip("192.0.2.1"),
        Eligible::NodesWithEndpoints(names(&["node-9", "gone"])),
    )]);
    assert!(elect(&targets, &nodes(4)).is_empty());
    let none = Targets::from([(ip("192.0.2.2"), Eligible::NodesWithEndpoints(names(&[])))]);
    assert!(elect(&none, &nodes(4)).is_empty());
}

#[test]
fn merging_keeps_the_local_restriction() {
    let local = || Eligible::NodesWithEndpoints(names(&["a"]));
    assert_eq!(
        Eligible::AnyNode.merge(Eligible::AnyNode),
        Eligible::AnyNode
    );
    assert_eq!(Eligible::AnyNode.merge(local()), local());
    assert_eq!(local().merge(Eligible::AnyNode), local());
    assert_eq!(
        local().merge(Eligible::NodesWithEndpoints(names(&["b"]))),
        Eligible::NodesWithEndpoints(names(&["a", "b"]))
    );
}

#[test]
fn when_the_announcer_leaves_only_its_addresses_move() {
    let targets = cluster_targets(60);
    let before = elect(&targets, &nodes(3));
    let mut survivors = nodes(3);
    survivors.remove("node-1");
    let after = elect(&targets, &survivors);
    for (address, node) in &before {
        if node == "node-1" {
            assert_ne!(after[address], "node-1");
        } else {
            assert_eq!(&after[address], node, "{address} moved needlessly");
        }
    }
}

proptest! {
    /// A node joining or leaving changes only the addresses it wins or won.
    #[test]
    fn unrelated_nodes_coming_and_going_move_nothing(
        count in 1usize..8,
        extra in "[a-z]{1,8}",
        addresses in proptest::collection::btree_set(any::<[u8; 4]>(), 1..40),
    ) {
        let targets: Targets = addresses
            .into_iter()
            .map(|octets| (IpAddr::from(octets), Eligible::AnyNode))
            .collect();
        let base = nodes(count);
        let mut more = base.clone();
        more.insert(extra.clone());
        let before = elect(&targets, &base);
        let after = elect(&targets, &more);
        for (address, node) in &after {
            if node != &extra {
                prop_assert_eq!(&before[address], node);
            }
        }
    }

    /// Whatever the inputs, the winner is a candidate the address admits.
    #[test]
    fn winners_are_eligible_candidates(
        candidates in proptest::collection::btree_set("[a-c]{1,2}", 0..6),
        local in proptest::collection::btree_set("[a-c]{1,2}", 0..6),
        octets in any::<[u8; 16]>(),
    ) {
        let address = IpAddr::from(octets);
        let targets = Targets::from([(address, Eligible::NodesWithEndpoints(local.clone()))]);
        let winners = elect(&targets, &candidates);
        let possible: BTreeSet<_> = candidates.intersection(&local).collect();
        match winners.get(&address) {
            Some(winner) => prop_assert!(possible.contains(winner)),
            None => prop_assert!(possible.is_empty()),
        }
    }
}
