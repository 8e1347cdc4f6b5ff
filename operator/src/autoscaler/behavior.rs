//! Scaling behavior as the HorizontalPodAutoscaler applies it: a stabilization window per
//! direction over past recommendations, then rate policies that bound how far the replica
//! count may move within a period, then minReplicas/maxReplicas.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{AutoscalerCondition, ConditionType, Reason};
use super::history::History;
use crate::api::{ScalingBehavior, ScalingPolicyType, ScalingRules, SelectPolicy};

/// Scale-down stabilization window when none is given (HPA's controller default).
pub const DEFAULT_SCALE_DOWN_WINDOW: SignedDuration = SignedDuration::from_secs(300);
/// Period of the default policies.
const DEFAULT_POLICY_PERIOD: SignedDuration = SignedDuration::from_secs(15);
/// Upper bounds the API allows; larger values are clamped rather than trusted.
const MAX_WINDOW: SignedDuration = SignedDuration::from_secs(3600);
const MAX_PERIOD: SignedDuration = SignedDuration::from_secs(1800);

/// Both directions' rules with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

/// One direction's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_window: SignedDuration,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
}

/// A bound on the change within a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub type_: ScalingPolicyType,
    pub value: i32,
    pub period: SignedDuration,
}

impl Default for Behavior {
    fn default() -> Self {
        Self::from_spec(None)
    }
}

impl Behavior {
    /// Fills in HPA's defaults field by field: scale up with no window, by the larger of 4 pods
    /// and 100% per 15 s; scale down after a 300 s window, by up to 100% per 15 s. An empty
    /// policy list counts as unset, since it would otherwise forbid scaling in that direction.
    pub fn from_spec(spec: Option<&ScalingBehavior>) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        Self {
            scale_up: Rules::from_spec(
                spec.scale_up.as_ref(),
                SignedDuration::ZERO,
                &[
                    (ScalingPolicyType::Pods, 4),
                    (ScalingPolicyType::Percent, 100),
                ],
            ),
            scale_down: Rules::from_spec(
                spec.scale_down.as_ref(),
                DEFAULT_SCALE_DOWN_WINDOW,
                &[(ScalingPolicyType::Percent, 100)],
            ),
        }
    }
}

impl Rules {
    fn from_spec(
        spec: Option<&ScalingRules>,
        window: SignedDuration,
        policies: &[(ScalingPolicyType, i32)],
    ) -> Self {
        let default_policies = || {
            policies
                .iter()
                .map(|&(type_, value)| Policy {
                    type_,
                    value,
                    period: DEFAULT_POLICY_PERIOD,
                })
                .collect()
        };
        let given_policies = spec
            .and_then(|s| s.policies.as_ref())
            .filter(|p| !p.is_empty());
        Self {
            stabilization_window: spec
                .and_then(|s| s.stabilization_window_seconds)
                .map_or(window, |s| {
                    seconds(s).clamp(SignedDuration::ZERO, MAX_WINDOW)
                }),
            select_policy: spec
                .and_then(|s| s.select_policy)
                .unwrap_or(SelectPolicy::Max),
            policies: given_policies.map_or_else(default_policies, |given| {
                given
                    .iter()
                    .map(|p| Policy {
                        type_: p.type_,
                        value: p.value.max(1),
                        period: seconds(p.period_seconds)
                            .clamp(SignedDuration::from_secs(1), MAX_PERIOD),
                    })
                    .collect()
            }),
        }
    }
}

fn seconds(value: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(value))
}

/// Holds `desired` within the recommendations of the stabilization windows: a scale-up goes
/// no higher than the lowest recent recommendation, a scale-down no lower than the highest.
/// Returns the stabilized count and the AbleToScale condition it implies.
pub(super) fn stabilize(
    behavior: &Behavior,
    history: &History,
    current: i32,
    desired: i32,
    now: Timestamp,
) -> (i32, AutoscalerCondition) {
    let (lowest, highest) = history.stabilization_bounds(behavior, now, desired);
    let stabilized = current.max(lowest).min(highest);
    let condition = if stabilized == desired {
        AutoscalerCondition::new(
            ConditionType::AbleToScale,
            true,
            Reason::ReadyForNewScale,
            "recommended size matches current size",
        )
    } else if desired >= current {
        AutoscalerCondition::new(
            ConditionType::AbleToScale,
            true,
            Reason::ScaleUpStabilized,
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        AutoscalerCondition::new(
            ConditionType::AbleToScale,
            true,
            Reason::ScaleDownStabilized,
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    (stabilized, condition)
}

/// Bounds a stabilized recommendation by the rate policies and by min/max. Returns the
/// replica count and the ScalingLimited condition that says which bound (if any) applied.
pub(super) fn limit(
    behavior: &Behavior,
    history: &History,
    bounds: (i32, i32),
    current: i32,
    desired: i32,
    now: Timestamp,
) -> (i32, AutoscalerCondition) {
    let (min, max) = bounds;
    let limited = |replicas: i32, reason: Reason, message: &str| {
        (
            replicas,
            AutoscalerCondition::new(ConditionType::ScalingLimited, true, reason, message),
        )
    };
    if desired > current {
        let rate_limit =
            up_limit(&behavior.scale_up, history, current, now).max(i64::from(current));
        let (allowed, reason, message) = if rate_limit < i64::from(max) {
            (
                narrow(rate_limit),
                Reason::ScaleUpLimit,
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                Reason::TooManyReplicas,
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return limited(allowed, reason, message);
        }
    } else if desired < current {
        let rate_limit =
            down_limit(&behavior.scale_down, history, current, now).min(i64::from(current));
        let (allowed, reason, message) = if rate_limit > i64::from(min) {
            (
                narrow(rate_limit),
                Reason::ScaleDownLimit,
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                Reason::TooFewReplicas,
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return limited(allowed, reason, message);
        }
    }
    let within = AutoscalerCondition::new(
        ConditionType::ScalingLimited,
        false,
        Reason::DesiredWithinRange,
        "the desired count is within the acceptable range",
    );
    (desired, within)
}

/// The highest count the scale-up policies allow now. Each policy measures from the count at
/// the start of its period (current minus what was added plus what was removed within it);
/// `Max` takes the most permissive policy, `Min` the strictest.
fn up_limit(rules: &Rules, history: &History, current: i32, now: Timestamp) -> i64 {
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(policy, history, current, now);
        match policy.type_ {
            ScalingPolicyType::Pods => start + i64::from(policy.value),
            // Rounded up so that a small percentage of few replicas still adds one.
            ScalingPolicyType::Percent => {
                ceil_to_i64(start as f64 * (1.0 + f64::from(policy.value) / 100.0))
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => i64::from(current),
        SelectPolicy::Min => proposals.min().unwrap_or(i64::from(current)),
        SelectPolicy::Max => proposals.max().unwrap_or(i64::from(current)),
    }
}

/// The lowest count the scale-down policies allow now; `Max` takes the policy that removes
/// the most, `Min` the one that removes the fewest.
fn down_limit(rules: &Rules, history: &History, current: i32, now: Timestamp) -> i64 {
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(policy, history, current, now);
        match policy.type_ {
            ScalingPolicyType::Pods => start - i64::from(policy.value),
            // Truncated, so the number removed rounds up (72 less 10% leaves 64).
            ScalingPolicyType::Percent => {
                (start as f64 * (1.0 - f64::from(policy.value) / 100.0)) as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => i64::from(current),
        SelectPolicy::Min => proposals.max().unwrap_or(i64::from(current)),
        SelectPolicy::Max => proposals.min().unwrap_or(i64::from(current)),
    }
}

fn period_start(policy: &Policy, history: &History, current: i32, now: Timestamp) -> i64 {
    let (added, removed) = history.changes_within(policy.period, now);
    i64::from(current) - added + removed
}

fn ceil_to_i64(value: f64) -> i64 {
    // `as` saturates and maps NaN to 0; inputs here are finite replica counts.
    value.ceil() as i64
}

/// An i64 bound back into replica range (bounds here lie between current and min/max).
fn narrow(value: i64) -> i32 {
    i32::try_from(value.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
}
