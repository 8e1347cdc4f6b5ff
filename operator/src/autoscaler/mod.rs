//! The Autoscaler's algorithm as a pure function: observations in, a replica count and the
//! status conditions out. It follows the HorizontalPodAutoscaler step by step:
//!
//! 1. a target scaled to zero is left alone (autoscaling disabled), and one outside
//!    `[minReplicas, maxReplicas]` is brought back inside;
//! 2. every metric proposes a count (`replicas.rs`); the largest wins, but if a metric is
//!    missing and the others would scale down, nothing changes, since a scale-down on
//!    partial data could remove capacity that the missing metric needs;
//! 3. the proposal is stabilized over the recent recommendations (`behavior.rs`), then bounded
//!    by the rate policies and by min/max.
//!
//! Nothing here talks to the API; `controllers/autoscaler.rs` gathers the input and acts on
//! the output.

mod behavior;
mod conditions;
mod history;
mod pods;
pub mod quantity;
mod replicas;

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

pub use behavior::{Behavior, DEFAULT_SCALE_DOWN_WINDOW, Policy, Rules};
pub use conditions::{AutoscalerCondition, ConditionType, Reason, merge as merge_conditions};
pub use history::History;
pub use pods::{PodPhase, PodSample, PodUsage, Readiness, ReadinessDelays};
pub use replicas::{Failure, Proposal};

use crate::api::{AutoscalerSpec, MetricSpec, MetricStatus};

/// The tolerance when the spec gives none (or an unusable one).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// Why a metric's data is unavailable, in words for a condition message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

/// What the controller observed for one Autoscaler's target.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Pods matched by the target's scale selector.
    pub pods: Vec<PodSample>,
    /// Usage per pod name from metrics.k8s.io, or why it could not be read.
    pub pod_usage: Result<BTreeMap<String, PodUsage>, Missing>,
    /// New connections per second per Service name, summed over every proxy.
    pub connections: BTreeMap<String, Result<f64, Missing>>,
}

/// Everything one decision depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub now: Timestamp,
    /// The target's desired replicas (its scale's `spec.replicas`).
    pub current_replicas: i32,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub tolerance: f64,
    pub metrics: Vec<MetricSpec>,
    pub behavior: Behavior,
    pub delays: ReadinessDelays,
    pub observed: Observed,
    pub history: History,
}

impl Input {
    /// The input for `spec`, with HPA's defaults for what the spec leaves out.
    pub fn from_spec(
        spec: &AutoscalerSpec,
        current_replicas: i32,
        observed: Observed,
        history: History,
        now: Timestamp,
    ) -> Self {
        Self {
            now,
            current_replicas,
            min_replicas: spec.min_replicas.unwrap_or(1),
            max_replicas: spec.max_replicas,
            tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
            metrics: spec.metrics.clone(),
            behavior: Behavior::from_spec(spec.behavior.as_ref()),
            delays: ReadinessDelays::default(),
            observed,
            history,
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The replica count to set; equal to the current count when nothing should change.
    pub desired_replicas: i32,
    /// What settled the count: a limit or stabilization reason, `DesiredWithinRange`, or
    /// the reason scaling is inactive.
    pub reason: Reason,
    /// Conditions to set; those not listed keep their previous value (as in HPA, a failed
    /// metric leaves AbleToScale and ScalingLimited as they were).
    pub conditions: Vec<AutoscalerCondition>,
    /// The observed value of each metric that could be read, in spec order.
    pub current_metrics: Vec<MetricStatus>,
    /// Why the count changes and the metric values behind it, for the scaling Event.
    pub explanation: String,
    /// The history to keep for the next decision.
    pub history: History,
}

/// Decides the replica count for one Autoscaler. Never proposes zero replicas, never panics.
pub fn recommend(input: &Input) -> Recommendation {
    let current = input.current_replicas;
    let min = input.min_replicas.max(1);
    let max = input.max_replicas;
    if max < min {
        let message = format!("minReplicas ({min}) is greater than maxReplicas ({max})");
        return hold(input, Reason::InvalidReplicaRange, message, Vec::new());
    }
    if current <= 0 {
        let message = "scaling is disabled since the replica count of the target is zero";
        return hold(
            input,
            Reason::ScalingDisabled,
            message.to_owned(),
            Vec::new(),
        );
    }
    if current > max {
        return bring_within_range(
            input,
            max,
            Reason::TooManyReplicas,
            "Current number of replicas above maxReplicas",
        );
    }
    if current < min {
        return bring_within_range(
            input,
            min,
            Reason::TooFewReplicas,
            "Current number of replicas below minReplicas",
        );
    }
    scale_on_metrics(input, (min, max))
}

fn scale_on_metrics(input: &Input, bounds: (i32, i32)) -> Recommendation {
    let current = input.current_replicas;
    let ctx = replicas::Context {
        current,
        tolerance: sanitized_tolerance(input.tolerance),
        now: input.now,
        delays: &input.delays,
        observed: &input.observed,
    };
    let outcomes: Vec<Result<Proposal, Failure>> = input
        .metrics
        .iter()
        .map(|metric| replicas::propose(metric, &ctx))
        .collect();
    let statuses: Vec<MetricStatus> = outcomes
        .iter()
        .flatten()
        .map(|p| p.status.clone())
        .collect();
    let Some(best) = outcomes.iter().flatten().max_by_key(|p| p.replicas) else {
        let failure = first_failure(&outcomes);
        return hold(input, failure.reason, failure.message, statuses);
    };
    let failures = outcomes.iter().filter(|o| o.is_err()).count();
    if failures > 0 && best.replicas < current {
        let failure = first_failure(&outcomes);
        let message = format!(
            "not scaling down while {failures} of {} metrics are unavailable: {}",
            outcomes.len(),
            failure.message
        );
        return hold(input, failure.reason, message, statuses);
    }
    let active = AutoscalerCondition::new(
        ConditionType::ScalingActive,
        true,
        Reason::ValidMetricFound,
        format!(
            "the Autoscaler was able to successfully calculate a replica count from {}",
            best.name
        ),
    );
    let mut history = input.history.clone();
    let (stabilized, able) =
        behavior::stabilize(&input.behavior, &history, current, best.replicas, input.now);
    history.record_recommendation(&input.behavior, input.now, best.replicas);
    let (desired, limited) = behavior::limit(
        &input.behavior,
        &history,
        bounds,
        current,
        stabilized,
        input.now,
    );
    let reason = if limited.status || able.reason == Reason::ReadyForNewScale {
        limited.reason
    } else {
        able.reason
    };
    Recommendation {
        desired_replicas: desired,
        reason,
        explanation: explain(current, desired, best, &outcomes),
        conditions: vec![able, active, limited],
        current_metrics: statuses,
        history,
    }
}

/// Keeps the current count and reports why scaling is inactive.
fn hold(
    input: &Input,
    reason: Reason,
    message: String,
    current_metrics: Vec<MetricStatus>,
) -> Recommendation {
    Recommendation {
        desired_replicas: input.current_replicas,
        reason,
        explanation: message.clone(),
        conditions: vec![AutoscalerCondition::new(
            ConditionType::ScalingActive,
            false,
            reason,
            message,
        )],
        current_metrics,
        history: input.history.clone(),
    }
}

/// A target outside `[min, max]` goes straight to the violated bound, as in HPA.
fn bring_within_range(input: &Input, bound: i32, reason: Reason, why: &str) -> Recommendation {
    Recommendation {
        desired_replicas: bound,
        reason,
        explanation: format!("{why} ({} → {bound})", input.current_replicas),
        conditions: vec![AutoscalerCondition::new(
            ConditionType::ScalingLimited,
            true,
            reason,
            why,
        )],
        current_metrics: Vec::new(),
        history: input.history.clone(),
    }
}

fn first_failure(outcomes: &[Result<Proposal, Failure>]) -> Failure {
    outcomes
        .iter()
        .find_map(|o| o.as_ref().err().cloned())
        .unwrap_or_else(|| Failure {
            reason: Reason::InvalidMetricSourceType,
            message: "the Autoscaler has no metrics to scale on".to_owned(),
        })
}

/// HPA's rescale reason followed by every metric's value against its target.
fn explain(
    current: i32,
    desired: i32,
    best: &Proposal,
    outcomes: &[Result<Proposal, Failure>],
) -> String {
    let why = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => format!("{} above target", best.name),
        std::cmp::Ordering::Less => "All metrics below target".to_owned(),
        std::cmp::Ordering::Equal => "metrics within tolerance of their targets".to_owned(),
    };
    let values: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Ok(p) => format!("{} → {} replicas", p.observation, p.replicas),
            Err(f) => format!("unavailable ({}: {})", f.reason, f.message),
        })
        .collect();
    format!("{why}; {}", values.join("; "))
}

/// A tolerance that is not a finite, non-negative number falls back to the default.
fn sanitized_tolerance(tolerance: f64) -> f64 {
    if tolerance.is_finite() && tolerance >= 0.0 {
        tolerance
    } else {
        DEFAULT_TOLERANCE
    }
}
