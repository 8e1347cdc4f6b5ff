//! Stabilization windows and rate policies, replayed over time with `Simulation`: each step
//! is (seconds after T0, replicas the load asks for); the result is the replicas after it.

mod autoscaler_support;

use autoscaler_support::*;
use ferry_operator::api::{
    ScalingBehavior, ScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy,
};
use ferry_operator::autoscaler::{Behavior, History};
use k8s_openapi::jiff::SignedDuration;

fn policy(type_: ScalingPolicyType, value: i32, period_seconds: i32) -> ScalingPolicy {
    ScalingPolicy {
        type_,
        value,
        period_seconds,
    }
}

fn rules(
    window: Option<i32>,
    select: Option<SelectPolicy>,
    policies: Vec<ScalingPolicy>,
) -> Option<ScalingRules> {
    Some(ScalingRules {
        stabilization_window_seconds: window,
        select_policy: select,
        policies: Some(policies),
    })
}

fn scale_down(rules: Option<ScalingRules>) -> Option<ScalingBehavior> {
    Some(ScalingBehavior {
        scale_up: None,
        scale_down: rules,
    })
}

fn scale_up(rules: Option<ScalingRules>) -> Option<ScalingBehavior> {
    Some(ScalingBehavior {
        scale_up: rules,
        scale_down: None,
    })
}

#[test]
fn defaults_are_hpas() {
    let behavior = Behavior::default();
    assert_eq!(behavior.scale_up.stabilization_window, SignedDuration::ZERO);
    assert_eq!(
        behavior.scale_down.stabilization_window,
        SignedDuration::from_secs(300)
    );
    assert_eq!(behavior.scale_up.select_policy, SelectPolicy::Max);
    let up: Vec<_> = behavior
        .scale_up
        .policies
        .iter()
        .map(|p| (p.type_, p.value, p.period.as_secs()))
        .collect();
    assert_eq!(
        up,
        [
            (ScalingPolicyType::Pods, 4, 15),
            (ScalingPolicyType::Percent, 100, 15)
        ]
    );
    let down: Vec<_> = behavior
        .scale_down
        .policies
        .iter()
        .map(|p| (p.type_, p.value, p.period.as_secs()))
        .collect();
    assert_eq!(down, [(ScalingPolicyType::Percent, 100, 15)]);
}

#[test]
fn defaults_fill_only_the_fields_left_out() {
    let behavior = Behavior::from_spec(
        scale_down(Some(ScalingRules {
            stabilization_window_seconds: Some(60),
            select_policy: None,
            policies: Some(vec![]),
        }))
        .as_ref(),
    );
    assert_eq!(
        behavior.scale_down.stabilization_window,
        SignedDuration::from_secs(60)
    );
    assert_eq!(
        behavior.scale_down.policies.len(),
        1,
        "an empty policy list counts as unset"
    );
    assert_eq!(behavior.scale_up, Behavior::default().scale_up);
}

#[test]
fn default_scale_up_adds_the_larger_of_4_pods_and_100_percent_per_15_seconds() {
    let mut sim = Simulation::new(1, 100, 1, None);
    // 1 → 5 (1 + 4 beats doubling), 15 s later 5 → 10 (doubling beats + 4), then 20, 40.
    assert_eq!(
        sim.run(&[(0, 60), (5, 60), (15, 60), (30, 60), (45, 60)]),
        [5, 5, 10, 20, 40]
    );
    let limited = sim.step(50, 60);
    assert_eq!(
        condition(&limited, "ScalingLimited"),
        (true, "ScaleUpLimit".to_owned())
    );
    assert_eq!(sim.step(60, 60).desired_replicas, 60);
}

#[test]
fn default_scale_down_waits_for_the_300_second_window() {
    let mut sim = Simulation::new(1, 100, 10, None);
    sim.history = History::default();
    // Load asks for 10 at T0, then drops to 2: the highest recommendation of the last 300 s
    // holds the count until the 10 ages out; then 100% per 15 s allows going straight to 2.
    let replicas = sim.run(&[(0, 10), (15, 2), (150, 2), (299, 2), (301, 2)]);
    assert_eq!(replicas, [10, 10, 10, 10, 2]);
}

#[test]
fn a_stabilized_scale_down_says_so() {
    let mut sim = Simulation::new(1, 100, 10, None);
    sim.step(0, 10);
    let held = sim.step(30, 4);
    assert_eq!(held.desired_replicas, 10);
    assert_eq!(
        condition(&held, "AbleToScale"),
        (true, "ScaleDownStabilized".to_owned())
    );
    assert_eq!(held.reason.as_str(), "ScaleDownStabilized");
}

#[test]
fn the_window_applies_the_highest_recent_recommendation() {
    let window = scale_down(rules(
        Some(60),
        None,
        vec![policy(ScalingPolicyType::Percent, 100, 15)],
    ));
    let mut sim = Simulation::new(1, 100, 10, window);
    // Recommendations 10, 8, 6, 3: each step applies the highest of the last 60 s.
    let replicas = sim.run(&[(0, 10), (20, 8), (40, 6), (70, 3), (90, 3), (110, 3)]);
    assert_eq!(replicas, [10, 10, 10, 8, 6, 3]);
}

#[test]
fn a_scale_up_window_applies_the_lowest_recent_recommendation() {
    let window = scale_up(rules(
        Some(30),
        None,
        vec![policy(ScalingPolicyType::Percent, 900, 15)],
    ));
    let mut sim = Simulation::new(1, 100, 2, window);
    // A spike to 9 at 0 s is not acted on until recommendations stay high for 30 s.
    let replicas = sim.run(&[(-20, 2), (0, 9), (10, 3), (20, 9), (35, 9), (41, 9)]);
    assert_eq!(replicas, [2, 2, 3, 3, 3, 9]);
}

#[test]
fn the_documented_scale_down_policies_remove_10_percent_or_4_pods_per_minute() {
    // Pods 4 per 60 s and Percent 10 per 60 s, Max: from 80 toward 10 the first step removes
    // 8, then 72 → 64 (7.2 rounds up to 8); below 40 replicas 4 pods a minute wins.
    let policies = vec![
        policy(ScalingPolicyType::Pods, 4, 60),
        policy(ScalingPolicyType::Percent, 10, 60),
    ];
    let mut sim = Simulation::new(1, 100, 80, scale_down(rules(Some(0), None, policies)));
    let steps: Vec<(i64, i32)> = (0..12).map(|minute| (minute * 61, 10)).collect();
    assert_eq!(
        sim.run(&steps),
        [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16]
    );
}

#[test]
fn select_policy_min_takes_the_policy_that_changes_least() {
    // Percent 10 or 5 pods per minute, Min: at 100 replicas 5 pods (not 10), at 40 replicas
    // 4 pods (not 5).
    let policies = vec![
        policy(ScalingPolicyType::Percent, 10, 60),
        policy(ScalingPolicyType::Pods, 5, 60),
    ];
    let mut sim = Simulation::new(
        1,
        100,
        100,
        scale_down(rules(Some(0), Some(SelectPolicy::Min), policies.clone())),
    );
    assert_eq!(sim.step(0, 1).desired_replicas, 95);
    let mut sim = Simulation::new(
        1,
        100,
        40,
        scale_down(rules(Some(0), Some(SelectPolicy::Min), policies)),
    );
    assert_eq!(sim.step(0, 1).desired_replicas, 36);
}

#[test]
fn select_policy_disabled_stops_that_direction_only() {
    let disabled = scale_down(rules(
        Some(0),
        Some(SelectPolicy::Disabled),
        vec![policy(ScalingPolicyType::Pods, 1, 15)],
    ));
    let mut sim = Simulation::new(1, 100, 5, disabled);
    let held = sim.step(0, 1);
    assert_eq!(held.desired_replicas, 5);
    assert_eq!(
        condition(&held, "ScalingLimited"),
        (true, "ScaleDownLimit".to_owned())
    );
    assert_eq!(
        sim.step(15, 9).desired_replicas,
        9,
        "scaling up still works"
    );
}

#[test]
fn changes_within_a_period_count_against_its_allowance() {
    // One pod per 60 s: the second step within the minute may not add another.
    let one_per_minute = scale_up(rules(
        None,
        None,
        vec![policy(ScalingPolicyType::Pods, 1, 60)],
    ));
    let mut sim = Simulation::new(1, 100, 1, one_per_minute);
    assert_eq!(
        sim.run(&[(0, 5), (30, 5), (59, 5), (61, 5), (122, 5)]),
        [2, 2, 2, 3, 4]
    );
}

#[test]
fn a_scale_down_in_the_period_widens_the_next_scale_up_allowance() {
    // Period start = current − added + removed: after 4 → 2 within the minute, the Percent
    // 100 policy measures from 4 and allows up to 8.
    let behavior = Some(ScalingBehavior {
        scale_up: rules(
            None,
            None,
            vec![policy(ScalingPolicyType::Percent, 100, 60)],
        ),
        scale_down: rules(
            Some(0),
            None,
            vec![policy(ScalingPolicyType::Percent, 100, 60)],
        ),
    });
    let mut sim = Simulation::new(1, 100, 4, behavior);
    assert_eq!(sim.run(&[(0, 2), (10, 20)]), [2, 8]);
}

#[test]
fn a_restarted_controller_waits_a_full_window_before_scaling_down() {
    // The history is in memory only; a new process seeds it with the current size.
    let mut sim = Simulation::new(1, 100, 6, None);
    sim.history = History::seeded(at(0), 6);
    assert_eq!(sim.run(&[(10, 2), (299, 2), (301, 2)]), [6, 6, 2]);
}

#[test]
fn stabilization_uses_recommendations_not_the_clamped_result() {
    // Recommendations above maxReplicas still hold a later scale-down within the window.
    let mut sim = Simulation::new(1, 8, 8, None);
    let first = sim.step(0, 50);
    assert_eq!(first.desired_replicas, 8);
    assert_eq!(
        condition(&first, "ScalingLimited"),
        (true, "TooManyReplicas".to_owned())
    );
    assert_eq!(sim.step(100, 2).desired_replicas, 8);
}
