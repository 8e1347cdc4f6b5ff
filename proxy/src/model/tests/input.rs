//! Converting API objects: what is skipped, what is dropped with a warning, and that nothing
//! panics.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;

use super::fixtures::*;
use crate::model::input::{
    Ignored, InputError, MAX_SLICE_ENDPOINTS, SERVICE_PROXY_NAME_LABEL, Skip, endpoint_slice_info,
    node_info, service_info,
};
use crate::model::{EndpointConditions, NodeAddressKind};

#[track_caller]
fn skip_reason(svc: &Service) -> Skip {
    service_info(svc).expect_err("the Service is skipped")
}

#[track_caller]
fn warnings(svc: &Service) -> Vec<&'static str> {
    let converted = service_info(svc).expect("the Service is served");
    converted
        .warnings
        .iter()
        .map(InputError::metric_label)
        .collect()
}

#[test]
fn services_not_to_serve_are_ignored_with_a_reason() {
    let cases = [
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .label(SERVICE_PROXY_NAME_LABEL, "cilium");
            }),
            Skip::Ignored(Ignored::OtherProxy("cilium".into())),
        ),
        (
            service("shop", "web", |s| {
                s.headless().tcp("http", 80);
            }),
            Skip::Ignored(Ignored::Headless),
        ),
        (
            service("shop", "web", |s| {
                s.external_name("db.example.com");
            }),
            Skip::Ignored(Ignored::ExternalName),
        ),
    ];
    for (svc, want) in cases {
        assert_eq!(skip_reason(&svc), want);
    }
}

#[test]
fn broken_services_are_invalid() {
    let cases = [
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10");
            }),
            "no_usable_ports",
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("a", 0)
                    .port("b", "QUIC", 443)
                    .tcp("c", 70000);
            }),
            "no_usable_ports",
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.300").tcp("http", 80);
            }),
            "no_cluster_ip",
        ),
        (
            service("shop", "web", |s| {
                s.tcp("http", 80);
            }),
            "no_cluster_ip",
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80);
                for i in 0..300 {
                    s.external_ip(&format!("198.51.100.{}", i % 250));
                }
            }),
            "too_large",
        ),
    ];
    for (svc, want) in cases {
        match skip_reason(&svc) {
            Skip::Invalid(error) => assert_eq!(error.metric_label(), want, "{error}"),
            other => panic!("expected {want}, got {other:?}"),
        }
    }
}

#[test]
fn bad_fields_are_dropped_with_a_warning() {
    let cases = [
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .port("quic", "QUIC", 443);
            }),
            vec!["unsupported_protocol"],
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .external_ip("not-an-ip")
                    .external_ip("fd00::7");
            }),
            vec!["unparsable_address", "wrong_family"],
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10").tcp("http", 80).affinity(Some(0));
            }),
            vec!["affinity_timeout"],
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .scheduler("fastest");
            }),
            vec!["unknown_scheduler"],
        ),
        (
            service("shop", "web", |s| {
                s.cluster_ip("10.96.0.10")
                    .tcp("http", 80)
                    .load_balancer("172.18.255.1")
                    .source_range("everyone");
            }),
            vec!["unparsable_cidr", "no_valid_source_range"],
        ),
    ];
    for (svc, want) in cases {
        assert_eq!(warnings(&svc), want);
    }
}

#[test]
fn invalid_source_ranges_never_open_a_load_balancer_to_everyone() {
    let svc = service("shop", "web", |s| {
        s.cluster_ip("10.96.0.10")
            .tcp("http", 80)
            .load_balancer("172.18.255.1")
            .source_range("everyone");
    });
    let info = service_info(&svc).expect("served").value;
    assert!(info.load_balancer_ips.is_empty());
}

#[test]
fn slices_convert_with_api_defaults() {
    let mut s = slice("shop", "web-1", "web", |s| {
        s.tcp("http", 8080).ready("10.244.1.5", THIS_NODE);
    });
    s.endpoints[0].conditions = None;
    let info = endpoint_slice_info(&s).expect("served").value;
    assert_eq!(info.service.to_string(), "shop/web");
    assert_eq!(info.endpoints[0].conditions, EndpointConditions::READY);
}

#[test]
fn broken_slices_are_skipped_or_trimmed() {
    let fqdn = {
        let mut s = slice("shop", "web-1", "web", |_| {});
        s.address_type = "FQDN".into();
        s
    };
    assert_eq!(
        endpoint_slice_info(&fqdn),
        Err(Skip::Ignored(Ignored::AddressType("FQDN".into())))
    );

    let unlabelled = {
        let mut s = slice("shop", "web-1", "web", |_| {});
        s.metadata.labels = None;
        s
    };
    assert_eq!(
        endpoint_slice_info(&unlabelled),
        Err(Skip::Invalid(InputError::MissingServiceLabel))
    );

    let huge = slice("shop", "web-1", "web", |s| {
        for i in 0..=MAX_SLICE_ENDPOINTS {
            s.ready(&format!("10.244.{}.{}", i / 250, i % 250), THIS_NODE);
        }
    });
    assert!(matches!(
        endpoint_slice_info(&huge),
        Err(Skip::Invalid(InputError::TooLarge { .. }))
    ));

    let mixed = slice("shop", "web-1", "web", |s| {
        s.tcp("http", 8080)
            .tcp("bad", -1)
            .ready("10.244.1.5", THIS_NODE)
            .ready("fd00:10:244:1::5", THIS_NODE)
            .ready("10.244.1.999", THIS_NODE);
    });
    let converted = endpoint_slice_info(&mixed).expect("served");
    let labels: Vec<_> = converted
        .warnings
        .iter()
        .map(InputError::metric_label)
        .collect();
    assert_eq!(
        labels,
        ["port_out_of_range", "wrong_family", "unparsable_address"]
    );
    assert_eq!(converted.value.ports.len(), 1);
    assert_eq!(converted.value.endpoints.len(), 1);
}

#[test]
fn nodes_keep_internal_and_external_ips() {
    let node = node_info(&this_node()).expect("converts").value;
    let kinds: Vec<_> = node
        .addresses
        .iter()
        .map(|a| (a.address.to_string(), a.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("192.168.1.10".to_owned(), NodeAddressKind::InternalIp),
            ("fd00:192:168:1::10".to_owned(), NodeAddressKind::InternalIp),
            ("203.0.113.10".to_owned(), NodeAddressKind::ExternalIp),
        ]
    );
}

fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("10.96.0.10".to_owned()),
        Just("fd00::1".to_owned()),
        Just("None".to_owned()),
        Just(String::new()),
        "[0-9a-fA-F:./ ]{0,20}",
    ]
}

proptest! {
    /// Whatever the API server lets through (or a forged object), conversion returns a value.
    #[test]
    fn conversion_never_panics(
        ips in proptest::collection::vec(arbitrary_text(), 0..4),
        ports in proptest::collection::vec((any::<i32>(), "TCP|UDP|SCTP|[A-Z]{0,4}", any::<Option<i32>>()), 0..4),
        ranges in proptest::collection::vec(arbitrary_text(), 0..3),
        service_type in "ClusterIP|NodePort|LoadBalancer|ExternalName|[a-z]{0,3}",
        endpoint_addresses in proptest::collection::vec(arbitrary_text(), 0..4),
        address_type in "IPv4|IPv6|FQDN|",
    ) {
        let svc = service("shop", "web", |s| {
            for ip in &ips {
                s.cluster_ip(ip).external_ip(ip).ingress(ip, None);
            }
            for (port, protocol, node_port) in &ports {
                s.port("p", protocol, *port);
                if let Some(node_port) = node_port {
                    s.node_port(*node_port);
                }
            }
            for range in &ranges {
                s.source_range(range);
            }
            s.0.spec.as_mut().expect("spec").type_ = Some(service_type.clone());
        });
        let _ = service_info(&svc);
        let mut endpoints: EndpointSlice = slice("shop", "web-1", "web", |s| {
            for address in &endpoint_addresses {
                s.ready(address, THIS_NODE);
            }
        });
        endpoints.address_type = address_type;
        let _ = endpoint_slice_info(&endpoints);
    }
}
