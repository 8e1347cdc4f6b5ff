//! Partial rebuilds agree with full ones, and colliding Services are settled by precedence.

use proptest::prelude::*;

use super::fixtures::*;
use crate::model::input::{endpoint_slice_info, service_info};
use crate::model::{Desired, FrontendKind, Snapshot, desired};

#[test]
fn a_cluster_ip_wins_over_an_external_ip_that_copies_it() {
    let victim = service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10").tcp("http", 80);
    });
    let attacker = service("aaa", "mitm", |s| {
        s.cluster_ip("10.96.0.99")
            .tcp("http", 80)
            .external_ip("10.96.0.10");
    });
    let desired = model(&[victim, attacker], &[]);
    let holder = &desired.virtual_servers()[&"TCP/10.96.0.10:80".parse_key()];
    assert_eq!(holder.kind, FrontendKind::ClusterIp);
    assert_eq!(holder.service.to_string(), "shop/web:http");
    let conflicts: Vec<_> = desired
        .conflicts()
        .map(|(k, f)| format!("{k} {}", f.service))
        .collect();
    assert_eq!(conflicts, ["TCP/10.96.0.10:80 aaa/mitm:http"]);
}

#[test]
fn a_shadowed_claim_takes_over_when_the_holder_goes() {
    let first = service("a", "one", |s| {
        s.cluster_ip("10.96.0.1")
            .tcp("http", 80)
            .external_ip("198.51.100.7");
    });
    let second = service("b", "two", |s| {
        s.cluster_ip("10.96.0.2")
            .tcp("http", 80)
            .external_ip("198.51.100.7");
    });
    let node = context(&this_node(), &default_config());
    let mut snapshot = snapshot(&[first, second], &[]);
    let mut incremental = desired(&snapshot, &node);
    let key = "TCP/198.51.100.7:80".parse_key();
    assert_eq!(
        incremental.virtual_servers()[&key].service.to_string(),
        "a/one:http"
    );

    let first_name = crate::model::ServiceName::new("a", "one");
    snapshot.remove_service(&first_name);
    incremental.update_service(&snapshot, &first_name, &node);
    assert_eq!(
        incremental.virtual_servers()[&key].service.to_string(),
        "b/two:http"
    );
    assert_eq!(incremental.conflicts().count(), 0);
    assert_eq!(incremental, desired(&snapshot, &node));
}

trait ParseKey {
    fn parse_key(&self) -> crate::model::types::VirtualServerKey;
}

impl ParseKey for str {
    /// `TCP/10.96.0.10:80` (IPv4 only, enough for these tests).
    fn parse_key(&self) -> crate::model::types::VirtualServerKey {
        let (protocol, rest) = self.split_once('/').expect("PROTO/ADDR:PORT");
        let (address, port) = rest.split_once(':').expect("ADDR:PORT");
        crate::model::types::VirtualServerKey {
            protocol: match protocol {
                "TCP" => crate::model::types::Protocol::Tcp,
                "UDP" => crate::model::types::Protocol::Udp,
                _ => crate::model::types::Protocol::Sctp,
            },
            address: address.parse().expect("address"),
            port: port.parse().expect("port"),
        }
    }
}

/// One change a watcher may see: a Service (re)applied or deleted, a slice (re)applied or
/// deleted. Services and slices come from small pools so changes collide.
#[derive(Debug, Clone)]
enum Change {
    Service {
        index: usize,
        external: bool,
        node_port: bool,
    },
    DeleteService(usize),
    Slice {
        index: usize,
        endpoints: Vec<(u8, bool, bool)>,
    },
    DeleteSlice(usize),
}

fn change() -> impl Strategy<Value = Change> {
    let endpoint = (1u8..6, any::<bool>(), any::<bool>());
    prop_oneof![
        (0usize..4, any::<bool>(), any::<bool>()).prop_map(|(index, external, node_port)| {
            Change::Service {
                index,
                external,
                node_port,
            }
        }),
        (0usize..4).prop_map(Change::DeleteService),
        (0usize..6, proptest::collection::vec(endpoint, 0..4))
            .prop_map(|(index, endpoints)| Change::Slice { index, endpoints }),
        (0usize..6).prop_map(Change::DeleteSlice),
    ]
}

/// Applies a change to the snapshot; returns the Services it affected.
fn apply(snapshot: &mut Snapshot, change: &Change) -> Vec<crate::model::ServiceName> {
    let service_name = |index: usize| crate::model::ServiceName::new("ns", format!("svc{index}"));
    let slice_of = |index: usize| (index % 4, format!("slice{index}"));
    match change {
        Change::Service {
            index,
            external,
            node_port,
        } => {
            let svc = service("ns", &format!("svc{index}"), |s| {
                s.cluster_ip(&format!("10.96.0.{index}")).tcp("http", 80);
                if *node_port {
                    s.node_port(30000 + *index as i32);
                }
                if *external {
                    // Every Service claims the same external IP: collisions on purpose.
                    s.external_ip("198.51.100.7");
                }
            });
            let info = service_info(&svc).expect("valid").value;
            snapshot.upsert_service(info);
            vec![service_name(*index)]
        }
        Change::DeleteService(index) => {
            snapshot.remove_service(&service_name(*index));
            vec![service_name(*index)]
        }
        Change::Slice { index, endpoints } => {
            let (service_index, name) = slice_of(*index);
            let s = slice("ns", &name, &format!("svc{service_index}"), |s| {
                s.tcp("http", 8080);
                for &(host, local, ready) in endpoints {
                    let node = if local { THIS_NODE } else { OTHER_NODE };
                    let address = format!("10.244.{}.{host}", if local { 1 } else { 2 });
                    if ready {
                        s.ready(&address, node)
                    } else {
                        s.terminating_serving(&address, node)
                    };
                }
            });
            snapshot.upsert_slice(endpoint_slice_info(&s).expect("valid").value)
        }
        Change::DeleteSlice(index) => {
            let name = crate::model::SliceName {
                namespace: "ns".into(),
                name: slice_of(*index).1,
            };
            snapshot.remove_slice(&name).into_iter().collect()
        }
    }
}

proptest! {
    /// A change tracker that rebuilds only the affected Services ends where a full build does.
    #[test]
    fn partial_rebuilds_equal_a_full_build(changes in proptest::collection::vec(change(), 1..30)) {
        let node = context(&this_node(), &default_config());
        let mut snapshot = Snapshot::default();
        let mut incremental = Desired::default();
        for change in &changes {
            for name in apply(&mut snapshot, change) {
                incremental.update_service(&snapshot, &name, &node);
            }
            prop_assert_eq!(&incremental, &desired(&snapshot, &node));
        }
    }
}
