//! Golden tests of what Ferry emits, one per Service type, in nft syntax (the rendering is
//! checked against `nft list` itself by the real-kernel test). Only the lines that differ
//! from the empty layout are kept, so each file shows one Service's share. Regenerate with
//! `UPDATE_GOLDEN=1` and review the difference.

mod nft_support;

use ferry_proxy::model::TrafficPolicy;
use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::nft::render;
use nft_support::*;

/// The rendering without the lines every ruleset has.
fn share(cluster: &Cluster) -> String {
    let empty: std::collections::BTreeSet<String> = render(&Cluster::default().ruleset())
        .lines()
        .map(str::to_owned)
        .collect();
    let rendered = render(&cluster.ruleset());
    let mut kept: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let is_header = line.trim_end().ends_with('{') || line.trim() == "}";
        if !empty.contains(line) || is_header {
            kept.push(line);
        }
    }
    // Drop headers of blocks that kept nothing.
    let mut out = Vec::new();
    for (index, line) in kept.iter().enumerate() {
        let next = kept.get(index + 1).map(|l| l.trim());
        if line.trim_end().ends_with('{') && next == Some("}") {
            continue;
        }
        if line.trim() == "}"
            && out
                .last()
                .is_some_and(|l: &&str| l.trim_end().ends_with('{') || l.trim() == "}")
        {
            continue;
        }
        out.push(*line);
    }
    out.join("\n") + "\n"
}

#[track_caller]
fn golden(name: &str, cluster: Cluster) {
    let path = format!("{}/tests/nft_golden/{name}.nft", env!("CARGO_MANIFEST_DIR"));
    let actual = share(&cluster);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(actual, expected, "{name} differs from {path}");
}

#[test]
fn cluster_ip() {
    golden("cluster_ip", web(|_| {}));
}

#[test]
fn node_port() {
    golden("node_port", web(|s| s.ports[0].node_port = Some(30080)));
}

#[test]
fn load_balancer_with_source_ranges_and_local_policy() {
    golden(
        "load_balancer",
        web(|s| {
            s.ports[0].node_port = Some(30080);
            s.load_balancer_ips = vec![ip("192.168.70.1")];
            s.source_ranges = vec![net("192.168.60.0/24"), net("192.168.61.0/25")];
            s.external_traffic_policy = TrafficPolicy::Local;
        }),
    );
}

#[test]
fn external_ip_with_session_affinity() {
    golden(
        "affinity",
        web(|s| {
            s.external_ips = vec![ip("192.168.70.9")];
            s.affinity_timeout = affinity(10800);
        }),
    );
}

#[test]
fn no_endpoints() {
    golden(
        "no_endpoints",
        Cluster::default().with(
            service("default", "empty", |s| {
                s.cluster_ips = vec![ip("10.96.0.20")];
                s.ports = vec![port("dns", Udp, 53, None), port("http", Tcp, 80, None)];
            }),
            Vec::new(),
        ),
    );
}

#[test]
fn dual_stack() {
    let web = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10"), ip("fd00:10:96::10")];
        s.ports = vec![port("http", Tcp, 80, None)];
    });
    let v4 = slice(
        &web,
        "v4",
        ("http", Tcp, 8080),
        &[("10.244.2.5", OTHER_NODE, true)],
    );
    let v6 = slice(
        &web,
        "v6",
        ("http", Tcp, 8080),
        &[("fd00:10:244:2::5", OTHER_NODE, true)],
    );
    golden("dual_stack", Cluster::default().with(web, vec![v4, v6]));
}
#[test]
fn zz_print_empty() {
    println!("{}", render(&Cluster::default().ruleset()));
}
