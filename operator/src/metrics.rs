//! The operator's Prometheus metrics, served on `/metrics`: reconciles, failures by error
//! label, reconcile duration and reconciles in flight per controller, and leadership.

use std::fmt;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    error: &'static str,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Reconcile durations from 5ms to about 80s.
fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: HistogramFamily,
    in_flight: Family<ControllerLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::default();
        let failures = Family::default();
        let duration = HistogramFamily::new_with_constructor(duration_histogram);
        let in_flight = Family::default();
        let leader = Gauge::default();
        registry.register(
            "ferry_operator_reconciles",
            "Reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "ferry_operator_reconcile_failures",
            "Reconciles that failed, by error",
            failures.clone(),
        );
        registry.register(
            "ferry_operator_reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        registry.register(
            "ferry_operator_reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        registry.register(
            "ferry_operator_leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            in_flight,
            leader,
        }
    }

    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        let in_flight = self.in_flight.get_or_create_owned(&labels);
        in_flight.inc();
        ReconcileTimer {
            histogram: self.duration.get_or_create_owned(&labels),
            in_flight,
            started: Instant::now(),
        }
    }

    /// The registry, for controllers that bring metrics of their own (register before the
    /// metrics are shared).
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn reconcile_failed(&self, controller: &'static str, error: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, error })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Records a reconcile's duration when dropped, however the reconcile ends.
pub struct ReconcileTimer {
    histogram: Histogram,
    in_flight: Gauge,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
        self.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_timed_and_labelled() {
        let metrics = Metrics::new();
        {
            let _timer = metrics.reconcile_started("app");
            assert!(
                metrics
                    .encode()
                    .unwrap()
                    .contains("ferry_operator_reconciles_in_flight{controller=\"app\"} 1")
            );
        }
        metrics.reconcile_failed("app", "api_conflict");
        metrics.set_leader(true);
        let text = metrics.encode().unwrap();
        for line in [
            "ferry_operator_reconciles_total{controller=\"app\"} 1",
            "ferry_operator_reconcile_failures_total{controller=\"app\",error=\"api_conflict\"} 1",
            "ferry_operator_reconcile_duration_seconds_count{controller=\"app\"} 1",
            "ferry_operator_reconciles_in_flight{controller=\"app\"} 0",
            "ferry_operator_leader 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
