//! Ferry's nftables dataplane against the real kernel, with real traffic, in network
//! namespaces it creates and deletes (see `nft_real_kernel/lab.rs` for the topology). The
//! tests are `#[ignore]`d and also skip without the variable:
//! `sudo FERRY_REAL_KERNEL=1 cargo test -p ferry-proxy --test nft_real_kernel -- --ignored --nocapture`
//!
//! `nft` (Debian's 1.0.6 on the development hosts) is the oracle: it must list every table
//! Ferry writes, as text and as JSON, and agree with Ferry's own rendering.

mod nft_support;

// A test crate's root resolves modules beside it, not in a directory named after it.
#[path = "nft_real_kernel/lab.rs"]
mod lab;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::nft::{
    Batch, Errno, NetlinkDataplane, NftDataplane, NftError, Op, Ruleset, TableSnapshot, diff,
    full_replace, render,
};
use lab::{CLIENTS, Lab, Netns, client_address};
use nft_support::*;

fn enabled() -> bool {
    let enabled = std::env::var("FERRY_REAL_KERNEL").as_deref() == Ok("1");
    if !enabled {
        eprintln!("skipped: set FERRY_REAL_KERNEL=1 (and run as root) for real-kernel tests");
    }
    enabled
}

const BE1: (&str, &str, bool) = ("10.244.1.5", THIS_NODE, true);
const BE2: (&str, &str, bool) = ("10.244.2.7", OTHER_NODE, true);
/// The node itself, as a `hostNetwork` endpoint.
const ON_NODE: (&str, &str, bool) = (NODE_IP, THIS_NODE, true);

/// Every kind of frontend the listing must survive:
/// - `web`: ClusterIP 10.96.0.10:80, NodePort 30080, load balancer 192.168.70.1 open to
///   192.168.60.16/28 only (clients 0 to 11);
/// - `dns`: ClusterIP 10.96.0.11:53/UDP with session affinity;
/// - `empty`: ClusterIP 10.96.0.12:80 without endpoints;
/// - `sticky`: ClusterIP 10.96.0.13:80 and NodePort 30081 with session affinity.
fn services(web: &[(&str, &str, bool)], sticky: &[(&str, &str, bool)]) -> Cluster {
    let web_service = service("default", "web", |s| {
        s.cluster_ips = vec![ip("10.96.0.10")];
        s.load_balancer_ips = vec![ip("192.168.70.1")];
        s.source_ranges = vec![net("192.168.60.16/28")];
        s.ports = vec![port("http", Tcp, 80, Some(30080))];
    });
    let web_slice = slice(&web_service, "a", ("http", Tcp, 8080), web);
    let dns = service("default", "dns", |s| {
        s.cluster_ips = vec![ip("10.96.0.11")];
        s.ports = vec![port("dns", Udp, 53, None)];
        s.affinity_timeout = affinity(10800);
    });
    let dns_slice = slice(&dns, "a", ("dns", Udp, 5353), &[BE1, BE2]);
    let empty = service("default", "empty", |s| {
        s.cluster_ips = vec![ip("10.96.0.12")];
        s.ports = vec![port("http", Tcp, 80, None)];
    });
    let sticky_service = service("default", "sticky", |s| {
        s.cluster_ips = vec![ip("10.96.0.13")];
        s.ports = vec![port("http", Tcp, 80, Some(30081))];
        s.affinity_timeout = affinity(10800);
    });
    let sticky_slice = slice(&sticky_service, "a", ("http", Tcp, 8080), sticky);
    Cluster::default()
        .with(web_service, vec![web_slice])
        .with(dns, vec![dns_slice])
        .with(empty, Vec::new())
        .with(sticky_service, vec![sticky_slice])
}

/// The table Ferry applies in these tests, loaded in `lab`'s node.
fn synced(lab: &Lab, cluster: &Cluster) -> (NetlinkDataplane, Ruleset) {
    let ruleset = cluster.ruleset();
    let mut dataplane = lab.node.enter(|| NetlinkDataplane::open().expect("open"));
    dataplane.apply(&full_replace(&ruleset)).expect("full sync");
    (dataplane, ruleset)
}

/// `nft list` output as comparable blocks: one line per object with elements sorted, since
/// nft wraps element lists and lists objects in creation order; counters without the values
/// they counted so far.
fn normalized(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let lines = listing.lines().map(str::trim).filter(|l| !l.is_empty());
    for line in lines.map(|l| {
        if l.starts_with("counter packets ") {
            "counter"
        } else {
            l
        }
    }) {
        if (line.starts_with("set ") || line.starts_with("map ") || line.starts_with("chain "))
            && !current.is_empty()
        {
            blocks.push(std::mem::take(&mut current));
        }
        if !line.starts_with("table ") {
            current.push_str(line);
            current.push(' ');
        }
    }
    blocks.push(current);
    let mut blocks: Vec<String> = blocks
        .into_iter()
        .map(|b| sort_elements(b.trim_end_matches(['}', ' '])))
        .collect();
    blocks.sort();
    blocks
}

fn sort_elements(block: &str) -> String {
    let Some(start) = block.find("elements = { ") else {
        return block.to_owned();
    };
    let rest = &block[start + 13..];
    let end = rest.find(" }").unwrap_or(rest.len());
    let mut elements: Vec<&str> = rest[..end].split(", ").map(str::trim).collect();
    elements.sort();
    format!(
        "{}elements = {{ {} }}{}",
        &block[..start],
        elements.join(", "),
        &rest[end..]
    )
}

/// `nft -j list ruleset`, which must succeed, as JSON objects of table `inet ferry`.
fn listed_json(lab: &Lab) -> Vec<serde_json::Value> {
    let listing = lab.node.exec(&["nft", "-j", "list", "ruleset"]);
    let json: serde_json::Value = serde_json::from_str(&listing).expect("nft json");
    json["nftables"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o.as_object()?.values().next().cloned())
        .filter(|o| o["table"] == "ferry")
        .collect()
}

/// The clients each affinity set remembers, as `nft -j` lists the packet path's elements.
fn remembered_clients(lab: &Lab) -> BTreeMap<String, BTreeSet<String>> {
    listed_json(lab)
        .iter()
        .filter(|o| {
            o["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("affinity-"))
        })
        .map(|set| {
            let elements = set["elem"].as_array().cloned().unwrap_or_default();
            let clients = elements.iter().map(|element| {
                let value = element.pointer("/elem/val").unwrap_or(element);
                value.as_str().expect("address").to_owned()
            });
            (
                set["name"].as_str().expect("name").to_owned(),
                clients.collect(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn services_work_end_to_end_in_namespaces() {
    if !enabled() {
        return;
    }
    let lab = Lab::new("ferry-nft");
    let (mut dataplane, ruleset) = synced(&lab, &services(&[BE1, BE2], &[BE1, BE2]));

    // The kernel holds exactly what Ferry meant, by Ferry's decoder and by nft's, which lists
    // every rule as text and as JSON.
    assert_eq!(
        dataplane.read_table().expect("dump"),
        Some(TableSnapshot::of(&ruleset))
    );
    let listed = lab.node.exec(&["nft", "list", "table", "inet", "ferry"]);
    assert_eq!(normalized(&listed), normalized(&render(&ruleset)));
    let listed_rules = listed_json(&lab)
        .iter()
        .filter(|o| o.get("expr").is_some())
        .count();
    let meant_rules: usize = ruleset.chains.values().map(|c| c.rules.len()).sum();
    assert_eq!(listed_rules, meant_rules);

    // ClusterIP: both backends answer a client outside the cluster, masqueraded.
    let answers = lab.tcp_answers("10.96.0.10:80", 24);
    for backend in ["be1 10.244.1.1", "be2 10.244.2.1"] {
        assert!(
            answers.iter().any(|a| a == backend),
            "{backend} missing from {answers:?}"
        );
    }
    // The Service chain counted each of those connections once (its first packet), and only
    // the counters' values differ from what Ferry meant.
    let counters = dataplane.read_counters().expect("counters");
    assert_eq!(counters.get("svc-ipv4-default/web/tcp/http"), Some(&24));
    assert_eq!(
        dataplane.read_table().expect("dump"),
        Some(TableSnapshot::of(&ruleset))
    );
    // UDP.
    let udp = lab.udp_answer(0, "10.96.0.11:53");
    assert!(udp == "be1" || udp == "be2", "{udp}");
    // NodePort on the node's address.
    assert_eq!(lab.tcp_answers("192.168.50.10:30080", 4).len(), 4);

    // Load balancer source ranges: client 0 (192.168.60.20) is inside, client 12 is not.
    let load_balancer = "192.168.70.1:80";
    assert_eq!(lab.tcp_answers(load_balancer, 2).len(), 2);
    lab.act_as_client(12);
    let dropped = lab.tcp_attempt(load_balancer, Duration::from_millis(500));
    assert_eq!(dropped, Err(std::io::ErrorKind::TimedOut));
    lab.act_as_client(0);

    // No endpoints: refused at once, not a timeout.
    let started = Instant::now();
    let refused = lab.tcp_attempt("10.96.0.12:80", Duration::from_secs(5));
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));
    assert!(started.elapsed() < Duration::from_secs(1));

    // One endpoint goes away: a partial batch touching only that Service's chain (its
    // counter and its pick).
    let after = services(&[BE1], &[BE1, BE2]).ruleset();
    let batch = diff(&ruleset, &after);
    assert_eq!(
        batch
            .ops
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "flush chain svc-ipv4-default/web/tcp/http",
            "add rule to svc-ipv4-default/web/tcp/http",
            "add rule to svc-ipv4-default/web/tcp/http"
        ]
    );
    dataplane.apply(&batch).expect("partial sync");
    assert_eq!(
        dataplane.read_table().expect("dump"),
        Some(TableSnapshot::of(&after))
    );
    let answers = lab.tcp_answers("10.96.0.10:80", 12);
    assert!(answers.iter().all(|a| a == "be1 10.244.1.1"), "{answers:?}");

    // A batch the kernel refuses changes nothing, and names the operation it refused, though
    // only the last message asked for an acknowledgement.
    let refused = Batch {
        ops: vec![
            Op::FlushChain("svc-ipv4-default/web/tcp/http".into()),
            Op::AddChain {
                name: "services".into(),
                base: None,
            },
            Op::FlushChain("reject-no-endpoints".into()),
        ],
    };
    let error = dataplane.apply(&refused).expect_err("the chain exists");
    assert!(
        matches!(
            error,
            NftError::Rejected {
                index: 1,
                errno: Errno(libc::EEXIST),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        dataplane.read_table().expect("dump"),
        Some(TableSnapshot::of(&after))
    );

    // Cleanup removes the table and only the table.
    lab.node
        .enter(|| ferry_proxy::nft::remove_owned().expect("remove"));
    lab.node
        .enter(|| ferry_proxy::nft::remove_owned().expect("removing twice is fine"));
    assert!(dataplane.read_table().expect("dump").is_none());
}

/// The backend (`be1`, `be2`, `node`) that answers each client, checking that it answers
/// every one of `connections` new connections to `target`.
fn stuck_backends(lab: &Lab, target: &'static str, connections: usize) -> BTreeMap<u8, String> {
    let mut stuck = BTreeMap::new();
    for client in 0..CLIENTS {
        lab.act_as_client(client);
        let answers: BTreeSet<String> = lab
            .tcp_answers(target, connections)
            .iter()
            .map(|answer| answer.split(' ').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(answers.len(), 1, "client {client} moved: {answers:?}");
        stuck.insert(client, answers.into_iter().next().unwrap_or_default());
    }
    lab.act_as_client(0);
    stuck
}

const STICKY_CHAIN: &str = "svc-ipv4-default/sticky/tcp/http";

fn sticky_set(endpoint: &str) -> String {
    format!("affinity-{STICKY_CHAIN}__{endpoint}/8080")
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn session_affinity_holds_over_real_connections() {
    if !enabled() {
        return;
    }
    let lab = Lab::new("ferry-aff");
    let cluster = services(&[BE1, BE2], &[BE1, BE2, ON_NODE]);
    let (mut dataplane, ruleset) = synced(&lab, &cluster);

    // Each client sticks to one backend over many new connections; clients spread.
    let stuck = stuck_backends(&lab, "10.96.0.13:80", 6);
    let backends: BTreeSet<&String> = stuck.values().collect();
    assert!(backends.len() > 1, "every client landed on {backends:?}");
    // The NodePort of the same Service port shares what the ClusterIP taught it.
    for (&client, backend) in stuck.iter().take(4) {
        lab.act_as_client(client);
        let answer = lab.tcp_answers("192.168.50.10:30081", 1).remove(0);
        assert!(answer.starts_with(backend.as_str()), "{client}: {answer}");
    }
    lab.act_as_client(0);
    // Each client is remembered in exactly the set of its backend (through nat-input for the
    // one on the node itself, which never reaches postrouting).
    let remembered = remembered_clients(&lab);
    for (address, name) in [
        ("10.244.1.5", "be1"),
        ("10.244.2.7", "be2"),
        (NODE_IP, "node"),
    ] {
        let clients: BTreeSet<String> = stuck
            .iter()
            .filter(|(_, backend)| *backend == name)
            .map(|(client, _)| client_address(*client))
            .collect();
        assert_eq!(remembered[&sticky_set(address)], clients, "{name}");
    }
    // The clients expire the Service's timeout after their last connection.
    let sticky_sets = format!("affinity-{STICKY_CHAIN}");
    for set in listed_json(&lab).iter().filter(|o| {
        o["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&sticky_sets))
    }) {
        let timeout = set["timeout"].as_u64().expect("set timeout");
        assert_eq!(timeout, 10800);
        for element in set["elem"].as_array().into_iter().flatten() {
            let expires = element.pointer("/elem/expires").and_then(|e| e.as_u64());
            assert!(expires.is_some_and(|e| e > timeout - 60), "{element}");
        }
    }
    // UDP: every query from a new port of one client reaches the same backend.
    for client in 0..4 {
        let answers: BTreeSet<String> = (0..5)
            .map(|_| lab.udp_answer(client, "10.96.0.11:53"))
            .collect();
        assert_eq!(answers.len(), 1, "UDP client {client} moved: {answers:?}");
    }
    // nft lists the table with the elements the packet path added, as text and as JSON.
    lab.node.exec(&["nft", "list", "table", "inet", "ferry"]);
    lab.node.exec(&["nft", "list", "ruleset"]);
    lab.node.exec(&["nft", "-j", "list", "ruleset"]);

    // be2 goes away: its clients move on, everyone else stays where they were.
    let after = services(&[BE1, BE2], &[BE1, ON_NODE]).ruleset();
    dataplane
        .apply(&diff(&ruleset, &after))
        .expect("partial sync");
    let moved = stuck_backends(&lab, "10.96.0.13:80", 3);
    for (client, before) in &stuck {
        match before.as_str() {
            "be2" => assert_ne!(moved[client], "be2", "client {client}"),
            kept => assert_eq!(moved[client], kept, "client {client}"),
        }
    }
}

/// A second socket keeps flipping one endpoint while the table is read: every reading is one
/// of the two tables, never a mix of dumps from different generations.
#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn reading_while_the_table_changes_sees_one_generation() {
    if !enabled() {
        return;
    }
    let node = Netns::new("ferry-nft-read");
    let both = services(&[BE1, BE2], &[BE1, BE2]).ruleset();
    let one = services(&[BE1], &[BE1, BE2]).ruleset();
    let mut reader = node.enter(|| NetlinkDataplane::open().expect("open"));
    reader.apply(&full_replace(&both)).expect("full sync");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, forth, back) = (stop.clone(), diff(&both, &one), diff(&one, &both));
        node.spawn(move || {
            let mut writer = NetlinkDataplane::open().expect("open");
            let mut flips = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch = if flips % 2 == 0 { &forth } else { &back };
                writer.apply(batch).expect("flip");
                flips += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            flips
        })
    };
    let expected = [TableSnapshot::of(&both), TableSnapshot::of(&one)];
    for _ in 0..100 {
        let snapshot = reader.read_table().expect("read").expect("table");
        assert!(expected.contains(&snapshot), "a reading mixed generations");
    }
    stop.store(true, Ordering::Relaxed);
    let flips = writer.join().expect("writer");
    println!("100 readings during {flips} changes");
    assert!(flips > 10, "the table hardly changed: {flips}");
}

/// `count` ClusterIP Services × 10 endpoints, Service `short` (if any) with only 9.
fn many_services(count: u32, short: Option<u32>) -> Ruleset {
    let mut cluster = Cluster::default();
    for index in 0..count {
        let cluster_ip = format!("10.96.{}.{}", index / 250, index % 250 + 1);
        let svc = service("bench", &format!("svc-{index}"), |s| {
            s.cluster_ips = vec![ip(&cluster_ip)];
            s.ports = vec![port("http", Tcp, 80, None)];
        });
        let endpoints = if short == Some(index) { 9 } else { 10 };
        let addresses: Vec<String> = (0..endpoints)
            .map(|e| {
                let n = index * 10 + e;
                format!("10.{}.{}.{}", 128 + n / 65_536, (n / 256) % 256, n % 256)
            })
            .collect();
        let endpoints: Vec<(&str, &str, bool)> = addresses
            .iter()
            .map(|a| (a.as_str(), OTHER_NODE, true))
            .collect();
        let endpoints = slice(&svc, "a", ("http", Tcp, 8080), &endpoints);
        cluster = cluster.with(svc, vec![endpoints]);
    }
    cluster.ruleset()
}

/// Other programs' rules (a CNI plugin's iptables-nft rules per pod, another agent's table)
/// change the namespace's ruleset generation all the time: a reading of Ferry's table that
/// spans such changes is still whole, and must not fail.
#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn reading_succeeds_while_another_program_churns_its_own_table() {
    if !enabled() {
        return;
    }
    let node = Netns::new("ferry-nft-foreign");
    let ruleset = many_services(500, None);
    let mut dataplane = node.enter(|| NetlinkDataplane::open().expect("open"));
    dataplane.apply(&full_replace(&ruleset)).expect("full sync");
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        node.spawn(move || {
            let mut changes = 0;
            while !stop.load(Ordering::Relaxed) {
                let verb = if changes % 2 == 0 { "add" } else { "delete" };
                let status = std::process::Command::new("nft")
                    .args([verb, "table", "ip", "another-agent"])
                    .status()
                    .expect("nft");
                assert!(status.success(), "nft {verb} table failed");
                changes += 1;
            }
            changes
        })
    };
    let started = Instant::now();
    for _ in 0..10 {
        let snapshot = dataplane
            .read_table()
            .expect("a reading during foreign changes");
        assert_eq!(snapshot, Some(TableSnapshot::of(&ruleset)));
    }
    let reading = started.elapsed() / 10;
    stop.store(true, Ordering::Relaxed);
    let changes = churn.join().expect("churn");
    println!("10 readings of {reading:?} each during {changes} foreign changes");
    assert!(changes > 20, "the other table hardly changed: {changes}");
}

/// 10,000 ClusterIP Services × 10 endpoints: a full sync, then one endpoint removed.
#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn scale_full_and_one_endpoint_batches() {
    if !enabled() {
        return;
    }
    let node = Netns::new("ferry-nft-scale");
    let full = many_services(10_000, None);
    let changed = many_services(10_000, Some(4_321));
    let mut dataplane = node.enter(|| NetlinkDataplane::open().expect("open"));
    let started = Instant::now();
    dataplane.apply(&full_replace(&full)).expect("full sync");
    let full_elapsed = started.elapsed();
    let batch = diff(&full, &changed);
    let started = Instant::now();
    dataplane.apply(&batch).expect("partial sync");
    let partial_elapsed = started.elapsed();
    let started = Instant::now();
    let snapshot = dataplane.read_table().expect("dump");
    let dump_elapsed = started.elapsed();
    assert_eq!(snapshot, Some(TableSnapshot::of(&changed)));
    println!(
        "10k services x 10 endpoints: full sync {full_elapsed:?}, one-endpoint partial ({} ops) {partial_elapsed:?}, full dump {dump_elapsed:?}",
        batch.ops.len()
    );
}
