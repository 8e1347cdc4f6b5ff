//! What a connection's first packet experiences in Ferry's nftables ruleset, per Service type
//! and policy, traced through the ruleset `build` makes from the model.

mod nft_support;

use ferry_proxy::model::TrafficPolicy;
use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::nft::ruleset::Reject;
use ferry_proxy::nft::tracer::Outcome;
use nft_support::*;

const OUTSIDE_CLIENT: &str = "192.168.60.20";
const POD_CLIENT: &str = "10.244.1.9";

#[test]
fn cluster_ip_reaches_every_ready_endpoint() {
    let ruleset = web(|_| {}).ruleset();
    let reached = outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80));
    assert_eq!(
        reached.endpoints(),
        [endpoint("10.244.1.5", 8080), endpoint("10.244.2.7", 8080)].into()
    );
    assert!(!reached.masqueraded(), "pod traffic keeps its source");
}

#[test]
fn cluster_ip_from_outside_the_cluster_cidrs_is_masqueraded() {
    let ruleset = web(|_| {}).ruleset();
    assert!(outcome(&ruleset, packet(OUTSIDE_CLIENT, "10.96.0.10", Tcp, 80)).masqueraded());
    assert!(outcome(&ruleset, from_node(packet(NODE_IP, "10.96.0.10", Tcp, 80))).masqueraded());
}

#[test]
fn other_ports_protocols_and_addresses_are_untouched() {
    let ruleset = web(|_| {}).ruleset();
    for packet in [
        packet(POD_CLIENT, "10.96.0.10", Tcp, 81),
        packet(POD_CLIENT, "10.96.0.10", Udp, 80),
        packet(POD_CLIENT, "10.96.0.11", Tcp, 80),
        packet(POD_CLIENT, "10.244.2.7", Tcp, 8080),
    ] {
        assert_eq!(outcome(&ruleset, packet), untouched(), "{packet:?}");
    }
}

#[test]
fn a_service_without_endpoints_rejects_at_once() {
    let cluster = Cluster::default().with(
        service("default", "empty", |s| {
            s.cluster_ips = vec![ip("10.96.0.20")];
            s.ports = vec![port("dns", Udp, 53, None), port("http", Tcp, 80, None)];
        }),
        Vec::new(),
    );
    let ruleset = cluster.ruleset();
    assert_eq!(
        outcome(&ruleset, packet(POD_CLIENT, "10.96.0.20", Tcp, 80)),
        Outcome::Reject(Reject::TcpReset)
    );
    assert_eq!(
        outcome(&ruleset, packet(POD_CLIENT, "10.96.0.20", Udp, 53)),
        Outcome::Reject(Reject::PortUnreachable)
    );
    assert_eq!(
        outcome(&ruleset, from_node(packet(NODE_IP, "10.96.0.20", Tcp, 80))),
        Outcome::Reject(Reject::TcpReset)
    );
}

#[test]
fn terminating_endpoints_are_not_used_while_ready_ones_exist() {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10")];
        s.ports = vec![port("http", Tcp, 80, None)];
    });
    let endpoints = slice(
        &web,
        "a",
        ("http", Tcp, 8080),
        &[
            ("10.244.1.5", THIS_NODE, true),
            ("10.244.1.6", THIS_NODE, false),
        ],
    );
    let ruleset = Cluster::default().with(web, vec![endpoints]).ruleset();
    let reached = outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80));
    assert_eq!(reached.endpoints(), [endpoint("10.244.1.5", 8080)].into());
}

#[test]
fn node_port_on_the_node_address_is_masqueraded() {
    let ruleset = web(|s| s.ports[0].node_port = Some(30080)).ruleset();
    let reached = outcome(&ruleset, packet(OUTSIDE_CLIENT, NODE_IP, Tcp, 30080));
    assert_eq!(reached.endpoints().len(), 2);
    assert!(reached.masqueraded());
    assert_eq!(
        outcome(&ruleset, packet(OUTSIDE_CLIENT, NODE_IP, Tcp, 30081)),
        untouched()
    );
}

#[test]
fn external_traffic_policy_local_uses_local_endpoints_and_keeps_the_source() {
    let ruleset = web(|s| {
        s.ports[0].node_port = Some(30080);
        s.load_balancer_ips = vec![ip("192.168.70.1")];
        s.external_traffic_policy = TrafficPolicy::Local;
    })
    .ruleset();
    for frontend in [(NODE_IP, 30080), ("192.168.70.1", 80)] {
        let reached = outcome(
            &ruleset,
            packet(OUTSIDE_CLIENT, frontend.0, Tcp, frontend.1),
        );
        assert_eq!(
            reached.endpoints(),
            [endpoint("10.244.1.5", 8080)].into(),
            "{frontend:?}"
        );
        assert!(!reached.masqueraded(), "{frontend:?}");
    }
    let internal = outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80));
    assert_eq!(
        internal.endpoints().len(),
        2,
        "the ClusterIP still uses every endpoint"
    );
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_external_traffic() {
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
    let ruleset = Cluster::default().with(web, vec![remote_only]).ruleset();
    assert_eq!(
        outcome(&ruleset, packet(OUTSIDE_CLIENT, NODE_IP, Tcp, 30080)),
        Outcome::Drop
    );
    let internal = outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80));
    assert_eq!(internal.endpoints(), [endpoint("10.244.2.7", 8080)].into());
}

#[test]
fn internal_traffic_policy_local_limits_the_cluster_ip_to_local_endpoints() {
    let ruleset = web(|s| s.internal_traffic_policy = TrafficPolicy::Local).ruleset();
    let reached = outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80));
    assert_eq!(reached.endpoints(), [endpoint("10.244.1.5", 8080)].into());
}

#[test]
fn load_balancer_source_ranges_drop_other_clients() {
    let ruleset = web(|s| {
        s.load_balancer_ips = vec![ip("192.168.70.1")];
        s.source_ranges = vec![net("192.168.60.0/28")];
    })
    .ruleset();
    let allowed = outcome(&ruleset, packet("192.168.60.5", "192.168.70.1", Tcp, 80));
    assert_eq!(allowed.endpoints().len(), 2);
    assert!(
        allowed.masqueraded(),
        "externalTrafficPolicy Cluster masquerades"
    );
    assert_eq!(
        outcome(&ruleset, packet("192.168.60.20", "192.168.70.1", Tcp, 80)),
        Outcome::Drop
    );
    let cluster_ip = outcome(&ruleset, packet("192.168.60.20", "10.96.0.10", Tcp, 80));
    assert_eq!(
        cluster_ip.endpoints().len(),
        2,
        "source ranges apply to the load balancer IP only"
    );
}

#[test]
fn external_ips_are_served_and_masqueraded() {
    let ruleset = web(|s| s.external_ips = vec![ip("192.168.70.9")]).ruleset();
    let reached = outcome(&ruleset, packet(OUTSIDE_CLIENT, "192.168.70.9", Tcp, 80));
    assert_eq!(reached.endpoints().len(), 2);
    assert!(reached.masqueraded());
}

#[test]
fn hairpin_connections_of_an_endpoint_to_itself_are_masqueraded() {
    let ruleset = web(|_| {}).ruleset();
    let reached = outcome(&ruleset, packet("10.244.1.5", "10.96.0.10", Tcp, 80));
    let Outcome::Dnat { endpoints } = reached else {
        panic!("expected DNAT")
    };
    assert!(
        endpoints[&endpoint("10.244.1.5", 8080)].masqueraded,
        "to itself: masqueraded"
    );
    assert!(
        !endpoints[&endpoint("10.244.2.7", 8080)].masqueraded,
        "to another pod: not masqueraded"
    );
}

#[test]
fn dual_stack_services_dispatch_each_family_separately() {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10"), ip("fd00:10:96::10")];
        s.ports = vec![port("http", Tcp, 80, None)];
    });
    let v4 = slice(
        &web,
        "v4",
        ("http", Tcp, 8080),
        &[("10.244.1.5", THIS_NODE, true)],
    );
    let v6 = slice(
        &web,
        "v6",
        ("http", Tcp, 8080),
        &[("fd00:10:244:1::5", THIS_NODE, true)],
    );
    let ruleset = Cluster::default().with(web, vec![v4, v6]).ruleset();
    let reached = outcome(
        &ruleset,
        packet("fd00:10:244:1::9", "fd00:10:96::10", Tcp, 80),
    );
    assert_eq!(
        reached.endpoints(),
        [endpoint("fd00:10:244:1::5", 8080)].into()
    );
    assert!(!reached.masqueraded());
    assert!(outcome(&ruleset, packet("fd00:60::20", "fd00:10:96::10", Tcp, 80)).masqueraded());
    assert_eq!(
        outcome(&ruleset, packet(POD_CLIENT, "10.96.0.10", Tcp, 80)).endpoints(),
        [endpoint("10.244.1.5", 8080)].into()
    );
}

#[test]
fn the_tracer_fails_on_a_rule_it_cannot_follow() {
    use ferry_proxy::nft::ruleset::{Rule, Statement, Verdict};
    use ferry_proxy::nft::tracer::{TraceError, trace};
    let mut ruleset = web(|_| {}).ruleset();
    let services = ruleset.chains.get_mut("services").expect("services chain");
    services.rules.insert(
        0,
        Rule::new(
            Vec::new(),
            vec![Statement::Verdict(Verdict::Jump("nowhere".into()))],
        ),
    );
    assert_eq!(
        trace(&ruleset, &packet(POD_CLIENT, "10.96.0.10", Tcp, 80)),
        Err(TraceError::MissingChain("nowhere".into()))
    );
}

#[test]
fn the_tracer_fails_on_a_statement_the_kernel_refuses_in_its_hook() {
    use ferry_proxy::nft::ruleset::{Hook, Rule, Statement};
    use ferry_proxy::nft::tracer::{TraceError, trace};
    let mut ruleset = web(|_| {}).ruleset();
    let services = ruleset.chains.get_mut("services").expect("services chain");
    services
        .rules
        .insert(0, Rule::new(Vec::new(), vec![Statement::Masquerade]));
    assert_eq!(
        trace(&ruleset, &packet(POD_CLIENT, "10.96.0.10", Tcp, 80)),
        Err(TraceError::WrongHook {
            statement: "masquerade",
            hook: Hook::Prerouting
        })
    );
}
