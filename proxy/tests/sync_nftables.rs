//! The sync loop in nftables mode, end to end over the kernel fakes.

mod sync_support;

use std::time::Duration;

use ferry_proxy::announce::{Eligible, Targets};
use ferry_proxy::conntrack::{Flow, FlowTuple};
use ferry_proxy::model::types::Protocol::{Tcp, Udp};
use ferry_proxy::nft::Op;
use ferry_proxy::nft::tracer::Tracer;
use sync_support::*;

const WEB: &str = "10.96.0.10";
const DNS: &str = "10.96.0.53";

fn web_endpoints(addresses: &[&str]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    slice("web", (Tcp, 8080), addresses)
}

/// Where a pod's connection to the web Service may go, per the fake kernel's table.
#[track_caller]
fn web_endpoints_reached(kernel: &Kernel) -> Vec<String> {
    let nft = kernel.nft.lock();
    let table = nft.table().expect("table inet ferry");
    let packet = ferry_proxy::nft::tracer::Packet {
        source: ip("10.244.1.9"),
        destination: ip(WEB),
        protocol: Tcp,
        port: 80,
        origin: ferry_proxy::nft::tracer::Origin::Interface,
    };
    let outcome = Tracer::new(table).trace(&packet).expect("trace");
    outcome
        .endpoints()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn start() -> Proxy {
    let proxy = Proxy::nftables(Kernel::default());
    proxy.list(
        vec![service("web", WEB, (Tcp, 80), |_| {})],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    proxy
}

#[tokio::test(start_paused = true)]
async fn the_first_sync_installs_the_table() {
    let proxy = start();
    settle().await;
    assert_eq!(
        web_endpoints_reached(&proxy.kernel),
        ["10.244.1.2:8080", "10.244.1.3:8080"]
    );
    assert_eq!(proxy.kernel.nft.batches(), 1, "one transaction");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_change_is_a_small_batch() {
    let proxy = start();
    settle().await;
    proxy.apply_slice(web_endpoints(&["10.244.1.2"]));
    settle().await;
    assert_eq!(web_endpoints_reached(&proxy.kernel), ["10.244.1.2:8080"]);
    let nft = proxy.kernel.nft.lock();
    let last = nft.applied.last().expect("a batch");
    assert!(!last.ops.contains(&Op::RemoveTable), "not a full replace");
    assert!(last.ops.len() <= 4, "{:?}", last.ops);
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_an_identical_table() {
    let first = start();
    settle().await;
    let kernel = first.stop().await;
    let second = Proxy::nftables(kernel);
    second.list(
        vec![service("web", WEB, (Tcp, 80), |_| {})],
        vec![web_endpoints(&["10.244.1.2", "10.244.1.3"])],
    );
    settle().await;
    assert_eq!(second.syncs("full"), 1.0);
    assert_eq!(
        second.kernel.nft.batches(),
        1,
        "nothing sent on the restart"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_sync_puts_a_deleted_table_back() {
    let proxy = start();
    settle().await;
    proxy.kernel.nft.delete_table();
    wait(SYNC_PERIOD).await;
    assert_eq!(web_endpoints_reached(&proxy.kernel).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_removed_udp_endpoint_loses_its_flows() {
    let dns = service("dns", DNS, (Udp, 53), |_| {});
    let endpoints = |addresses: &[&str]| slice("dns", (Udp, 5353), addresses);
    let proxy = Proxy::nftables(Kernel::default());
    proxy.list(vec![dns], vec![endpoints(&["10.244.1.2", "10.244.1.3"])]);
    settle().await;
    let client = "10.244.1.9:40000".parse().unwrap();
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
    let other_client = Flow {
        original: FlowTuple {
            source: "10.244.1.8:40000".parse().unwrap(),
            destination: format!("{DNS}:53").parse().unwrap(),
        },
        ..flow("10.244.1.2:5353")
    };
    proxy.kernel.conntrack.insert(other_client);

    proxy.apply_slice(endpoints(&["10.244.1.2"]));
    settle().await;
    assert_eq!(
        proxy.kernel.conntrack.flows(),
        [other_client],
        "only the removed backend's flows"
    );

    wait(Duration::from_secs(1)).await;
    assert_eq!(proxy.kernel.conntrack.flows().len(), 1, "cleaned once");
}

/// The l2 announcer learns the LoadBalancer IPs once they are programmed, and not before.
#[tokio::test(start_paused = true)]
async fn load_balancer_ips_are_published_for_announcement_after_the_sync() {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
    let proxy = Proxy::nftables(Kernel::default());
    assert_eq!(
        *proxy.announce_targets.borrow(),
        None,
        "nothing before the first sync"
    );
    let mut web = service("web", WEB, (Tcp, 80), |spec| {
        spec.type_ = Some("LoadBalancer".into());
    });
    web.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("203.0.113.5".into()),
                ..LoadBalancerIngress::default()
            }]),
        }),
        ..ServiceStatus::default()
    });
    proxy.list(vec![web], vec![web_endpoints(&["10.244.1.2"])]);
    settle().await;
    let expected = Targets::from([(ip("203.0.113.5"), Eligible::AnyNode)]);
    assert_eq!(*proxy.announce_targets.borrow(), Some(expected));
}
