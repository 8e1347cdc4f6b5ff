//! The diff's rules, one scenario each.

use std::time::{Duration, Instant};

use super::fixtures::*;
use crate::diff::{GracefulState, Ownership, apply, diff};
use crate::model::FrontendKind::{ClusterIp, LoadBalancer, NodePort};
use crate::model::types::{KernelState, Scheduler};

#[track_caller]
fn ops(current: &KernelState, desired: &crate::model::Desired) -> Vec<String> {
    render(
        &diff(
            current,
            desired,
            &GracefulState::default(),
            Instant::now(),
            &config(),
        )
        .ops,
    )
}

#[test]
fn creates_servers_before_binding_their_addresses() {
    let want = desired(&[
        (
            "TCP/10.96.0.10:80",
            ClusterIp,
            &["10.244.1.5:8080", "10.244.2.6:8080"],
        ),
        ("TCP/192.168.1.10:30080", NodePort, &["10.244.1.5:8080"]),
        ("UDP/10.96.0.53:53", ClusterIp, &["10.244.1.3:5353"]),
    ]);
    assert_eq!(
        ops(&KernelState::default(), &want),
        [
            "add-vs TCP/10.96.0.10:80",
            "add-rs TCP/10.96.0.10:80 10.244.1.5:8080 w1",
            "add-rs TCP/10.96.0.10:80 10.244.2.6:8080 w1",
            "add-vs TCP/192.168.1.10:30080",
            "add-rs TCP/192.168.1.10:30080 10.244.1.5:8080 w1",
            "add-vs UDP/10.96.0.53:53",
            "add-rs UDP/10.96.0.53:53 10.244.1.3:5353 w1",
            "bind 10.96.0.10",
            "bind 10.96.0.53",
            "conntrack UDP/10.96.0.53:53",
        ]
    );
}

#[test]
fn deletes_servers_before_unbinding_their_addresses() {
    let current = kernel(
        &[
            ("TCP/10.96.0.10:80", &[("10.244.1.5:8080", 1, 3, 0)]),
            ("UDP/10.96.0.53:53", &[("10.244.1.3:5353", 1, 0, 0)]),
            ("TCP/10.96.0.11:80", &[]),
        ],
        &["10.96.0.10", "10.96.0.11", "10.96.0.53"],
    );
    let want = desired(&[("TCP/10.96.0.11:80", ClusterIp, &[])]);
    assert_eq!(
        ops(&current, &want),
        [
            "delete-vs TCP/10.96.0.10:80",
            "delete-vs UDP/10.96.0.53:53",
            "unbind 10.96.0.10",
            "unbind 10.96.0.53",
            "conntrack UDP/10.96.0.53:53",
        ]
    );
}

#[test]
fn deletes_only_virtual_servers_ferry_owns() {
    let current = kernel(
        &[
            ("TCP/10.0.0.1:80", &[("10.0.0.100:80", 1, 0, 0)]),
            ("TCP/192.168.1.10:22", &[("10.0.0.100:22", 1, 0, 0)]),
            ("TCP/192.168.1.10:30080", &[("10.244.1.5:8080", 1, 0, 0)]),
            ("TCP/10.96.0.10:80", &[]),
        ],
        &["10.96.0.10"],
    );
    assert_eq!(
        ops(&current, &desired(&[])),
        [
            "delete-vs TCP/10.96.0.10:80",
            "delete-vs TCP/192.168.1.10:30080",
            "unbind 10.96.0.10",
        ]
    );
}

#[test]
fn ownership_is_bound_address_or_node_port() {
    let ownership = config().ownership;
    let cases = [
        ("TCP/10.96.0.10:80", true, true),
        ("UDP/10.0.0.1:53", true, true),
        ("TCP/192.168.1.10:30000", false, true),
        ("TCP/192.168.1.10:32767", false, true),
        ("TCP/192.168.1.10:29999", false, false),
        ("TCP/192.168.1.10:32768", false, false),
        ("TCP/192.168.1.11:30080", false, false),
        ("TCP/10.0.0.1:80", false, false),
    ];
    for (key, on_dummy_interface, owned) in cases {
        assert_eq!(ownership.owns(&vs(key), on_dummy_interface), owned, "{key}");
    }
    let nobody = Ownership::default();
    assert!(!nobody.owns(&vs("TCP/192.168.1.10:30080"), false));
}

#[test]
fn adopts_and_updates_what_the_kernel_already_has() {
    let mut current = kernel(
        &[(
            "TCP/10.96.0.10:80",
            &[("10.244.1.5:8080", 1, 9, 9), ("10.244.2.6:8080", 0, 0, 0)],
        )],
        &["10.96.0.10"],
    );
    let mut want = desired(&[(
        "TCP/10.96.0.10:80",
        ClusterIp,
        &["10.244.1.5:8080", "10.244.2.6:8080"],
    )]);
    assert_eq!(
        ops(&current, &want),
        ["update-rs TCP/10.96.0.10:80 10.244.2.6:8080 w1"]
    );

    let key = vs("TCP/10.96.0.10:80");
    current
        .virtual_servers
        .get_mut(&key)
        .expect("present")
        .real_servers
        .get_mut(&rs("10.244.2.6:8080"))
        .expect("present")
        .weight = 1;
    let mut frontend = want.virtual_servers()[&key].clone();
    frontend.server.params.scheduler = Scheduler::SourceHashing;
    frontend.server.params.persistence = Some(Duration::from_secs(10_800));
    want = desired_of([(key, frontend)]);
    assert_eq!(ops(&current, &want), ["update-vs TCP/10.96.0.10:80"]);
}

#[test]
fn a_removed_tcp_real_server_drains_then_goes() {
    let key = "TCP/172.18.255.1:443";
    let start = Instant::now();
    let config = config();
    let want = desired(&[(key, LoadBalancer, &["10.244.1.5:8443"])]);
    let mut current = kernel(
        &[(
            key,
            &[("10.244.1.5:8443", 1, 0, 0), ("10.244.2.6:8443", 1, 4, 2)],
        )],
        &["172.18.255.1"],
    );

    let first = diff(&current, &want, &GracefulState::default(), start, &config);
    assert_eq!(
        render(&first.ops),
        ["update-rs TCP/172.18.255.1:443 10.244.2.6:8443 w0"]
    );
    assert_eq!(
        first.graceful.started(&vs(key), &rs("10.244.2.6:8443")),
        Some(start)
    );
    apply(&mut current, &first.ops).expect("applies");

    let later = start + Duration::from_secs(10);
    let waiting = diff(&current, &want, &first.graceful, later, &config);
    assert_eq!(waiting.ops, [], "weight 0 is set once, then it waits");
    assert_eq!(
        waiting.graceful, first.graceful,
        "the drain keeps its start time"
    );

    let expired = diff(
        &current,
        &want,
        &waiting.graceful,
        start + config.grace_period,
        &config,
    );
    assert_eq!(
        render(&expired.ops),
        ["delete-rs TCP/172.18.255.1:443 10.244.2.6:8443"]
    );
    assert!(expired.graceful.is_empty());
}

#[test]
fn a_drained_real_server_goes_when_its_connections_end() {
    let key = "TCP/10.96.0.10:80";
    let want = desired(&[(key, ClusterIp, &[])]);
    let cases: [(u32, u32, &[&str]); 3] = [
        (0, 0, &["delete-rs TCP/10.96.0.10:80 10.244.2.6:8080"]),
        (1, 0, &[]),
        (0, 1, &[]),
    ];
    for (active, inactive, expected) in cases {
        let current = kernel(
            &[(key, &[("10.244.2.6:8080", 0, active, inactive)])],
            &["10.96.0.10"],
        );
        assert_eq!(
            ops(&current, &want),
            expected,
            "active {active}, inactive {inactive}"
        );
    }
}

#[test]
fn a_real_server_that_comes_back_stops_draining() {
    let key = "SCTP/10.96.0.12:2905";
    let current = kernel(&[(key, &[("10.244.2.6:2905", 0, 5, 0)])], &["10.96.0.12"]);
    let mut draining = GracefulState::default();
    let now = Instant::now();
    draining = diff(
        &current,
        &desired(&[(key, ClusterIp, &[])]),
        &draining,
        now,
        &config(),
    )
    .graceful;
    assert_eq!(draining.len(), 1);

    let back = desired(&[(key, ClusterIp, &["10.244.2.6:2905"])]);
    let result = diff(&current, &back, &draining, now, &config());
    assert_eq!(
        render(&result.ops),
        ["update-rs SCTP/10.96.0.12:2905 10.244.2.6:2905 w1"]
    );
    assert!(result.graceful.is_empty());
}

#[test]
fn a_removed_udp_real_server_goes_at_once_with_its_conntrack_entries() {
    let key = "UDP/10.96.0.53:53";
    let current = kernel(
        &[(
            key,
            &[("10.244.1.3:5353", 1, 0, 7), ("10.244.2.4:5353", 1, 0, 0)],
        )],
        &["10.96.0.53"],
    );
    let want = desired(&[(key, ClusterIp, &["10.244.2.4:5353", "10.244.2.9:5353"])]);
    assert_eq!(
        ops(&current, &want),
        [
            "add-rs UDP/10.96.0.53:53 10.244.2.9:5353 w1",
            "delete-rs UDP/10.96.0.53:53 10.244.1.3:5353",
            "conntrack UDP/10.96.0.53:53 -> 10.244.1.3:5353",
        ]
    );
}

#[test]
fn a_udp_frontend_that_gets_its_first_endpoint_forgets_stale_entries() {
    let key = "UDP/10.96.0.53:53";
    let current = kernel(&[(key, &[])], &["10.96.0.53"]);
    let want = desired(&[(key, ClusterIp, &["10.244.1.3:5353"])]);
    assert_eq!(
        ops(&current, &want),
        [
            "add-rs UDP/10.96.0.53:53 10.244.1.3:5353 w1",
            "conntrack UDP/10.96.0.53:53"
        ]
    );
}

#[test]
fn repairs_settings_someone_else_changed() {
    let key = "TCP/10.96.0.10:80";
    let mut current = kernel(&[(key, &[("10.244.1.5:8080", 1, 2, 0)])], &["10.96.0.10"]);
    let server = current.virtual_servers.get_mut(&vs(key)).expect("present");
    server.params = None;
    server
        .real_servers
        .get_mut(&rs("10.244.1.5:8080"))
        .expect("present")
        .masquerade = false;
    let want = desired(&[(key, ClusterIp, &["10.244.1.5:8080"])]);
    assert_eq!(
        ops(&current, &want),
        [
            "update-vs TCP/10.96.0.10:80",
            "update-rs TCP/10.96.0.10:80 10.244.1.5:8080 w1"
        ]
    );
}
