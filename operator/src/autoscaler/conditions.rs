//! The status conditions an Autoscaler reports, with the HorizontalPodAutoscaler's types and
//! reasons so that `kubectl describe` reads the same for both.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The three condition types, in the order they are listed in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConditionType {
    /// Whether the target can be read and rescaled, and whether stabilization holds it back.
    AbleToScale,
    /// Whether a replica count could be computed from the metrics.
    ScalingActive,
    /// Whether the replica count was held back by min/max or the rate policies.
    ScalingLimited,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AbleToScale => "AbleToScale",
            Self::ScalingActive => "ScalingActive",
            Self::ScalingLimited => "ScalingLimited",
        }
    }
}

/// Why a condition has its status; the names are the HorizontalPodAutoscaler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    // AbleToScale
    ReadyForNewScale,
    ScaleUpStabilized,
    ScaleDownStabilized,
    SucceededRescale,
    FailedGetScale,
    FailedUpdateScale,
    // ScalingActive
    ValidMetricFound,
    ScalingDisabled,
    InvalidSelector,
    InvalidMetricSourceType,
    FailedGetResourceMetric,
    /// Ferry's own: the proxies' connection counts for a Service could not be read.
    FailedGetConnectionsMetric,
    /// Ferry's own: minReplicas > maxReplicas slipped past validation.
    InvalidReplicaRange,
    // ScalingLimited
    DesiredWithinRange,
    ScaleUpLimit,
    ScaleDownLimit,
    TooFewReplicas,
    TooManyReplicas,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadyForNewScale => "ReadyForNewScale",
            Self::ScaleUpStabilized => "ScaleUpStabilized",
            Self::ScaleDownStabilized => "ScaleDownStabilized",
            Self::SucceededRescale => "SucceededRescale",
            Self::FailedGetScale => "FailedGetScale",
            Self::FailedUpdateScale => "FailedUpdateScale",
            Self::ValidMetricFound => "ValidMetricFound",
            Self::ScalingDisabled => "ScalingDisabled",
            Self::InvalidSelector => "InvalidSelector",
            Self::InvalidMetricSourceType => "InvalidMetricSourceType",
            Self::FailedGetResourceMetric => "FailedGetResourceMetric",
            Self::FailedGetConnectionsMetric => "FailedGetConnectionsMetric",
            Self::InvalidReplicaRange => "InvalidReplicaRange",
            Self::DesiredWithinRange => "DesiredWithinRange",
            Self::ScaleUpLimit => "ScaleUpLimit",
            Self::ScaleDownLimit => "ScaleDownLimit",
            Self::TooFewReplicas => "TooFewReplicas",
            Self::TooManyReplicas => "TooManyReplicas",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition as decided, before it is merged into the status list.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerCondition {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl AutoscalerCondition {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// The target's scale could not be read: nothing else can be decided.
    pub fn failed_get_scale(message: impl fmt::Display) -> Self {
        Self::new(
            ConditionType::AbleToScale,
            false,
            Reason::FailedGetScale,
            format!(
                "the Autoscaler controller was unable to get the target's current scale: {message}"
            ),
        )
    }

    /// The target's scale was written.
    pub fn succeeded_rescale(replicas: i32) -> Self {
        Self::new(
            ConditionType::AbleToScale,
            true,
            Reason::SucceededRescale,
            format!("the Autoscaler controller was able to update the target scale to {replicas}"),
        )
    }

    /// Writing the target's scale failed.
    pub fn failed_update_scale(message: impl fmt::Display) -> Self {
        Self::new(
            ConditionType::AbleToScale,
            false,
            Reason::FailedUpdateScale,
            format!("the Autoscaler controller was unable to update the target scale: {message}"),
        )
    }

    /// The scale has no (or an unreadable) pod selector, so no pod metrics can be read.
    pub fn invalid_selector(message: impl Into<String>) -> Self {
        Self::new(
            ConditionType::ScalingActive,
            false,
            Reason::InvalidSelector,
            message,
        )
    }

    fn status_word(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Sets `updates` in `existing`: conditions not updated are kept, and the transition time only
/// moves when a condition's status changes.
pub fn merge(
    existing: &[Condition],
    updates: &[AutoscalerCondition],
    now: &Time,
    observed_generation: Option<i64>,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = existing.to_vec();
    for update in updates {
        let status = update.status_word().to_owned();
        let position = merged.iter().position(|c| c.type_ == update.type_.as_str());
        let last_transition_time = match position.map(|i| &merged[i]) {
            Some(previous) if previous.status == status => previous.last_transition_time.clone(),
            _ => now.clone(),
        };
        let condition = Condition {
            type_: update.type_.as_str().to_owned(),
            status,
            reason: update.reason.as_str().to_owned(),
            message: update.message.clone(),
            last_transition_time,
            observed_generation,
        };
        match position {
            Some(i) => merged[i] = condition,
            None => merged.push(condition),
        }
    }
    merged.sort_by_key(|c| order(&c.type_));
    merged
}

fn order(type_: &str) -> usize {
    [
        ConditionType::AbleToScale,
        ConditionType::ScalingActive,
        ConditionType::ScalingLimited,
    ]
    .iter()
    .position(|t| t.as_str() == type_)
    .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = merge(
            &[],
            &[
                AutoscalerCondition::new(
                    ConditionType::ScalingLimited,
                    false,
                    Reason::DesiredWithinRange,
                    "ok",
                ),
                AutoscalerCondition::succeeded_rescale(3),
            ],
            &at(100),
            Some(1),
        );
        assert_eq!(first[0].type_, "AbleToScale", "listed in a stable order");
        let second = merge(
            &first,
            &[
                AutoscalerCondition::new(
                    ConditionType::AbleToScale,
                    true,
                    Reason::ReadyForNewScale,
                    "same",
                ),
                AutoscalerCondition::new(
                    ConditionType::ScalingLimited,
                    true,
                    Reason::TooManyReplicas,
                    "max",
                ),
            ],
            &at(200),
            Some(1),
        );
        assert_eq!(second[0].reason, "ReadyForNewScale");
        assert_eq!(
            second[0].last_transition_time,
            at(100),
            "status stayed True"
        );
        assert_eq!(
            second[1].last_transition_time,
            at(200),
            "status went False → True"
        );
    }
}
