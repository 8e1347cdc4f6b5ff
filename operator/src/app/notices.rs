//! Events worth telling a person, read off the change between the old and the new status.

use super::conditions::{
    self, INVALID_SPEC, NEW_REVISION_AVAILABLE, PROGRESS_DEADLINE_EXCEEDED, PROGRESSING,
    REPLICA_FAILURE, ROLLOUT_PAUSED, ROLLOUT_RESUMED,
};
use crate::api::AppStatus;

/// Normal or Warning, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An Event to publish on the App.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    pub reason: &'static str,
    pub message: String,
}

impl Notice {
    pub fn normal(reason: &'static str, message: String) -> Notice {
        Notice {
            severity: Severity::Normal,
            reason,
            message,
        }
    }

    pub fn warning(reason: &'static str, message: String) -> Notice {
        Notice {
            severity: Severity::Warning,
            reason,
            message,
        }
    }
}

pub const ROLLOUT_STARTED: &str = "RolloutStarted";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
pub const SERVICE_CONFLICT: &str = "ServiceConflict";

pub fn between(previous: &AppStatus, next: &AppStatus) -> Vec<Notice> {
    let mut notices = vec![];
    // A paused App records the new revision but does not roll it out yet.
    let paused =
        conditions::find(&next.conditions, PROGRESSING).is_some_and(|c| c.reason == ROLLOUT_PAUSED);
    if let Some(revision) = &next.update_revision
        && previous
            .update_revision
            .as_ref()
            .is_some_and(|before| before != revision)
        && !paused
    {
        notices.push(Notice::normal(
            ROLLOUT_STARTED,
            format!("rolling out revision {revision}"),
        ));
    }
    let reason_of = |status: &AppStatus, type_| {
        conditions::find(&status.conditions, type_).map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((reason, message)) = reason_of(next, REPLICA_FAILURE)
        && reason == INVALID_SPEC
        && reason_of(previous, REPLICA_FAILURE) != Some((reason, message.clone()))
    {
        notices.push(Notice::warning(INVALID_SPEC, message));
    }
    let before = reason_of(previous, PROGRESSING).map(|(reason, _)| reason);
    if let Some((reason, message)) = reason_of(next, PROGRESSING)
        && before.as_deref() != Some(reason.as_str())
    {
        match reason.as_str() {
            PROGRESS_DEADLINE_EXCEEDED => {
                notices.push(Notice::warning(PROGRESS_DEADLINE_EXCEEDED, message))
            }
            NEW_REVISION_AVAILABLE => notices.push(Notice::normal(ROLLOUT_COMPLETE, message)),
            ROLLOUT_PAUSED => notices.push(Notice::normal(ROLLOUT_PAUSED, message)),
            ROLLOUT_RESUMED => notices.push(Notice::normal(ROLLOUT_RESUMED, message)),
            _ => {}
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::conditions::{Truth, Verdict, set};
    use crate::app::testing::at;

    fn with(type_: &str, status: Truth, reason: &'static str, message: &str) -> AppStatus {
        let mut s = AppStatus::default();
        let verdict = Verdict {
            status,
            reason,
            message: message.into(),
        };
        set(&mut s.conditions, type_, verdict, at(0), None);
        s
    }

    #[test]
    fn deadline_exceeded_warns_once() {
        let before = with(PROGRESSING, Truth::True, "RevisionProgressing", "");
        let after = with(
            PROGRESSING,
            Truth::False,
            PROGRESS_DEADLINE_EXCEEDED,
            "stuck",
        );
        assert_eq!(
            between(&before, &after),
            vec![Notice::warning(PROGRESS_DEADLINE_EXCEEDED, "stuck".into())]
        );
        assert_eq!(between(&after, &after), vec![]);
    }

    #[test]
    fn invalid_spec_warns_when_the_problem_changes() {
        let first = with(REPLICA_FAILURE, Truth::True, INVALID_SPEC, "bad selector");
        let second = with(
            REPLICA_FAILURE,
            Truth::True,
            INVALID_SPEC,
            "bad restartPolicy",
        );
        assert_eq!(between(&AppStatus::default(), &first).len(), 1);
        assert_eq!(between(&first, &first), vec![]);
        assert_eq!(
            between(&first, &second),
            vec![Notice::warning(INVALID_SPEC, "bad restartPolicy".into())]
        );
    }

    #[test]
    fn a_new_update_revision_starts_a_rollout() {
        let before = AppStatus {
            update_revision: Some("web-a".into()),
            ..AppStatus::default()
        };
        let after = AppStatus {
            update_revision: Some("web-b".into()),
            ..AppStatus::default()
        };
        assert_eq!(between(&before, &after)[0].reason, ROLLOUT_STARTED);
        assert_eq!(
            between(&AppStatus::default(), &after),
            vec![],
            "a new App starts no rollout"
        );
    }
}
