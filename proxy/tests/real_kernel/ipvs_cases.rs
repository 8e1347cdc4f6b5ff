//! What IPVS does with each operation, for `FakeIpvs` and the kernel alike.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_proxy::ipvs::{Ipvs, IpvsError, ObservedRealServer, Target};
use ferry_proxy::model::types::{
    Protocol, RealServerKey, Scheduler, VirtualServerKey, VirtualServerParams,
};

use super::run;

fn vs(protocol: Protocol, address: &str, port: u16) -> VirtualServerKey {
    VirtualServerKey {
        protocol,
        address: address.parse().unwrap(),
        port,
    }
}

fn rs(address: &str, port: u16) -> RealServerKey {
    RealServerKey {
        address: address.parse().unwrap(),
        port,
    }
}

fn params(scheduler: Scheduler, persistence: Option<u64>) -> VirtualServerParams {
    VirtualServerParams {
        scheduler,
        persistence: persistence.map(Duration::from_secs),
    }
}

fn weighted(weight: u32) -> ObservedRealServer {
    ObservedRealServer {
        weight,
        active_connections: 0,
        inactive_connections: 0,
        masquerade: true,
    }
}

#[track_caller]
fn assert_error<T: std::fmt::Debug>(
    result: Result<T, IpvsError>,
    expected: fn(&IpvsError) -> bool,
) {
    match result {
        Err(error) if expected(&error) => {}
        other => panic!("unexpected {other:?}"),
    }
}

/// The whitespace-separated words of the first line of `text` containing `needle`.
#[track_caller]
fn words_of_line<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let line = text.lines().find(|line| line.contains(needle));
    let line = line.unwrap_or_else(|| panic!("no line with {needle} in:\n{text}"));
    line.split_whitespace().collect()
}

/// Adds, updates and deletes virtual and real servers, checking the listing and every error.
pub async fn behaves_like_the_kernel(ipvs: &impl Ipvs) {
    let web = vs(Protocol::Tcp, "10.96.0.1", 443);
    let dns6 = vs(Protocol::Udp, "fd00:96::a", 53);
    let sctp = vs(Protocol::Sctp, "10.96.0.2", 9000);
    let pod_a = rs("10.244.1.5", 8443);
    let pod_b = rs("10.244.2.7", 8443);
    let pod6 = rs("fd00:244::5", 5353);

    assert!(
        ipvs.list_virtual_servers().await.unwrap().is_empty(),
        "a fresh namespace"
    );

    ipvs.add_virtual_server(web, &params(Scheduler::RoundRobin, None))
        .await
        .unwrap();
    assert_error(
        ipvs.add_virtual_server(web, &params(Scheduler::RoundRobin, None))
            .await,
        |e| {
            matches!(
                e,
                IpvsError::AlreadyExists {
                    target: Target::VirtualServer(_)
                }
            )
        },
    );
    ipvs.add_virtual_server(dns6, &params(Scheduler::WeightedRoundRobin, Some(10800)))
        .await
        .unwrap();
    ipvs.add_virtual_server(sctp, &params(Scheduler::SourceHashing, None))
        .await
        .unwrap();

    ipvs.update_virtual_server(web, &params(Scheduler::WeightedLeastConnection, Some(60)))
        .await
        .unwrap();
    let missing = vs(Protocol::Tcp, "10.96.0.99", 80);
    assert_error(
        ipvs.update_virtual_server(missing, &params(Scheduler::RoundRobin, None))
            .await,
        |e| {
            matches!(
                e,
                IpvsError::NotFound {
                    target: Target::VirtualServer(_)
                }
            )
        },
    );

    ipvs.add_real_server(web, pod_a, 1).await.unwrap();
    ipvs.add_real_server(web, pod_b, 2).await.unwrap();
    ipvs.add_real_server(dns6, pod6, 1).await.unwrap();
    assert_error(ipvs.add_real_server(web, pod_a, 1).await, |e| {
        matches!(
            e,
            IpvsError::AlreadyExists {
                target: Target::RealServer { .. }
            }
        )
    });
    assert_error(ipvs.add_real_server(missing, pod_a, 1).await, |e| {
        matches!(
            e,
            IpvsError::NotFound {
                target: Target::VirtualServer(_)
            }
        )
    });
    // Masquerading cannot cross address families (EINVAL) and weights are ints (ERANGE).
    assert_error(ipvs.add_real_server(web, pod6, 1).await, |e| {
        matches!(e, IpvsError::Rejected { .. })
    });
    assert_error(
        ipvs.add_real_server(web, rs("10.244.3.3", 1), 1 << 31)
            .await,
        |e| matches!(e, IpvsError::Rejected { .. }),
    );

    ipvs.update_real_server(web, pod_b, 0).await.unwrap();
    assert_error(
        ipvs.update_real_server(web, rs("10.244.9.9", 1), 1).await,
        |e| {
            matches!(
                e,
                IpvsError::NotFound {
                    target: Target::RealServer { .. }
                }
            )
        },
    );

    let listing = ipvs.list_virtual_servers().await.unwrap();
    assert_eq!(
        listing.keys().copied().collect::<Vec<_>>(),
        [web, dns6, sctp]
    );
    assert_eq!(
        listing[&web].params,
        Some(params(Scheduler::WeightedLeastConnection, Some(60)))
    );
    assert_eq!(
        listing[&dns6].params,
        Some(params(Scheduler::WeightedRoundRobin, Some(10800)))
    );
    assert_eq!(
        listing[&sctp].params,
        Some(params(Scheduler::SourceHashing, None))
    );
    assert_eq!(
        listing[&web].real_servers,
        BTreeMap::from([(pod_a, weighted(1)), (pod_b, weighted(0))])
    );
    assert_eq!(
        listing[&dns6].real_servers,
        BTreeMap::from([(pod6, weighted(1))])
    );
    assert_eq!(listing[&web].stats.connections, 0, "no traffic yet");
    let stats: BTreeMap<_, _> = listing.iter().map(|(key, vs)| (*key, vs.stats)).collect();
    assert_eq!(ipvs.list_stats().await.unwrap(), stats);

    ipvs.delete_real_server(web, pod_b).await.unwrap();
    assert_error(ipvs.delete_real_server(web, pod_b).await, |e| {
        matches!(
            e,
            IpvsError::NotFound {
                target: Target::RealServer { .. }
            }
        )
    });
    assert_error(ipvs.delete_real_server(missing, pod_b).await, |e| {
        matches!(
            e,
            IpvsError::NotFound {
                target: Target::VirtualServer(_)
            }
        )
    });
    ipvs.delete_virtual_server(sctp).await.unwrap();
    assert_error(ipvs.delete_virtual_server(sctp).await, |e| {
        matches!(
            e,
            IpvsError::NotFound {
                target: Target::VirtualServer(_)
            }
        )
    });

    let listing = ipvs.list_virtual_servers().await.unwrap();
    assert_eq!(listing.keys().copied().collect::<Vec<_>>(), [web, dns6]);
    assert_eq!(
        listing[&web].real_servers,
        BTreeMap::from([(pod_a, weighted(1))])
    );

    // Leave the namespace's IPVS empty for whatever runs next.
    ipvs.delete_virtual_server(web).await.unwrap();
    ipvs.delete_virtual_server(dns6).await.unwrap();
}

/// ipvsadm, the kernel's own client, sees what Ferry programs, and Ferry reads what ipvsadm
/// programs, including settings Ferry never uses.
pub async fn agrees_with_ipvsadm(ipvs: &impl Ipvs) {
    let web = vs(Protocol::Tcp, "10.96.0.1", 443);
    ipvs.add_virtual_server(web, &params(Scheduler::WeightedLeastConnection, Some(60)))
        .await
        .unwrap();
    ipvs.add_real_server(web, rs("10.244.1.5", 8443), 3)
        .await
        .unwrap();
    let shown = run(&["ipvsadm", "-Ln", "-t", "10.96.0.1:443"]);
    assert_eq!(
        words_of_line(&shown, "10.96.0.1:443"),
        ["TCP", "10.96.0.1:443", "wlc", "persistent", "60"]
    );
    assert_eq!(
        words_of_line(&shown, "10.244.1.5:8443")[..4],
        ["->", "10.244.1.5:8443", "Masq", "3"]
    );

    run(&["ipvsadm", "-A", "-u", "10.96.0.3:53", "-s", "lc"]);
    run(&[
        "ipvsadm",
        "-a",
        "-u",
        "10.96.0.3:53",
        "-r",
        "10.244.3.3:53",
        "-m",
        "-w",
        "5",
    ]);
    // Persistence per /24 of clients: not something Ferry programs.
    run(&[
        "ipvsadm",
        "-A",
        "-t",
        "10.96.0.4:80",
        "-s",
        "rr",
        "-p",
        "60",
        "-M",
        "255.255.255.0",
    ]);
    run(&[
        "ipvsadm",
        "-a",
        "-t",
        "10.96.0.4:80",
        "-r",
        "10.244.4.4:80",
        "-g",
    ]);
    run(&["ipvsadm", "-A", "-f", "7", "-s", "rr"]);

    let listing = ipvs.list_virtual_servers().await.unwrap();
    let dns = vs(Protocol::Udp, "10.96.0.3", 53);
    assert_eq!(
        listing[&dns].params,
        Some(params(Scheduler::LeastConnection, None))
    );
    assert_eq!(
        listing[&dns].real_servers[&rs("10.244.3.3", 53)],
        weighted(5)
    );
    let foreign = &listing[&vs(Protocol::Tcp, "10.96.0.4", 80)];
    assert_eq!(foreign.params, None, "a /24 persistence netmask is drift");
    assert!(
        !foreign.real_servers[&rs("10.244.4.4", 80)].masquerade,
        "direct routing"
    );
    assert_eq!(
        listing.len(),
        3,
        "the fwmark service is not listed: {listing:?}"
    );

    // Updating repairs what someone else changed.
    let foreign_key = vs(Protocol::Tcp, "10.96.0.4", 80);
    ipvs.update_virtual_server(foreign_key, &params(Scheduler::RoundRobin, None))
        .await
        .unwrap();
    ipvs.update_real_server(foreign_key, rs("10.244.4.4", 80), 1)
        .await
        .unwrap();
    let repaired = &ipvs.list_virtual_servers().await.unwrap()[&foreign_key];
    assert_eq!(repaired.params, Some(params(Scheduler::RoundRobin, None)));
    assert_eq!(repaired.real_servers[&rs("10.244.4.4", 80)], weighted(1));
}
