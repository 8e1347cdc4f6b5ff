//! The App's condition types and reasons, and the one way to set a condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// At least replicas - maxUnavailable pods are available.
pub const AVAILABLE: &str = "Available";
/// The rollout moves, is complete, paused, or stuck.
pub const PROGRESSING: &str = "Progressing";
/// Pods cannot be created.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_REVISION_CREATED: &str = "NewRevisionCreated";
pub const REVISION_PROGRESSING: &str = "RevisionProgressing";
pub const NEW_REVISION_AVAILABLE: &str = "NewRevisionAvailable";
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const FAILED_CREATE: &str = "FailedCreate";

/// `"True"`, `"False"` or `"Unknown"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    pub fn parse(status: &str) -> Truth {
        match status {
            "True" => Truth::True,
            "False" => Truth::False,
            _ => Truth::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Truth::True => "True",
            Truth::False => "False",
            Truth::Unknown => "Unknown",
        }
    }
}

/// A condition to set, before it is stamped with time and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Truth,
    pub reason: &'static str,
    pub message: String,
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition; its transition time moves only when its status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    verdict: Verdict,
    now: Timestamp,
    generation: Option<i64>,
) {
    let status = verdict.status.as_str();
    let since = find(conditions, type_)
        .filter(|c| c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: verdict.reason.to_owned(),
        message: verdict.message,
        last_transition_time: since,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::at;

    fn verdict(status: Truth, reason: &'static str) -> Verdict {
        Verdict {
            status,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut conditions = vec![];
        set(
            &mut conditions,
            AVAILABLE,
            verdict(Truth::False, "A"),
            at(1),
            Some(1),
        );
        set(
            &mut conditions,
            AVAILABLE,
            verdict(Truth::False, "B"),
            at(2),
            Some(2),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(1)));
        assert_eq!(
            (
                conditions[0].reason.as_str(),
                conditions[0].observed_generation
            ),
            ("B", Some(2))
        );
        set(
            &mut conditions,
            AVAILABLE,
            verdict(Truth::True, "C"),
            at(3),
            Some(2),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(3)));
        assert_eq!(conditions.len(), 1);
    }
}
