//! The IPVS mode's helper table, traced: IPVS picks the endpoint, so the helper must never
//! DNAT, while masquerading, source ranges and drops behave as in the nftables mode.

mod nft_support;

use ferry_proxy::dataplane::ipvs_helper_ruleset;
use ferry_proxy::model::TrafficPolicy;
use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::nft::Ruleset;
use ferry_proxy::nft::ruleset::Reject;
use ferry_proxy::nft::tracer::{Outcome, Packet, Tracer};
use nft_support::*;

const OUTSIDE_CLIENT: &str = "192.168.60.20";
const POD_CLIENT: &str = "10.244.1.9";

fn helper(cluster: &Cluster) -> Ruleset {
    ipvs_helper_ruleset(&cluster.desired(), &cluster.config.cluster_cidrs)
}

/// IPVS takes an accepted connection to a frontend at `input` and sends it to the real server
/// through `postrouting`, node address or not: so no address is local to this tracer.
#[track_caller]
fn outcome(ruleset: &Ruleset, packet: Packet) -> Outcome {
    traced(&Tracer::new(ruleset), packet)
}

#[track_caller]
fn accepted(outcome: Outcome) -> bool {
    assert!(
        !matches!(outcome, Outcome::Dnat { .. }),
        "the helper DNATs: {outcome:?}"
    );
    outcome.masqueraded()
}

#[test]
fn nothing_is_dnatted_or_remembered() {
    let cluster = web(|s| s.affinity_timeout = affinity(600));
    let ruleset = helper(&cluster);
    for (name, chain) in &ruleset.chains {
        for rule in &chain.rules {
            assert_eq!(rule.endpoints().count(), 0, "{name} DNATs: {rule:?}");
        }
    }
    let full = cluster.ruleset();
    assert!(ruleset.sets.len() < full.sets.len(), "affinity sets pruned");
    assert!(
        ruleset.chains.len() < full.chains.len(),
        "per-Service chains pruned"
    );
}

#[test]
fn cluster_ip_traffic_from_outside_the_cluster_is_masqueraded() {
    let ruleset = helper(&web(|_| {}));
    assert!(!accepted(outcome(
        &ruleset,
        packet(POD_CLIENT, "10.96.0.10", Tcp, 80)
    )));
    assert!(accepted(outcome(
        &ruleset,
        packet(OUTSIDE_CLIENT, "10.96.0.10", Tcp, 80)
    )));
    assert!(accepted(outcome(
        &ruleset,
        from_node(packet(NODE_IP, "10.96.0.10", Tcp, 80))
    )));
}

#[test]
fn node_ports_with_policy_cluster_are_masqueraded() {
    let ruleset = helper(&web(|s| {
        s.ports = vec![port("http", Tcp, 80, Some(30080))];
    }));
    assert!(accepted(outcome(
        &ruleset,
        packet(OUTSIDE_CLIENT, NODE_IP, Tcp, 30080)
    )));
}

#[test]
fn load_balancer_source_ranges_drop_other_clients() {
    let ruleset = helper(&web(|s| {
        s.load_balancer_ips = vec![ip("192.168.70.1")];
        s.source_ranges = vec![net("192.168.60.0/28")];
    }));
    assert!(accepted(outcome(
        &ruleset,
        packet("192.168.60.5", "192.168.70.1", Tcp, 80)
    )));
    assert_eq!(
        outcome(&ruleset, packet("192.168.60.20", "192.168.70.1", Tcp, 80)),
        Outcome::Drop
    );
}

#[test]
fn local_policy_without_local_endpoints_drops_and_no_endpoints_rejects() {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10")];
        s.ports = vec![port("http", Tcp, 80, Some(30080))];
        s.external_traffic_policy = TrafficPolicy::Local;
    });
    let remote_only = slice(
        &web,
        "a",
        ("http", Tcp, 8080),
        &[("10.244.2.7", OTHER_NODE, true)],
    );
    let empty = service("default", "empty", |s| {
        s.cluster_ips = vec![ip("10.96.0.20")];
        s.ports = vec![port("dns", Udp, 53, None)];
    });
    let cluster = Cluster::default()
        .with(web, vec![remote_only])
        .with(empty, Vec::new());
    let ruleset = helper(&cluster);
    assert_eq!(
        outcome(&ruleset, packet(OUTSIDE_CLIENT, NODE_IP, Tcp, 30080)),
        Outcome::Drop
    );
    assert_eq!(
        outcome(&ruleset, packet(POD_CLIENT, "10.96.0.20", Udp, 53)),
        Outcome::Reject(Reject::PortUnreachable)
    );
}
