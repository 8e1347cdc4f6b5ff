//! The per-metric replica calculation: HPA's replica calculator cases (tolerance, missing
//! samples, pods not yet ready for CPU) and the connection-rate rule. Every pod requests one
//! core unless a case says otherwise, so usage in millicores reads as tenths of a percent.

mod autoscaler_support;

use autoscaler_support::*;
use ferry_operator::api::{MetricType, ResourceName};
use ferry_operator::autoscaler::{Missing, PodPhase, Readiness};
use k8s_openapi::jiff::SignedDuration;

/// (case, current replicas, target %, CPU usage per pod (None = no sample), expected replicas)
type UtilizationCase = (&'static str, i32, i32, &'static [Option<i64>], i32);

#[test]
fn cpu_utilization_cases() {
    let cases: &[UtilizationCase] = &[
        (
            "scale up: 50% against 30% on 3 pods",
            3,
            30,
            &[Some(300), Some(500), Some(700)],
            5,
        ),
        (
            "scale down: 28% against 50% on 5 pods",
            5,
            50,
            &[Some(100), Some(300), Some(500), Some(250), Some(250)],
            3,
        ),
        (
            "within tolerance: 102% against 100%",
            3,
            100,
            &[Some(1010), Some(1030), Some(1020)],
            3,
        ),
        (
            "just outside tolerance: 112% against 100%",
            3,
            100,
            &[Some(1120), Some(1120), Some(1120)],
            4,
        ),
        (
            "missing sample, scale up: the missing pod counts as idle",
            3,
            50,
            &[Some(1000), Some(1000), None],
            4,
        ),
        (
            "missing sample, scale down: the missing pod counts as at target",
            4,
            50,
            &[Some(100), Some(100), Some(100), None],
            3,
        ),
        (
            "missing sample turns a scale up into no change",
            2,
            100,
            &[Some(1900), None],
            2,
        ),
        (
            "missing sample turns a scale down into no change",
            2,
            100,
            &[Some(600), None],
            2,
        ),
        (
            "idle pods ask for 0, held at minReplicas 1",
            4,
            50,
            &[Some(0), Some(0), Some(0), Some(0)],
            1,
        ),
    ];
    for &(case, current, target, usage, expected) in cases {
        let decision = decide(
            &spec(1, 100, vec![cpu_utilization(target)]),
            current,
            pods_using(usage),
        );
        assert_eq!(
            decision.desired_replicas, expected,
            "{case}: {}",
            decision.explanation
        );
    }
}

#[test]
fn the_documented_ratio_examples() {
    // desired = ceil(current × current value / target value): 200m against 100m doubles,
    // 50m against 100m halves.
    let doubled = decide(
        &spec(1, 10, vec![cpu_average("100m")]),
        2,
        pods_using(&[Some(200), Some(200)]),
    );
    assert_eq!(doubled.desired_replicas, 4);
    let halved = decide(
        &spec(1, 10, vec![cpu_average("100m")]),
        4,
        pods_using(&[Some(50); 4]),
    );
    assert_eq!(halved.desired_replicas, 2, "{}", halved.explanation);
}

#[test]
fn status_reports_utilization_and_the_raw_average() {
    let decision = decide(
        &spec(1, 10, vec![cpu_utilization(30)]),
        3,
        pods_using(&[Some(300), Some(500), Some(700)]),
    );
    let status = &decision.current_metrics[0];
    assert_eq!(status.type_, MetricType::Resource);
    assert_eq!(status.resource, Some(ResourceName::Cpu));
    assert_eq!(status.average_utilization, Some(50));
    assert_eq!(
        status.average_value.as_ref().map(|q| q.0.as_str()),
        Some("500m")
    );
    assert!(
        decision
            .explanation
            .contains("cpu utilization 50% of request (target 30%)"),
        "{}",
        decision.explanation
    );
}

#[test]
fn an_unready_starting_pod_counts_as_idle_on_a_scale_up() {
    // p0 started a minute ago and is not ready: its CPU (a start-up burst) is ignored, and on a
    // scale-up it counts as idle: 1200m of 3 cores = 40% against 30% → ceil(1.33 × 3) = 4.
    let starting = pod_with("p0", |p| {
        p.start_time = Some(at(-60));
        p.ready = Some(Readiness {
            ready: false,
            last_transition: at(-60),
        });
    });
    let observed = observe(
        vec![starting, pod("p1"), pod("p2")],
        &[Some(3000), Some(500), Some(700)],
    );
    let decision = decide(&spec(1, 10, vec![cpu_utilization(30)]), 3, observed);
    assert_eq!(decision.desired_replicas, 4, "{}", decision.explanation);
    assert_eq!(
        decision.current_metrics[0].average_utilization,
        Some(60),
        "measured over ready pods only"
    );
}

#[test]
fn a_pending_pod_counts_as_idle_on_a_scale_up() {
    let pending = pod_with("p0", |p| p.phase = PodPhase::Pending);
    let observed = observe(
        vec![pending, pod("p1"), pod("p2")],
        &[None, Some(500), Some(700)],
    );
    let decision = decide(&spec(1, 10, vec![cpu_utilization(30)]), 3, observed);
    assert_eq!(decision.desired_replicas, 4);
}

#[test]
fn unready_pods_are_not_assumed_idle_on_a_scale_down() {
    // The ignored pod is left out entirely when the ready pods say scale down.
    let starting = pod_with("p0", |p| {
        p.start_time = Some(at(-60));
        p.ready = Some(Readiness {
            ready: false,
            last_transition: at(-60),
        });
    });
    let observed = observe(
        vec![starting, pod("p1"), pod("p2")],
        &[Some(0), Some(100), Some(100)],
    );
    let decision = decide(&spec(1, 10, vec![cpu_utilization(50)]), 3, observed);
    assert_eq!(
        decision.desired_replicas, 1,
        "10% over 2 ready pods → ceil(0.2 × 2)"
    );
}

#[test]
fn a_ready_pod_sampled_partly_before_it_became_ready_is_ignored() {
    // Within the CPU initialization period, a sample must cover only time since readiness.
    let just_ready = pod_with("p0", |p| {
        p.start_time = Some(at(-60));
        p.ready = Some(Readiness {
            ready: true,
            last_transition: at(-10),
        });
    });
    let observed = observe(vec![just_ready, pod("p1")], &[Some(2000), Some(500)]);
    let decision = decide(&spec(1, 10, vec![cpu_utilization(50)]), 2, observed);
    assert_eq!(
        decision.desired_replicas, 2,
        "p1 alone is at target; p0's burst is ignored"
    );
}

#[test]
fn a_pod_that_was_ready_and_later_became_unready_still_counts_for_cpu() {
    let struggling = pod_with("p0", |p| {
        p.ready = Some(Readiness {
            ready: false,
            last_transition: at(-60),
        })
    });
    let observed = observe(vec![struggling, pod("p1")], &[Some(1000), Some(1000)]);
    let decision = decide(&spec(1, 10, vec![cpu_utilization(50)]), 2, observed);
    assert_eq!(decision.desired_replicas, 4);
}

#[test]
fn pod_readiness_does_not_matter_for_memory() {
    let starting = pod_with("p0", |p| {
        p.start_time = Some(at(-5));
        p.ready = None;
    });
    let mut observed = observe(vec![starting, pod("p1")], &[Some(0), Some(0)]);
    let gib = 1_i64 << 40;
    for usage in observed.pod_usage.as_mut().expect("usage").values_mut() {
        usage.memory_milli = gib;
    }
    let decision = decide(&spec(1, 10, vec![memory_utilization(50)]), 2, observed);
    assert_eq!(
        decision.desired_replicas, 4,
        "both pods at 100% of their memory request"
    );
}

#[test]
fn finished_and_deleted_pods_are_left_out() {
    let failed = pod_with("p0", |p| p.phase = PodPhase::Failed);
    let deleting = pod_with("p1", |p| p.deleting = true);
    let observed = observe(
        vec![failed, deleting, pod("p2"), pod("p3")],
        &[Some(9000), Some(9000), Some(600), Some(600)],
    );
    let decision = decide(&spec(1, 10, vec![cpu_utilization(50)]), 2, observed);
    assert_eq!(
        decision.desired_replicas, 3,
        "60% over p2 and p3 → ceil(1.2 × 2)"
    );
}

#[test]
fn resource_metric_failures_name_the_cause() {
    let target = spec(1, 10, vec![cpu_utilization(50)]);
    let cases = [
        (
            "no pods",
            observe(vec![], &[]),
            "no pods returned by selector",
        ),
        (
            "no samples",
            pods_using(&[None, None]),
            "did not receive metrics for targeted pods",
        ),
        (
            "no request",
            observe(
                vec![pod_with("p0", |p| p.cpu_request_milli = None)],
                &[Some(100)],
            ),
            "missing request for cpu in a container of pod p0",
        ),
        (
            "zero requests",
            observe(
                vec![pod_with("p0", |p| p.cpu_request_milli = Some(0))],
                &[Some(100)],
            ),
            "requests add up to zero",
        ),
        (
            "metrics API absent",
            ferry_operator::autoscaler::Observed {
                pod_usage: Err(Missing(
                    "the server could not find the requested resource".to_owned(),
                )),
                ..pods_using(&[Some(1)])
            },
            "unable to get metrics for resource cpu",
        ),
    ];
    for (case, observed, message) in cases {
        let decision = decide(&target, 2, observed);
        assert_eq!(
            decision.desired_replicas, 2,
            "{case}: holds the current count"
        );
        assert_eq!(
            condition(&decision, "ScalingActive"),
            (false, "FailedGetResourceMetric".to_owned()),
            "{case}"
        );
        assert!(
            decision.conditions[0].message.contains(message),
            "{case}: {}",
            decision.conditions[0].message
        );
    }
}

/// (case, current, ready replicas, rate per second, target per replica, expected)
type ConnectionsCase = (&'static str, i32, usize, f64, &'static str, i32);

#[test]
fn connection_rate_cases() {
    let cases: &[ConnectionsCase] = &[
        ("ceil(250/s ÷ 50/s)", 2, 2, 250.0, "50", 5),
        (
            "within tolerance: 52.5/s per replica against 50",
            2,
            2,
            105.0,
            "50",
            2,
        ),
        ("scale down: 20/s over 4", 4, 4, 20.0, "50", 1),
        (
            "fractional target: 3/s at 500m per replica",
            2,
            2,
            3.0,
            "500m",
            6,
        ),
        (
            "overloaded but with fewer ready than current: never down",
            10,
            5,
            80.0,
            "10",
            10,
        ),
        ("no ready replica, no load: never down", 3, 0, 0.0, "50", 3),
        (
            "no ready replica, load: up (10 wanted, the default rate allows 3 + 4)",
            3,
            0,
            500.0,
            "50",
            7,
        ),
    ];
    for &(case, current, ready, rate, target, expected) in cases {
        let decision = decide(
            &spec(1, 20, vec![connections("web", target)]),
            current,
            connection_rate("web", ready, Ok(rate)),
        );
        assert_eq!(
            decision.desired_replicas, expected,
            "{case}: {}",
            decision.explanation
        );
    }
}

#[test]
fn connection_status_is_the_rate_per_ready_replica() {
    let decision = decide(
        &spec(1, 20, vec![connections("web", "50")]),
        2,
        connection_rate("web", 2, Ok(250.0)),
    );
    let status = &decision.current_metrics[0];
    assert_eq!(status.service.as_deref(), Some("web"));
    assert_eq!(
        status.average_value.as_ref().map(|q| q.0.as_str()),
        Some("125")
    );
    assert!(
        decision.explanation.contains("connections to web 250.0/s"),
        "{}",
        decision.explanation
    );
}

#[test]
fn bad_connection_input_is_a_condition_not_a_panic() {
    let cases = [
        ("zero target", "0", Ok(100.0), "InvalidMetricSourceType"),
        (
            "unparseable target",
            "fast",
            Ok(100.0),
            "InvalidMetricSourceType",
        ),
        ("NaN rate", "50", Ok(f64::NAN), "FailedGetConnectionsMetric"),
        (
            "negative rate",
            "50",
            Ok(-1.0),
            "FailedGetConnectionsMetric",
        ),
        (
            "unreachable proxy",
            "50",
            Err("proxy on node2 unreachable"),
            "FailedGetConnectionsMetric",
        ),
    ];
    for (case, target, rate, reason) in cases {
        let decision = decide(
            &spec(1, 20, vec![connections("web", target)]),
            3,
            connection_rate("web", 3, rate),
        );
        assert_eq!(decision.desired_replicas, 3, "{case}");
        assert_eq!(
            condition(&decision, "ScalingActive"),
            (false, reason.to_owned()),
            "{case}"
        );
    }
}

#[test]
fn cpu_initialization_period_is_the_documented_five_minutes() {
    let delays = ferry_operator::autoscaler::ReadinessDelays::default();
    assert_eq!(
        delays.cpu_initialization_period,
        SignedDuration::from_mins(5)
    );
    assert_eq!(
        delays.initial_readiness_delay,
        SignedDuration::from_secs(30)
    );
}
