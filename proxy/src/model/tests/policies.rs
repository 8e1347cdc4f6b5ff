//! Traffic policies, KEP-1669 endpoint selection, masquerading, source ranges, health checks
//! and hairpin.

use super::fixtures::*;
use crate::model::{HairpinEndpoint, Masquerade, ModelConfig, TrafficPolicy};

/// A LoadBalancer Service with a NodePort, an ingress IP and an external IP.
fn web(policy: impl FnOnce(&mut ServiceBuilder)) -> k8s_openapi::api::core::v1::Service {
    service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10")
            .tcp("http", 80)
            .node_port(30080)
            .load_balancer("172.18.255.1")
            .external_ip("198.51.100.7");
        policy(s);
    })
}

fn endpoints(
    build: impl FnOnce(&mut SliceBuilder),
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    slice("shop", "web-1", "web", |s| {
        s.tcp("http", 8080);
        build(s);
    })
}

#[test]
fn traffic_policies_choose_local_endpoints() {
    check_all(vec![
        Case {
            name: "externalTrafficPolicy Local: external frontends use local endpoints only",
            services: vec![web(|s| {
                s.external_local(Some(32000));
            })],
            slices: vec![endpoints(|s| {
                s.ready("10.244.1.5", THIS_NODE)
                    .ready("10.244.2.6", OTHER_NODE);
            })],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/172.18.255.1:80 load-balancer shop/web:http -> 10.244.1.5:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080",
                "TCP/198.51.100.7:80 external-ip shop/web:http -> 10.244.1.5:8080",
            ],
        },
        Case {
            name: "externalTrafficPolicy Local without a local endpoint: drop, not reject",
            services: vec![web(|s| {
                s.external_local(Some(32000));
            })],
            slices: vec![endpoints(|s| {
                s.ready("10.244.2.6", OTHER_NODE);
            })],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.2.6:8080",
                "TCP/172.18.255.1:80 load-balancer shop/web:http -> drop",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> drop",
                "TCP/198.51.100.7:80 external-ip shop/web:http -> drop",
            ],
        },
        Case {
            name: "internalTrafficPolicy Local: the ClusterIP uses local endpoints only",
            services: vec![web(|s| {
                s.internal_local();
            })],
            slices: vec![endpoints(|s| {
                s.ready("10.244.1.5", THIS_NODE)
                    .ready("10.244.2.6", OTHER_NODE);
            })],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080",
                "TCP/172.18.255.1:80 load-balancer shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/198.51.100.7:80 external-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "internalTrafficPolicy Local without a local endpoint: drop",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80).internal_local();
            })],
            slices: vec![endpoints(|s| {
                s.ready("10.244.2.6", OTHER_NODE);
            })],
            want: &["TCP/10.96.0.10:80 cluster-ip shop/web:http -> drop"],
        },
    ]);
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let svc = || {
        service("shop", "web", |s| {
            s.cluster_ip("10.96.0.10")
                .tcp("http", 80)
                .node_port(30080)
                .external_local(None);
        })
    };
    check_all(vec![
        Case {
            name: "ready endpoints win over serving terminating ones",
            services: vec![svc()],
            slices: vec![endpoints(|s| {
                s.ready("10.244.2.6", OTHER_NODE)
                    .terminating_serving("10.244.1.5", THIS_NODE)
                    .not_ready("10.244.2.7", OTHER_NODE);
            })],
            // The NodePort is Local: its own fallback finds the local terminating endpoint.
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080",
            ],
        },
        Case {
            name: "no ready endpoint: serving terminating ones, never not-serving ones",
            services: vec![svc()],
            slices: vec![endpoints(|s| {
                s.terminating_serving("10.244.2.6", OTHER_NODE)
                    .terminating_not_serving("10.244.1.5", THIS_NODE)
                    .not_ready("10.244.2.7", OTHER_NODE);
            })],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> drop",
            ],
        },
        Case {
            name: "only not-serving endpoints: reject",
            services: vec![svc()],
            slices: vec![endpoints(|s| {
                s.terminating_not_serving("10.244.1.5", THIS_NODE)
                    .not_ready("10.244.2.7", OTHER_NODE);
            })],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> reject",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> reject",
            ],
        },
    ]);
}

#[test]
fn masquerade_follows_frontend_kind_and_policy() {
    let ready = endpoints(|s| {
        s.ready("10.244.1.5", THIS_NODE);
    });
    let cases = [
        (
            "Cluster policy",
            TrafficPolicy::Cluster,
            default_config(),
            Masquerade::FromOutsideCluster,
            Masquerade::Always,
        ),
        (
            "Local policy",
            TrafficPolicy::Local,
            default_config(),
            Masquerade::FromOutsideCluster,
            Masquerade::Never,
        ),
        (
            "unknown cluster CIDR",
            TrafficPolicy::Cluster,
            ModelConfig::default(),
            Masquerade::Always,
            Masquerade::Always,
        ),
        (
            "masquerade all",
            TrafficPolicy::Local,
            ModelConfig {
                masquerade_all: true,
                ..default_config()
            },
            Masquerade::Always,
            Masquerade::Never,
        ),
    ];
    for (name, policy, config, cluster_ip, external) in cases {
        let svc = web(|s| {
            if policy == TrafficPolicy::Local {
                s.external_local(None);
            }
        });
        let desired = model_with(&[svc], std::slice::from_ref(&ready), &config);
        for frontend in desired.virtual_servers().values() {
            let want = if frontend.kind.is_external() {
                external
            } else {
                cluster_ip
            };
            assert_eq!(frontend.masquerade, want, "{name}: {:?}", frontend.kind);
        }
    }
}

#[test]
fn source_ranges_apply_to_load_balancer_frontends_only() {
    let svc = web(|s| {
        s.source_range("203.0.113.0/24")
            .source_range(" 192.0.2.1/24 ");
    });
    let desired = model(&[svc], &[]);
    let ranges: Vec<(String, Vec<String>)> = desired
        .source_ranges()
        .map(|(key, ranges)| {
            (
                key.to_string(),
                ranges.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        [(
            "TCP/172.18.255.1:80".to_owned(),
            vec!["192.0.2.0/24".to_owned(), "203.0.113.0/24".to_owned()]
        )]
    );
}

#[test]
fn dropped_frontends_are_the_local_ones_without_local_endpoints() {
    let svc = web(|s| {
        s.external_local(Some(32000));
    });
    let remote_only = endpoints(|s| {
        s.ready("10.244.2.6", OTHER_NODE);
    });
    let desired = model(&[svc], &[remote_only]);
    let dropped: Vec<String> = desired
        .dropped_frontends()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        dropped,
        [
            "TCP/172.18.255.1:80",
            "TCP/192.168.1.10:30080",
            "TCP/198.51.100.7:80"
        ]
    );
}

#[test]
fn health_check_counts_local_endpoints_of_local_services() {
    let cases = [
        (
            "two local, one remote",
            Some(32000),
            vec!["10.244.1.5", "10.244.1.6"],
            Some(2),
        ),
        ("none local", Some(32000), vec![], Some(0)),
        (
            "Cluster policy has no health check",
            None,
            vec!["10.244.1.5"],
            None,
        ),
    ];
    for (name, health_port, local, want) in cases {
        let svc = web(|s| {
            if let Some(port) = health_port {
                s.external_local(Some(port));
            }
        });
        let slice = endpoints(|s| {
            s.ready("10.244.2.6", OTHER_NODE);
            for address in &local {
                s.ready(address, THIS_NODE);
            }
        });
        let desired = model(&[svc], &[slice]);
        let checks: Vec<_> = desired.health_checks().collect();
        let got = checks
            .first()
            .map(|check| (check.node_port, check.local_endpoints));
        assert_eq!(got, want.map(|count| (32000, count)), "{name}");
    }
}

#[test]
fn hairpin_lists_local_endpoints_in_use() {
    let svc = service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10").tcp("http", 80);
    });
    let slice = endpoints(|s| {
        s.ready("10.244.1.5", THIS_NODE)
            .ready("10.244.2.6", OTHER_NODE)
            .not_ready("10.244.1.7", THIS_NODE);
    });
    let hairpin: Vec<String> = model(&[svc], &[slice])
        .hairpin_endpoints()
        .iter()
        .map(|HairpinEndpoint { protocol, endpoint }| format!("{protocol}/{endpoint}"))
        .collect();
    assert_eq!(hairpin, ["TCP/10.244.1.5:8080"]);
}
