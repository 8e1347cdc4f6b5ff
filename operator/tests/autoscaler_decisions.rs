//! Whole decisions: min/max, several metrics and missing ones, the conditions reported, and
//! bad input that must end in a condition rather than a panic or zero replicas.

mod autoscaler_support;

use autoscaler_support::*;
use ferry_operator::autoscaler::{History, Input, Missing, Observed, recommend};
use proptest::prelude::*;
use proptest::{collection, option};

/// `pods` pods each using `cpu_milli` of their one-core request, and the connection rate of
/// Service web (or why it is missing).
fn cpu_and_connections(pods: usize, cpu_milli: i64, connections: Result<f64, &str>) -> Observed {
    let mut observed = pods_using(&vec![Some(cpu_milli); pods]);
    observed.connections = connection_rate("web", pods, connections).connections;
    observed
}

#[test]
fn min_and_max_bound_the_metrics() {
    let cases = [
        ("wants 40, max 10", 8, 5000, 10, "TooManyReplicas"),
        ("wants 1, min 3", 4, 100, 3, "TooFewReplicas"),
        ("wants 6 within range", 4, 750, 6, "DesiredWithinRange"),
    ];
    for (case, current, cpu_milli, expected, reason) in cases {
        let pods = usize::try_from(current).expect("positive");
        let decision = decide(
            &spec(3, 10, vec![cpu_utilization(50)]),
            current,
            pods_using(&vec![Some(cpu_milli); pods]),
        );
        assert_eq!(
            decision.desired_replicas, expected,
            "{case}: {}",
            decision.explanation
        );
        let limited = reason != "DesiredWithinRange";
        assert_eq!(
            condition(&decision, "ScalingLimited"),
            (limited, reason.to_owned()),
            "{case}"
        );
        assert_eq!(
            condition(&decision, "ScalingActive"),
            (true, "ValidMetricFound".to_owned()),
            "{case}"
        );
    }
}

#[test]
fn a_target_outside_the_range_is_brought_back_without_metrics() {
    let target = spec(2, 5, vec![cpu_utilization(50)]);
    let above = decide(&target, 9, pods_using(&[]));
    assert_eq!(
        (above.desired_replicas, above.reason.as_str()),
        (5, "TooManyReplicas")
    );
    let below = decide(&target, 1, pods_using(&[]));
    assert_eq!(
        (below.desired_replicas, below.reason.as_str()),
        (2, "TooFewReplicas")
    );
}

#[test]
fn a_target_scaled_to_zero_is_left_alone() {
    let decision = decide(&spec(1, 5, vec![cpu_utilization(50)]), 0, pods_using(&[]));
    assert_eq!(decision.desired_replicas, 0);
    assert_eq!(
        condition(&decision, "ScalingActive"),
        (false, "ScalingDisabled".to_owned())
    );
}

#[test]
fn never_scales_to_zero() {
    let decision = decide(
        &spec(0, 5, vec![cpu_utilization(50)]),
        3,
        pods_using(&[Some(0), Some(0), Some(0)]),
    );
    assert_eq!(decision.desired_replicas, 1, "minReplicas 0 is read as 1");
}

#[test]
fn the_largest_proposal_wins() {
    // CPU at 25% against 50% asks for 2 of 4, connections at 300/s against 50/s for 6.
    let target = spec(1, 10, vec![cpu_utilization(50), connections("web", "50")]);
    let decision = decide(&target, 4, cpu_and_connections(4, 250, Ok(300.0)));
    assert_eq!(decision.desired_replicas, 6);
    assert_eq!(decision.current_metrics.len(), 2);
    assert!(
        decision
            .explanation
            .starts_with("connections to service web above target"),
        "{}",
        decision.explanation
    );
    assert!(
        decision.explanation.contains("cpu utilization 25%"),
        "the event shows every metric: {}",
        decision.explanation
    );
}

#[test]
fn a_missing_metric_blocks_a_scale_down_but_not_a_scale_up() {
    let target = spec(1, 10, vec![cpu_utilization(50), connections("web", "50")]);
    // CPU says 2, connections are missing: no scale-down on partial data.
    let down = decide(
        &target,
        4,
        cpu_and_connections(4, 250, Err("proxy on node2 unreachable")),
    );
    assert_eq!(down.desired_replicas, 4);
    assert_eq!(
        condition(&down, "ScalingActive"),
        (false, "FailedGetConnectionsMetric".to_owned())
    );
    assert!(
        down.conditions[0]
            .message
            .contains("not scaling down while 1 of 2 metrics are unavailable")
    );
    assert_eq!(
        down.current_metrics.len(),
        1,
        "the CPU value is still reported"
    );
    assert_eq!(
        down.history,
        History::default(),
        "a held decision is not a recommendation"
    );
    // CPU says 8: scale up on what is known.
    let up = decide(
        &target,
        4,
        cpu_and_connections(4, 1000, Err("proxy on node2 unreachable")),
    );
    assert_eq!(up.desired_replicas, 8);
    assert_eq!(
        condition(&up, "ScalingActive"),
        (true, "ValidMetricFound".to_owned())
    );
}

#[test]
fn all_metrics_missing_holds_with_the_first_failure() {
    let target = spec(1, 10, vec![cpu_utilization(50), connections("web", "50")]);
    let observed = Observed {
        pod_usage: Err(Missing("metrics.k8s.io is not served".to_owned())),
        ..cpu_and_connections(3, 0, Err("no scrape yet"))
    };
    let decision = decide(&target, 3, observed);
    assert_eq!(decision.desired_replicas, 3);
    assert_eq!(
        condition(&decision, "ScalingActive"),
        (false, "FailedGetResourceMetric".to_owned())
    );
    assert!(
        decision
            .conditions
            .iter()
            .all(|c| c.type_.as_str() == "ScalingActive"),
        "others keep their value"
    );
}

#[test]
fn bad_specs_end_in_conditions() {
    let mut inverted = spec(5, 2, vec![cpu_utilization(50)]);
    let decision = decide(&inverted, 3, pods_using(&[Some(500); 3]));
    assert_eq!(
        (decision.desired_replicas, decision.reason.as_str()),
        (3, "InvalidReplicaRange")
    );

    inverted.min_replicas = Some(1);
    inverted.metrics.clear();
    let no_metrics = decide(&inverted, 2, pods_using(&[Some(500); 2]));
    assert_eq!(
        condition(&no_metrics, "ScalingActive"),
        (false, "InvalidMetricSourceType".to_owned())
    );

    let mut mismatched = cpu_utilization(50);
    mismatched.resource = None;
    let decision = decide(
        &spec(1, 5, vec![mismatched]),
        2,
        pods_using(&[Some(500); 2]),
    );
    assert_eq!(
        condition(&decision, "ScalingActive"),
        (false, "InvalidMetricSourceType".to_owned())
    );

    let decision = decide(
        &spec(1, 5, vec![cpu_average("lots")]),
        2,
        pods_using(&[Some(500); 2]),
    );
    assert_eq!(
        condition(&decision, "ScalingActive"),
        (false, "InvalidMetricSourceType".to_owned())
    );
}

#[test]
fn an_unusable_tolerance_falls_back_to_the_default() {
    for tolerance in [f64::NAN, f64::INFINITY, -0.5] {
        let mut input = Input::from_spec(
            &spec(1, 10, vec![cpu_utilization(100)]),
            3,
            pods_using(&[Some(1050); 3]),
            History::default(),
            t0(),
        );
        input.tolerance = tolerance;
        assert_eq!(
            recommend(&input).desired_replicas,
            3,
            "105% is within the default 10% ({tolerance})"
        );
    }
}

#[test]
fn a_decision_that_moves_reports_every_condition() {
    let decision = decide(
        &spec(1, 10, vec![cpu_utilization(50)]),
        2,
        pods_using(&[Some(1000), Some(1000)]),
    );
    assert_eq!(decision.desired_replicas, 4);
    assert_eq!(
        condition(&decision, "AbleToScale"),
        (true, "ReadyForNewScale".to_owned())
    );
    assert_eq!(
        condition(&decision, "ScalingActive"),
        (true, "ValidMetricFound".to_owned())
    );
    assert_eq!(
        condition(&decision, "ScalingLimited"),
        (false, "DesiredWithinRange".to_owned())
    );
    assert_eq!(decision.reason.as_str(), "DesiredWithinRange");
    assert!(
        decision
            .explanation
            .starts_with("cpu resource utilization (percentage of request) above target")
    );
}

proptest! {
    /// Whatever the metrics say, the count stays within [max(minReplicas, 1), maxReplicas]
    /// and nothing panics, not even on NaN or infinite inputs.
    #[test]
    fn decisions_stay_within_bounds(
        current in 1..60_i32,
        min in 0..10_i32,
        extra in 0..40_i32,
        target in 1..300_i32,
        usage in collection::vec(option::of(0..20_000_i64), 0..12),
        rate in prop_oneof![0.0..10_000.0_f64, Just(f64::NAN), Just(f64::INFINITY)],
        tolerance in prop_oneof![0.0..1.0_f64, Just(f64::NAN)],
    ) {
        let max = min.max(1) + extra;
        let mut target_spec = spec(min, max, vec![cpu_utilization(target), connections("web", "7")]);
        target_spec.tolerance = Some(tolerance);
        let mut observed = pods_using(&usage);
        observed.connections = connection_rate("web", usage.len(), Ok(rate)).connections;
        let decision = decide(&target_spec, current, observed);
        prop_assert!((min.max(1)..=max).contains(&decision.desired_replicas), "{decision:?}");
    }
}
