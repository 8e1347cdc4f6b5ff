//! `ferry_autoscaler_decisions_total{direction}`: rescales the Autoscaler controller made.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// Counts successful rescales by direction (`up` or `down`).
#[derive(Clone, Debug, Default)]
pub struct DecisionMetrics {
    decisions: Family<DirectionLabels, Counter>,
}

impl DecisionMetrics {
    /// Registers the counter as `ferry_autoscaler_decisions` (exposed with `_total`) in
    /// `registry`, which should carry no prefix of its own.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "ferry_autoscaler_decisions",
            "Rescales made by the Autoscaler controller, by direction",
            metrics.decisions.clone(),
        );
        metrics
    }

    /// Counts a rescale from `from` to `to` replicas.
    pub fn record(&self, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        self.decisions
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn counts_rescales_by_direction() {
        let mut registry = Registry::default();
        let metrics = DecisionMetrics::register(&mut registry);
        metrics.record(2, 5);
        metrics.record(5, 8);
        metrics.record(8, 3);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodable");
        assert!(
            text.contains("ferry_autoscaler_decisions_total{direction=\"up\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferry_autoscaler_decisions_total{direction=\"down\"} 1"),
            "{text}"
        );
    }
}
