//! Session affinity, traced through the ruleset `build` makes: a client sticks to the endpoint
//! its first connection reached, through every frontend of the Service and every protocol,
//! whether the endpoint is a pod or on the node's own network, and through endpoint changes
//! for as long as that endpoint stays.

mod nft_support;

use ferry_proxy::model::types::Protocol::{self, Sctp, Tcp, Udp};
use ferry_proxy::model::types::RealServerKey;
use ferry_proxy::nft::diff;
use ferry_proxy::nft::ruleset::Element;
use ferry_proxy::nft::tracer::{Outcome, Packet, Tracer};
use nft_support::*;

const CLIENT: &str = "192.168.60.20";
const OTHER_CLIENT: &str = "192.168.60.21";
const BE1: &str = "10.244.1.5";
const BE2: &str = "10.244.2.7";
const BE3: &str = "10.244.2.8";

/// Service `web` (10.96.0.10:80, NodePort 30080, external IP 192.168.70.9) with affinity for
/// `timeout` seconds and `endpoints` on port 8080.
fn sticky(protocol: Protocol, timeout: u64, endpoints: &[&str]) -> Cluster {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10")];
        s.external_ips = vec![ip("192.168.70.9")];
        s.ports = vec![port("http", protocol, 80, Some(30080))];
        s.affinity_timeout = affinity(timeout);
    });
    let ready: Vec<_> = endpoints.iter().map(|a| (*a, OTHER_NODE, true)).collect();
    let endpoints = slice(&web, "a", ("http", protocol, 8080), &ready);
    Cluster::default().with(web, vec![endpoints])
}

fn to_web(client: &str, protocol: Protocol) -> Packet {
    packet(client, "10.96.0.10", protocol, 80)
}

#[track_caller]
fn reached(tracer: &Tracer<'_>, packet: Packet) -> Vec<RealServerKey> {
    traced(tracer, packet).endpoints().into_iter().collect()
}

#[track_caller]
fn connect(tracer: &mut Tracer<'_>, packet: Packet, to: RealServerKey) {
    tracer
        .connect(&packet, &to)
        .unwrap_or_else(|e| panic!("{packet:?} to {to:?}: {e}"));
}

#[test]
fn a_client_sticks_to_the_endpoint_its_first_connection_reached() {
    for protocol in [Tcp, Udp, Sctp] {
        let ruleset = sticky(protocol, 10800, &[BE1, BE2]).ruleset();
        let mut tracer = tracer(&ruleset);
        let be2 = endpoint(BE2, 8080);
        assert_eq!(reached(&tracer, to_web(CLIENT, protocol)).len(), 2);
        connect(&mut tracer, to_web(CLIENT, protocol), be2);
        for _ in 0..3 {
            assert_eq!(
                reached(&tracer, to_web(CLIENT, protocol)),
                [be2],
                "{protocol}"
            );
            connect(&mut tracer, to_web(CLIENT, protocol), be2);
        }
        assert_eq!(
            reached(&tracer, to_web(OTHER_CLIENT, protocol)).len(),
            2,
            "{protocol}: another client is free to land elsewhere"
        );
    }
}

#[test]
fn each_endpoint_remembers_its_own_clients() {
    let ruleset = sticky(Tcp, 10800, &[BE1, BE2]).ruleset();
    let Outcome::Dnat { endpoints } = outcome(&ruleset, to_web(CLIENT, Tcp)) else {
        panic!("expected DNAT");
    };
    for (address, set) in [
        (
            BE1,
            "affinity-svc-ipv4-default/web/tcp/http__10.244.1.5/8080",
        ),
        (
            BE2,
            "affinity-svc-ipv4-default/web/tcp/http__10.244.2.7/8080",
        ),
    ] {
        let path = &endpoints[&endpoint(address, 8080)];
        assert_eq!(
            path.remembered,
            [(set.to_owned(), Element::Address(ip(CLIENT)))].into()
        );
    }
}

#[test]
fn every_frontend_of_the_service_shares_what_it_remembers() {
    let ruleset = sticky(Tcp, 10800, &[BE1, BE2]).ruleset();
    let mut tracer = tracer(&ruleset);
    let be1 = endpoint(BE1, 8080);
    connect(&mut tracer, packet(CLIENT, NODE_IP, Tcp, 30080), be1);
    for frontend in [("10.96.0.10", 80), ("192.168.70.9", 80), (NODE_IP, 30080)] {
        let to_frontend = packet(CLIENT, frontend.0, Tcp, frontend.1);
        assert_eq!(reached(&tracer, to_frontend), [be1], "{frontend:?}");
    }
}

#[test]
fn an_endpoint_on_the_node_itself_remembers_its_clients_on_input() {
    let ruleset = sticky(Tcp, 10800, &[NODE_IP, BE2]).ruleset();
    let on_node = endpoint(NODE_IP, 8080);
    let from_outside = packet(CLIENT, "10.96.0.10", Tcp, 80);
    let from_the_node = from_node(packet(NODE_IP, "10.96.0.10", Tcp, 80));
    for client in [from_outside, from_the_node] {
        let mut tracer = tracer(&ruleset);
        connect(&mut tracer, client, on_node);
        assert_eq!(reached(&tracer, client), [on_node], "{client:?}");
    }
}

#[test]
fn dual_stack_clients_stick_per_family() {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10"), ip("fd00:10:96::10")];
        s.ports = vec![port("http", Tcp, 80, None)];
        s.affinity_timeout = affinity(60);
    });
    let v6 = slice(
        &web,
        "v6",
        ("http", Tcp, 8080),
        &[
            ("fd00:10:244:1::5", THIS_NODE, true),
            ("fd00:10:244:2::7", OTHER_NODE, true),
        ],
    );
    let ruleset = Cluster::default().with(web, vec![v6]).ruleset();
    let mut tracer = tracer(&ruleset);
    let client = packet("fd00:60::20", "fd00:10:96::10", Tcp, 80);
    let chosen = endpoint("fd00:10:244:2::7", 8080);
    connect(&mut tracer, client, chosen);
    assert_eq!(reached(&tracer, client), [chosen]);
}

#[test]
fn clients_keep_their_endpoint_through_changes_while_it_stays() {
    let before = sticky(Tcp, 10800, &[BE1, BE2]).ruleset();
    let after = sticky(Tcp, 10800, &[BE1, BE3]).ruleset();
    let (be1, be2, be3) = (
        endpoint(BE1, 8080),
        endpoint(BE2, 8080),
        endpoint(BE3, 8080),
    );
    let mut tracer = tracer(&before);
    connect(&mut tracer, to_web(CLIENT, Tcp), be1);
    connect(&mut tracer, to_web(OTHER_CLIENT, Tcp), be2);

    let memory = tracer.into_memory().after(&diff(&before, &after));
    let tracer = nft_support::tracer(&after).with_memory(memory);
    assert_eq!(reached(&tracer, to_web(CLIENT, Tcp)), [be1], "be1 stayed");
    assert_eq!(
        reached(&tracer, to_web(OTHER_CLIENT, Tcp)),
        [be1, be3],
        "be2 went, and the clients it remembered with it"
    );
}

#[test]
fn a_new_affinity_timeout_starts_afresh() {
    let before = sticky(Tcp, 10800, &[BE1, BE2]).ruleset();
    let after = sticky(Tcp, 60, &[BE1, BE2]).ruleset();
    let mut tracer = tracer(&before);
    connect(&mut tracer, to_web(CLIENT, Tcp), endpoint(BE1, 8080));
    let memory = tracer.into_memory().after(&diff(&before, &after));
    let tracer = nft_support::tracer(&after).with_memory(memory);
    assert_eq!(reached(&tracer, to_web(CLIENT, Tcp)).len(), 2);
}
