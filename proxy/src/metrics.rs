//! The proxy's Prometheus metrics (prefix `ferry_proxy`), served on `/metrics`.
//!
//! Label values are `&'static str` from closed sets (sync kinds, op kinds, error reasons,
//! object kinds), except the per-Service connection counter, whose series are removed when
//! their Service goes away.

use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    address: String,
}

/// A Service, as the connection counter labels it (the operator's Autoscaler reads these).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub service: String,
}

/// Runs before each scrape, to refresh what is cheaper to read on demand than to keep current
/// (the IPVS connection counters).
pub trait ScrapeHook: Send + Sync {
    fn before_scrape(&self) -> BoxFuture<'_, ()>;
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Sync durations from 1 ms to about 65 s.
fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// From 10 ms to about 20 min: a change can wait behind a minimum sync period, a failed sync
/// and its backoff.
fn programming_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    sync_duration: HistogramFamily<SyncLabels>,
    network_programming: Histogram,
    ops_applied: Family<OpLabels, Counter>,
    sync_errors: Family<ErrorLabels, Counter>,
    services_programmed: Gauge,
    endpoints_programmed: Gauge,
    skipped_objects: Family<SkipLabels, Counter>,
    service_connections: Family<ServiceLabels, Counter>,
    l2_announced: Family<AddressLabels, Gauge>,
    l2_failovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ferry_proxy");
        let sync_duration = HistogramFamily::<SyncLabels>::new_with_constructor(sync_histogram);
        let network_programming = programming_histogram();
        let ops_applied = Family::default();
        let sync_errors = Family::default();
        let services_programmed = Gauge::default();
        let endpoints_programmed = Gauge::default();
        let skipped_objects = Family::default();
        let service_connections = Family::default();
        let l2_announced = Family::default();
        let l2_failovers = Counter::default();
        registry.register(
            "sync_duration_seconds",
            "Time a sync took, by kind (full: the kernel state is read back; partial: changed Services only)",
            sync_duration.clone(),
        );
        registry.register(
            "network_programming_duration_seconds",
            "Time from an EndpointSlice change (its last-change-trigger-time) to the end of the sync that programmed it",
            network_programming.clone(),
        );
        registry.register(
            "ops_applied",
            "Kernel operations applied, by kind",
            ops_applied.clone(),
        );
        registry.register(
            "sync_errors",
            "Syncs that failed, by reason",
            sync_errors.clone(),
        );
        registry.register(
            "services_programmed",
            "Services with at least one frontend programmed",
            services_programmed.clone(),
        );
        registry.register(
            "endpoints_programmed",
            "Endpoints programmed, summed over every frontend",
            endpoints_programmed.clone(),
        );
        registry.register(
            "skipped_objects",
            "Objects or fields skipped as invalid, by kind and reason",
            skipped_objects.clone(),
        );
        registry.register(
            "service_connections",
            "New connections to each Service's frontends (IPVS: virtual server counters; nftables: Service chain counters)",
            service_connections.clone(),
        );
        registry.register(
            "l2_announced",
            "1 for each LoadBalancer IP this node answers ARP/NDP for (l2 announcement)",
            l2_announced.clone(),
        );
        registry.register(
            "l2_failovers",
            "LoadBalancer IPs this node took over from another node",
            l2_failovers.clone(),
        );
        Self {
            registry,
            sync_duration,
            network_programming,
            ops_applied,
            sync_errors,
            services_programmed,
            endpoints_programmed,
            skipped_objects,
            service_connections,
            l2_announced,
            l2_failovers,
        }
    }

    pub fn observe_sync(&self, kind: &'static str, took: Duration) {
        self.sync_duration
            .get_or_create(&SyncLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn observe_network_programming(&self, took: Duration) {
        self.network_programming.observe(took.as_secs_f64());
    }

    pub fn count_ops(&self, kind: &'static str, count: u64) {
        self.ops_applied
            .get_or_create(&OpLabels { kind })
            .inc_by(count);
    }

    pub fn count_sync_error(&self, reason: &'static str) {
        self.sync_errors
            .get_or_create(&ErrorLabels { reason })
            .inc();
    }

    pub fn set_programmed(&self, services: usize, endpoints: usize) {
        self.services_programmed.set(gauge_value(services));
        self.endpoints_programmed.set(gauge_value(endpoints));
    }

    pub fn count_skipped(&self, kind: &'static str, reason: &'static str) {
        self.skipped_objects
            .get_or_create(&SkipLabels { kind, reason })
            .inc();
    }

    pub fn add_service_connections(&self, service: &ServiceLabels, connections: u64) {
        self.service_connections
            .get_or_create(service)
            .inc_by(connections);
    }

    /// Drops the series of a Service that is no longer programmed.
    pub fn forget_service_connections(&self, service: &ServiceLabels) {
        self.service_connections.remove(service);
    }

    /// The addresses this node announces now; the series of the others go away.
    pub fn set_l2_announced(&self, addresses: &std::collections::BTreeSet<std::net::IpAddr>) {
        self.l2_announced.clear();
        for address in addresses {
            let labels = AddressLabels {
                address: address.to_string(),
            };
            self.l2_announced.get_or_create(&labels).set(1);
        }
    }

    pub fn count_l2_failovers(&self, count: usize) {
        self.l2_failovers.inc_by(count as u64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autoscaler_finds_the_connection_counter() {
        let metrics = Metrics::new();
        let web = ServiceLabels {
            namespace: "default".into(),
            service: "web".into(),
        };
        metrics.add_service_connections(&web, 7);
        metrics.add_service_connections(&web, 3);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"ferry_proxy_service_connections_total{namespace="default",service="web"} 10"#
            ),
            "{text}"
        );
        metrics.forget_service_connections(&web);
        assert!(!metrics.encode().unwrap().contains("service=\"web\""));
    }

    #[test]
    fn every_family_has_the_prefix() {
        let metrics = Metrics::new();
        metrics.observe_sync("full", Duration::from_millis(3));
        metrics.count_ops("add_virtual_server", 2);
        metrics.count_sync_error("ipvs");
        metrics.count_skipped("Service", "no_usable_ports");
        metrics.set_programmed(4, 9);
        let text = metrics.encode().unwrap();
        for line in [
            r#"ferry_proxy_sync_duration_seconds_count{kind="full"} 1"#,
            r#"ferry_proxy_ops_applied_total{kind="add_virtual_server"} 2"#,
            r#"ferry_proxy_sync_errors_total{reason="ipvs"} 1"#,
            r#"ferry_proxy_skipped_objects_total{kind="Service",reason="no_usable_ports"} 1"#,
            "ferry_proxy_services_programmed 4",
            "ferry_proxy_endpoints_programmed 9",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn announced_addresses_are_a_series_each_and_failovers_a_counter() {
        let metrics = Metrics::new();
        let ip = |text: &str| -> std::net::IpAddr { text.parse().unwrap() };
        metrics.set_l2_announced(&[ip("192.0.2.1"), ip("2001:db8::1")].into());
        metrics.count_l2_failovers(1);
        let text = metrics.encode().unwrap();
        for line in [
            r#"ferry_proxy_l2_announced{address="192.0.2.1"} 1"#,
            r#"ferry_proxy_l2_announced{address="2001:db8::1"} 1"#,
            "ferry_proxy_l2_failovers_total 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.set_l2_announced(&[ip("2001:db8::1")].into());
        assert!(
            !metrics.encode().unwrap().contains("192.0.2.1"),
            "a stale series"
        );
    }
}
