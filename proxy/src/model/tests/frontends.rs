//! Which virtual servers each kind of Service gets, and with which real servers.

use super::fixtures::*;
use crate::model::input::SERVICE_PROXY_NAME_LABEL;

fn web_endpoints() -> k8s_openapi::api::discovery::v1::EndpointSlice {
    slice("shop", "web-1", "web", |s| {
        s.tcp("http", 8080)
            .ready("10.244.1.5", THIS_NODE)
            .ready("10.244.2.6", OTHER_NODE);
    })
}

#[test]
fn every_service_type_gets_its_frontends() {
    check_all(vec![
        Case {
            name: "ClusterIP",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80);
            })],
            slices: vec![web_endpoints()],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "NodePort listens on the node's InternalIPs of the Service's family only",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80).node_port(30080);
            })],
            slices: vec![web_endpoints()],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "LoadBalancer: ClusterIP, NodePort and ingress IP",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .node_port(30080)
                    .load_balancer("172.18.255.1");
            })],
            slices: vec![web_endpoints()],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/172.18.255.1:80 load-balancer shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "LoadBalancer ingress with ipMode Proxy is delivered to the NodePort",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .ingress("172.18.255.1", Some("Proxy"))
                    .ingress("172.18.255.2", Some("VIP"));
            })],
            slices: vec![web_endpoints()],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/172.18.255.2:80 load-balancer shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "externalIPs",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .external_ip("198.51.100.7");
            })],
            slices: vec![web_endpoints()],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/198.51.100.7:80 external-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "UDP and SCTP, ports matched by name and protocol",
            services: vec![service("kube-system", "dns", |s| {
                s.cluster_ip("10.96.0.53")
                    .udp("dns", 53)
                    .tcp("dns-tcp", 53)
                    .port("sigtran", "SCTP", 2905);
            })],
            slices: vec![slice("kube-system", "dns-1", "dns", |s| {
                s.udp("dns", 5353)
                    .tcp("dns-tcp", 5353)
                    .port("sigtran", "SCTP", 2905)
                    .port("dns", "TCP", 9999)
                    .ready("10.244.1.3", THIS_NODE);
            })],
            want: &[
                "TCP/10.96.0.53:53 cluster-ip kube-system/dns:dns-tcp -> 10.244.1.3:5353",
                "UDP/10.96.0.53:53 cluster-ip kube-system/dns:dns -> 10.244.1.3:5353",
                "SCTP/10.96.0.53:2905 cluster-ip kube-system/dns:sigtran -> 10.244.1.3:2905",
            ],
        },
        Case {
            name: "dual stack: each family gets the endpoints of its family",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .cluster_ip("fd00:10:96::10")
                    .tcp("http", 80)
                    .node_port(30080);
            })],
            slices: vec![
                web_endpoints(),
                slice("shop", "web-v6", "web", |s| {
                    s.ipv6()
                        .tcp("http", 8080)
                        .ready("fd00:10:244:1::5", THIS_NODE);
                }),
            ],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
                "TCP/[fd00:10:96::10]:80 cluster-ip shop/web:http -> [fd00:10:244:1::5]:8080",
                "TCP/[fd00:192:168:1::10]:30080 node-port shop/web:http -> [fd00:10:244:1::5]:8080",
            ],
        },
        Case {
            name: "slices of other Services, or of the same name elsewhere, are not used",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80);
            })],
            slices: vec![
                slice("shop", "api-1", "api", |s| {
                    s.tcp("http", 8080).ready("10.244.1.9", THIS_NODE);
                }),
                slice("other", "web-1", "web", |s| {
                    s.tcp("http", 8080).ready("10.244.1.8", THIS_NODE);
                }),
                slice("shop", "web-1", "web", |s| {
                    s.tcp("metrics", 9090).ready("10.244.1.7", THIS_NODE);
                }),
            ],
            want: &["TCP/10.96.0.10:80 cluster-ip shop/web:http -> reject"],
        },
        Case {
            name: "endpoints from several slices are merged and de-duplicated",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80);
            })],
            slices: vec![
                slice("shop", "web-1", "web", |s| {
                    s.tcp("http", 8080)
                        .ready("10.244.1.5", THIS_NODE)
                        .not_ready("10.244.2.6", OTHER_NODE);
                }),
                slice("shop", "web-2", "web", |s| {
                    s.tcp("http", 8080)
                        .ready("10.244.2.6", OTHER_NODE)
                        .ready("10.244.1.5", THIS_NODE);
                }),
            ],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> 10.244.1.5:8080 10.244.2.6:8080",
            ],
        },
        Case {
            name: "no endpoints: reject",
            services: vec![service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80).node_port(30080);
            })],
            slices: vec![],
            want: &[
                "TCP/10.96.0.10:80 cluster-ip shop/web:http -> reject",
                "TCP/192.168.1.10:30080 node-port shop/web:http -> reject",
            ],
        },
        Case {
            name: "headless, ExternalName and other proxies' Services are not served",
            services: vec![
                service("shop", "web", |s| {
                    s.headless().tcp("http", 80);
                }),
                service("shop", "db", |s| {
                    s.external_name("db.example.com").tcp("pg", 5432);
                }),
                service("shop", "mesh", |s| {
                    s.cluster_ip("10.96.0.11")
                        .tcp("http", 80)
                        .label(SERVICE_PROXY_NAME_LABEL, "other-proxy");
                }),
            ],
            slices: vec![web_endpoints()],
            want: &[],
        },
    ]);
}

#[test]
fn node_port_addresses_follow_the_configured_cidrs() {
    let web = service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10").tcp("http", 80).node_port(30080);
    });
    let cases: &[(&[&str], &[&str])] = &[
        (&["0.0.0.0/0"], &["192.168.1.10", "203.0.113.10"]),
        (&["203.0.113.0/24"], &["203.0.113.10"]),
        (
            &["127.0.0.1/32", "192.168.0.0/16"],
            &["127.0.0.1", "192.168.1.10"],
        ),
        (&["::/0"], &[]),
        (&["10.0.0.0/8"], &[]),
    ];
    for (cidrs, want) in cases {
        let config = crate::model::ModelConfig {
            node_port_addresses: Some(cidrs.iter().map(|c| c.parse().expect("CIDR")).collect()),
            ..default_config()
        };
        let desired = model_with(std::slice::from_ref(&web), &[web_endpoints()], &config);
        let got: Vec<String> = desired
            .virtual_servers()
            .keys()
            .filter(|key| key.port == 30080)
            .map(|key| key.address.to_string())
            .collect();
        assert_eq!(got, *want, "nodePortAddresses {cidrs:?}");
    }
}

#[test]
fn affinity_and_scheduler_set_the_virtual_server_params() {
    use crate::model::types::Scheduler;
    use std::time::Duration;
    let cases = [
        (
            service("shop", "a", |s| {
                s.cluster_ip("10.96.0.20").tcp("http", 80);
            }),
            Scheduler::RoundRobin,
            None,
        ),
        (
            service("shop", "b", |s| {
                s.cluster_ip("10.96.0.21").tcp("http", 80).affinity(None);
            }),
            Scheduler::RoundRobin,
            Some(10_800),
        ),
        (
            service("shop", "c", |s| {
                s.cluster_ip("10.96.0.22")
                    .tcp("http", 80)
                    .affinity(Some(60))
                    .scheduler("wlc");
            }),
            Scheduler::WeightedLeastConnection,
            Some(60),
        ),
        (
            service("shop", "d", |s| {
                s.cluster_ip("10.96.0.23")
                    .tcp("http", 80)
                    .scheduler("fastest");
            }),
            Scheduler::RoundRobin,
            None,
        ),
    ];
    for (svc, scheduler, persistence) in cases {
        let desired = model(std::slice::from_ref(&svc), &[]);
        let (key, frontend) = desired
            .virtual_servers()
            .iter()
            .next()
            .expect("one frontend");
        assert_eq!(frontend.server.params.scheduler, scheduler, "{key}");
        assert_eq!(
            frontend.server.params.persistence,
            persistence.map(Duration::from_secs),
            "{key}"
        );
    }
}

#[test]
fn only_service_addresses_are_bound_and_udp_frontends_are_listed() {
    let svc = service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10")
            .udp("dns", 53)
            .node_port(30053)
            .load_balancer("172.18.255.1")
            .external_ip("198.51.100.7");
    });
    let desired = model(&[svc], &[]);
    let bound: Vec<String> = desired
        .bound_addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(bound, ["10.96.0.10", "172.18.255.1", "198.51.100.7"]);
    let udp: Vec<String> = desired.udp_frontends().map(ToString::to_string).collect();
    assert_eq!(
        udp,
        [
            "UDP/10.96.0.10:53",
            "UDP/172.18.255.1:53",
            "UDP/192.168.1.10:30053",
            "UDP/198.51.100.7:53"
        ]
    );
}
