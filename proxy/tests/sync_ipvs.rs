//! The sync loop in IPVS mode, end to end over the kernel fakes: objects in, the fake
//! kernel's IPVS table, addresses, conntrack and helper table out.

mod sync_support;

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_proxy::conntrack::{Flow, FlowTuple};
use ferry_proxy::ipvs::{Ipvs, VirtualServerStats};
use ferry_proxy::link::Link;
use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::model::types::{Scheduler, VirtualServerParams};
use sync_support::*;

const WEB: &str = "10.96.0.10";
const DNS: &str = "10.96.0.53";

/// Real servers and weights of a virtual server in the fake kernel.
#[track_caller]
fn weights(
    kernel: &Kernel,
    key: ferry_proxy::model::types::VirtualServerKey,
) -> BTreeMap<String, u32> {
    let listing = kernel.ipvs.snapshot();
    let server = listing
        .get(&key)
        .unwrap_or_else(|| panic!("no virtual server {key} in {listing:?}"));
    server
        .real_servers
        .iter()
        .map(|(rs, observed)| (rs.to_string(), observed.weight))
        .collect()
}

fn both(a: u32, b: u32) -> BTreeMap<String, u32> {
    BTreeMap::from([("10.244.1.2:8080".into(), a), ("10.244.1.3:8080".into(), b)])
}

fn web() -> k8s_openapi::api::core::v1::Service {
    service("web", WEB, (Tcp, 80), |_| {})
}

fn web_endpoints(addresses: &[&str]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    slice("web", (Tcp, 8080), addresses)
}

#[tokio::test(start_paused = true)]
async fn the_first_sync_programs_an_empty_kernel() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;

    let kernel = &proxy.kernel;
    assert_eq!(weights(kernel, vs(Tcp, WEB, 80)), both(1, 1));
    assert!(kernel.link.exists(), "ferry-ipvs0 created");
    let bound = kernel.link.list_addresses().await.unwrap();
    assert_eq!(bound.into_iter().collect::<Vec<_>>(), [ip(WEB)]);
    assert!(kernel.nft.has_table(), "helper table inet ferry installed");
    assert_eq!(proxy.syncs("full"), 1.0);
    assert_eq!(proxy.metric("ferry_proxy_services_programmed"), 1.0);
    assert_eq!(proxy.metric("ferry_proxy_endpoints_programmed"), 2.0);
    assert_eq!(
        proxy.metric(r#"ferry_proxy_ops_applied_total{kind="add_real_server"}"#),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_is_synced_before_every_kind_is_listed() {
    let kernel = Kernel::default();
    kernel.link.ensure_link().await.unwrap();
    let params = VirtualServerParams {
        scheduler: Scheduler::RoundRobin,
        persistence: None,
    };
    kernel
        .ipvs
        .add_virtual_server(vs(Tcp, WEB, 80), &params)
        .await
        .unwrap();
    kernel.link.add_address(ip(WEB)).await.unwrap();
    let proxy = Proxy::ipvs(kernel);
    relist(vec![web()], |e| proxy.tracker.apply_service(e));
    settle().await;
    assert_eq!(
        proxy.syncs("full"),
        0.0,
        "slices and the node are not listed yet"
    );
    assert!(proxy.kernel.ipvs.snapshot().contains_key(&vs(Tcp, WEB, 80)));
}

#[tokio::test(start_paused = true)]
async fn a_restart_adopts_the_kernel_state_without_touching_live_flows() {
    let first = Proxy::ipvs(Kernel::default());
    first.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;
    let kernel = first.stop().await;
    // Traffic while no proxy runs.
    let web_vs = vs(Tcp, WEB, 80);
    kernel
        .ipvs
        .set_connections(web_vs, rs("10.244.1.2", 8080), 3, 1)
        .unwrap();
    let batches = kernel.nft.batches();

    let second = Proxy::ipvs(kernel);
    second.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;

    assert_eq!(second.syncs("full"), 1.0);
    assert_eq!(weights(&second.kernel, web_vs), both(1, 1));
    let listing = second.kernel.ipvs.snapshot();
    let live = listing[&web_vs].real_servers[&rs("10.244.1.2", 8080)];
    assert_eq!(
        live.active_connections, 3,
        "the real server was never re-created"
    );
    assert_eq!(
        second.ops_applied(),
        0.0,
        "nothing to change, nothing flushed"
    );
    assert_eq!(
        second.kernel.nft.batches(),
        batches,
        "the helper table was adopted as is"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_tcp_endpoint_drains_then_goes() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;
    let web_vs = vs(Tcp, WEB, 80);
    let leaving = rs("10.244.1.3", 8080);
    proxy
        .kernel
        .ipvs
        .set_connections(web_vs, leaving, 1, 0)
        .unwrap();

    proxy.apply_slice(web_endpoints(&["10.244.1.2"]));
    settle().await;
    assert_eq!(
        weights(&proxy.kernel, web_vs),
        both(1, 0),
        "no new connections"
    );

    wait(Duration::from_secs(5)).await;
    assert_eq!(weights(&proxy.kernel, web_vs), both(1, 0), "still draining");

    proxy
        .kernel
        .ipvs
        .set_connections(web_vs, leaving, 0, 0)
        .unwrap();
    wait(Duration::from_secs(3)).await;
    let left: BTreeMap<String, u32> = BTreeMap::from([("10.244.1.2:8080".into(), 1)]);
    assert_eq!(weights(&proxy.kernel, web_vs), left, "deleted once idle");
}

#[tokio::test(start_paused = true)]
async fn a_draining_endpoint_goes_when_its_grace_period_ends() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;
    let web_vs = vs(Tcp, WEB, 80);
    proxy
        .kernel
        .ipvs
        .set_connections(web_vs, rs("10.244.1.3", 8080), 5, 0)
        .unwrap();
    proxy.apply_slice(web_endpoints(&["10.244.1.2"]));
    settle().await;
    assert_eq!(weights(&proxy.kernel, web_vs), both(1, 0));
    wait(GRACE_PERIOD + Duration::from_secs(3)).await;
    assert_eq!(
        weights(&proxy.kernel, web_vs).len(),
        1,
        "deleted despite its connections"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_udp_endpoint_goes_at_once_with_its_flows() {
    let dns = service("dns", DNS, (Udp, 53), |_| {});
    let endpoints = |addresses: &[&str]| slice("dns", (Udp, 5353), addresses);
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![dns], vec![endpoints(&["10.244.1.2", "10.244.1.3"])]);
    settle().await;
    let client = "192.168.60.20:40000".parse().unwrap();
    let flow = |backend: &str| Flow {
        protocol: Udp.number(),
        original: FlowTuple {
            source: client,
            destination: format!("{DNS}:53").parse().unwrap(),
        },
        reply: FlowTuple {
            source: backend.parse().unwrap(),
            destination: client,
        },
        zone: 0,
    };
    proxy.kernel.conntrack.insert(flow("10.244.1.3:5353"));
    let dns_vs = vs(Udp, DNS, 53);
    proxy
        .kernel
        .ipvs
        .set_connections(dns_vs, rs("10.244.1.3", 5353), 0, 1)
        .unwrap();

    proxy.apply_slice(endpoints(&["10.244.1.2"]));
    settle().await;

    let left = weights(&proxy.kernel, dns_vs);
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["10.244.1.2:5353"],
        "no draining for UDP"
    );
    assert!(
        proxy.kernel.conntrack.flows().is_empty(),
        "the client's flow was deleted"
    );
    assert_eq!(
        proxy.metric(r#"ferry_proxy_ops_applied_total{kind="conntrack_cleanup_backend"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_sync_repairs_drift() {
    let api = service("api", "10.96.0.11", (Tcp, 443), |_| {});
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![web(), api],
        vec![
            web_endpoints(&["10.244.1.2", "10.244.1.3"]),
            slice("api", (Tcp, 8443), &["10.244.1.4"]),
        ],
    );
    settle().await;
    let kernel = &proxy.kernel;
    // Someone with ipvsadm and ip(8).
    kernel
        .ipvs
        .delete_virtual_server(vs(Tcp, "10.96.0.11", 443))
        .await
        .unwrap();
    kernel
        .ipvs
        .update_real_server(vs(Tcp, WEB, 80), rs("10.244.1.2", 8080), 7)
        .await
        .unwrap();
    kernel.link.delete_address(ip(WEB)).await.unwrap();
    kernel.nft.delete_table();

    wait(SYNC_PERIOD).await;

    assert_eq!(weights(kernel, vs(Tcp, WEB, 80)), both(1, 1));
    assert_eq!(weights(kernel, vs(Tcp, "10.96.0.11", 443)).len(), 1);
    assert!(
        kernel
            .link
            .list_addresses()
            .await
            .unwrap()
            .contains(&ip(WEB))
    );
    assert!(kernel.nft.has_table());
    assert_eq!(proxy.syncs("full"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_op_is_reported_and_repaired_by_a_full_sync() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![web()],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;
    // The link vanishes: binding the next address fails.
    proxy.kernel.link.remove_link();
    proxy.apply_service(service("api", "10.96.0.11", (Tcp, 443), |_| {}));
    proxy.apply_slice(slice("api", (Tcp, 8443), &["10.244.1.4"]));
    settle().await;
    assert_eq!(
        proxy.metric(r#"ferry_proxy_sync_errors_total{reason="link"}"#),
        1.0
    );
    assert_eq!(
        weights(&proxy.kernel, vs(Tcp, "10.96.0.11", 443)).len(),
        1,
        "the ops that did not depend on the failed one were applied"
    );

    wait(Duration::from_secs(2)).await;
    assert!(proxy.kernel.link.exists(), "the retry recreated the link");
    let bound = proxy.kernel.link.list_addresses().await.unwrap();
    assert!(
        bound.contains(&ip(WEB)) && bound.contains(&ip("10.96.0.11")),
        "{bound:?}"
    );
    assert_eq!(proxy.syncs("full"), 2.0, "start, then the retry");
}

#[tokio::test(start_paused = true)]
async fn one_unservable_service_does_not_hold_back_the_others() {
    let kernel = Kernel {
        ipvs: std::sync::Arc::new(ferry_proxy::ipvs::FakeIpvs::without_schedulers([
            Scheduler::MaglevHashing,
        ])),
        ..Kernel::default()
    };
    let mut maglev = service("maglev", "10.96.0.12", (Tcp, 80), |_| {});
    maglev.metadata.annotations = Some(BTreeMap::from([(
        "ferry.dev/ipvs-scheduler".to_owned(),
        "mh".to_owned(),
    )]));
    let proxy = Proxy::ipvs(kernel);
    proxy.list(
        vec![maglev, web()],
        vec![
            slice("maglev", (Tcp, 8080), &["10.244.1.9"]),
            web_endpoints(&["10.244.1.2", "10.244.1.3"]),
        ],
    );
    settle().await;
    assert_eq!(weights(&proxy.kernel, vs(Tcp, WEB, 80)), both(1, 1));
    assert!(
        !proxy
            .kernel
            .ipvs
            .snapshot()
            .contains_key(&vs(Tcp, "10.96.0.12", 80))
    );
    assert!(proxy.metric(r#"ferry_proxy_sync_errors_total{reason="ipvs"}"#) >= 1.0);
}

#[tokio::test(start_paused = true)]
async fn bursts_of_changes_coalesce_into_one_partial_sync() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![web()], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    proxy.apply_slice(web_endpoints(&["10.244.1.2", "10.244.1.3"]));
    wait(Duration::from_millis(1)).await;
    for n in 4..10 {
        let address = format!("10.244.1.{n}");
        proxy.apply_slice(web_endpoints(&["10.244.1.2", "10.244.1.3", &address]));
    }
    settle().await;
    assert!(
        proxy.syncs("partial") <= 2.0,
        "{} partial syncs",
        proxy.syncs("partial")
    );
    assert_eq!(weights(&proxy.kernel, vs(Tcp, WEB, 80)).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_relist_deletes_what_it_no_longer_lists() {
    let api = service("api", "10.96.0.11", (Tcp, 443), |_| {});
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![web(), api], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    assert!(
        proxy
            .kernel
            .ipvs
            .snapshot()
            .contains_key(&vs(Tcp, "10.96.0.11", 443))
    );
    // The watch was down while api was deleted.
    relist(vec![web()], |e| proxy.tracker.apply_service(e));
    settle().await;
    assert!(
        !proxy
            .kernel
            .ipvs
            .snapshot()
            .contains_key(&vs(Tcp, "10.96.0.11", 443))
    );
    assert!(
        !proxy
            .kernel
            .link
            .list_addresses()
            .await
            .unwrap()
            .contains(&ip("10.96.0.11"))
    );
}

#[tokio::test(start_paused = true)]
async fn network_programming_latency_is_measured_from_the_trigger_time() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![web()], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let at = now
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(2))
        .unwrap();
    proxy.apply_slice(triggered(
        web_endpoints(&["10.244.1.2", "10.244.1.3"]),
        &at.to_string(),
    ));
    settle().await;
    let series = "ferry_proxy_network_programming_duration_seconds";
    assert_eq!(proxy.metric(&format!("{series}_count")), 1.0);
    let seconds = proxy.metric(&format!("{series}_sum"));
    assert!((2.0..10.0).contains(&seconds), "{seconds}");
}

#[tokio::test(start_paused = true)]
async fn bad_objects_are_skipped_and_counted() {
    let mut portless = service("portless", "10.96.0.13", (Tcp, 80), |_| {});
    portless.spec.as_mut().unwrap().ports = Some(vec![]);
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![portless, web()], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    assert_eq!(
        proxy.metric(
            r#"ferry_proxy_skipped_objects_total{kind="Service",reason="no_usable_ports"}"#
        ),
        1.0
    );
    assert_eq!(
        proxy.kernel.ipvs.snapshot().len(),
        1,
        "web is served all the same"
    );
}

#[tokio::test(start_paused = true)]
async fn service_connections_follow_the_ipvs_counters() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(vec![web()], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    let stats = ferry_proxy::dataplane::ConnectionStats::new(
        proxy.kernel.ipvs.clone(),
        proxy.desired.clone(),
        proxy.metrics.clone(),
    );
    let counter = r#"ferry_proxy_service_connections_total{namespace="default",service="web"}"#;
    let set = |connections| {
        let stats = VirtualServerStats {
            connections,
            ..VirtualServerStats::default()
        };
        proxy
            .kernel
            .ipvs
            .set_stats(vs(Tcp, WEB, 80), stats)
            .unwrap();
    };
    set(5);
    stats.refresh().await;
    assert_eq!(proxy.metric(counter), 5.0);
    set(12);
    stats.refresh().await;
    assert_eq!(proxy.metric(counter), 12.0);
    // The virtual server was re-created: its counter restarted.
    set(2);
    stats.refresh().await;
    assert_eq!(proxy.metric(counter), 14.0, "the metric never goes down");
    assert_eq!(proxy.kernel.ipvs.list_stats().await.unwrap().len(), 1);
}
