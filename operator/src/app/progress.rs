//! The Progressing condition: a rollout makes progress when pods get updated, ready or
//! available, or old pods go; without progress for progressDeadlineSeconds it is reported
//! stuck (ProgressDeadlineExceeded), as Deployment does.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{
    self, NEW_REVISION_AVAILABLE, NEW_REVISION_CREATED, PROGRESS_DEADLINE_EXCEEDED, PROGRESSING,
    REVISION_PROGRESSING, ROLLOUT_PAUSED, ROLLOUT_RESUMED, Truth, Verdict,
};
use crate::api::AppStatus;

/// Pod counts, as they go into the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: usize,
    pub updated: usize,
    pub ready: usize,
    pub available: usize,
}

impl Counts {
    pub fn of(status: &AppStatus) -> Counts {
        let count = |n: i32| usize::try_from(n).unwrap_or(0);
        Counts {
            replicas: count(status.replicas),
            updated: count(status.updated_replicas),
            ready: count(status.ready_replicas),
            available: count(status.available_replicas),
        }
    }

    fn old(&self) -> usize {
        self.replicas.saturating_sub(self.updated)
    }

    /// Every desired pod runs the update revision and is available, and no old pod is left.
    pub fn complete(&self, desired: usize) -> bool {
        self.updated == desired && self.replicas == desired && self.available == desired
    }

    /// Moved towards completion since `before`.
    fn progressed_since(&self, before: &Counts) -> bool {
        self.updated > before.updated
            || self.ready > before.ready
            || self.available > before.available
            || self.old() < before.old()
    }
}

/// What the Progressing condition is decided from.
#[derive(Clone, Debug)]
pub struct Rollout<'a> {
    pub previous: &'a AppStatus,
    pub counts: Counts,
    pub desired: usize,
    pub update_revision: &'a str,
    pub update_is_new: bool,
    pub paused: bool,
    pub deadline: SignedDuration,
    pub now: Timestamp,
    /// Why pods are not becoming available, for the stuck message.
    pub blocker: Option<String>,
}

/// The Progressing verdict and the new last-progress time.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub verdict: Verdict,
    pub last_progress: Timestamp,
}

pub fn progress(rollout: &Rollout) -> Progress {
    let previous = rollout.previous;
    let prior = conditions::find(&previous.conditions, PROGRESSING);
    let prior_reason = prior.map(|c| c.reason.as_str());
    let last_progress = previous.last_progress_time.as_ref().map(|t| t.0);
    let revision_changed = previous.update_revision.as_deref() != Some(rollout.update_revision);
    let progressed = revision_changed || rollout.counts.progressed_since(&Counts::of(previous));
    let moved = |reason, message| Progress {
        verdict: Verdict {
            status: Truth::True,
            reason,
            message,
        },
        last_progress: rollout.now,
    };
    let revision = rollout.update_revision;

    if rollout.paused {
        return Progress {
            verdict: Verdict {
                status: Truth::Unknown,
                reason: ROLLOUT_PAUSED,
                message: "the App is paused; set spec.paused to false to continue the rollout"
                    .into(),
            },
            last_progress: last_progress.unwrap_or(rollout.now),
        };
    }
    if rollout.counts.complete(rollout.desired) {
        let message = format!(
            "revision {revision} is rolled out: {} pods available",
            rollout.desired
        );
        return Progress {
            last_progress: if progressed {
                rollout.now
            } else {
                last_progress.unwrap_or(rollout.now)
            },
            ..moved(NEW_REVISION_AVAILABLE, message)
        };
    }
    if progressed {
        let reason = if rollout.update_is_new {
            NEW_REVISION_CREATED
        } else {
            REVISION_PROGRESSING
        };
        return moved(reason, describe_rollout(rollout));
    }
    if prior_reason == Some(ROLLOUT_PAUSED) {
        return Progress {
            verdict: Verdict {
                status: Truth::Unknown,
                reason: ROLLOUT_RESUMED,
                message: "the rollout was resumed".into(),
            },
            last_progress: rollout.now,
        };
    }
    let since = last_progress.unwrap_or(rollout.now);
    if prior_reason != Some(NEW_REVISION_AVAILABLE) && timed_out(since, rollout) {
        return Progress {
            verdict: Verdict {
                status: Truth::False,
                reason: PROGRESS_DEADLINE_EXCEEDED,
                message: stuck_message(rollout),
            },
            last_progress: since,
        };
    }
    let verdict = prior.map_or_else(
        || Verdict {
            status: Truth::True,
            reason: REVISION_PROGRESSING,
            message: describe_rollout(rollout),
        },
        |c| Verdict {
            status: Truth::parse(&c.status),
            reason: known_reason(&c.reason),
            message: c.message.clone(),
        },
    );
    Progress {
        verdict,
        last_progress: since,
    }
}

/// When the deadline of a rollout in flight passes, so the condition flips on time.
pub fn deadline_at(rollout: &Rollout, progress: &Progress) -> Option<Timestamp> {
    let in_flight = !rollout.paused
        && !rollout.counts.complete(rollout.desired)
        && progress.verdict.reason != PROGRESS_DEADLINE_EXCEEDED;
    in_flight.then(|| {
        progress
            .last_progress
            .saturating_add(rollout.deadline)
            .unwrap_or(progress.last_progress)
    })
}

fn timed_out(since: Timestamp, rollout: &Rollout) -> bool {
    since
        .saturating_add(rollout.deadline)
        .is_ok_and(|deadline| deadline <= rollout.now)
}

fn describe_rollout(rollout: &Rollout) -> String {
    let counts = rollout.counts;
    format!(
        "rolling out revision {}: {} of {} pods updated, {} available",
        rollout.update_revision, counts.updated, rollout.desired, counts.available
    )
}

fn stuck_message(rollout: &Rollout) -> String {
    let seconds = rollout.deadline.as_secs();
    let base = format!(
        "revision {} made no progress for {seconds}s: {} of {} pods updated, {} available",
        rollout.update_revision, rollout.counts.updated, rollout.desired, rollout.counts.available
    );
    match &rollout.blocker {
        Some(blocker) => format!("{base}; {blocker}"),
        None => base,
    }
}

/// Reasons are `&'static str`; a reason written by an older operator maps onto ours.
fn known_reason(reason: &str) -> &'static str {
    [
        NEW_REVISION_CREATED,
        REVISION_PROGRESSING,
        NEW_REVISION_AVAILABLE,
        PROGRESS_DEADLINE_EXCEEDED,
        ROLLOUT_PAUSED,
        ROLLOUT_RESUMED,
    ]
    .into_iter()
    .find(|known| *known == reason)
    .unwrap_or(REVISION_PROGRESSING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::conditions::set;
    use crate::app::testing::at;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn previous(reason: &'static str, last_progress: i64, counts: Counts) -> AppStatus {
        let mut status = AppStatus {
            replicas: counts.replicas as i32,
            updated_replicas: counts.updated as i32,
            ready_replicas: counts.ready as i32,
            available_replicas: counts.available as i32,
            update_revision: Some("web-2".into()),
            last_progress_time: Some(Time(at(last_progress))),
            ..AppStatus::default()
        };
        let verdict = Verdict {
            status: Truth::True,
            reason,
            message: String::new(),
        };
        set(
            &mut status.conditions,
            PROGRESSING,
            verdict,
            at(last_progress),
            Some(1),
        );
        status
    }

    fn rollout(previous: &AppStatus, counts: Counts, now: i64) -> Rollout<'_> {
        Rollout {
            previous,
            counts,
            desired: 3,
            update_revision: "web-2",
            update_is_new: false,
            paused: false,
            deadline: SignedDuration::from_secs(600),
            now: at(now),
            blocker: Some("pod web-2-x: container web: ImagePullBackOff".into()),
        }
    }

    const STUCK: Counts = Counts {
        replicas: 4,
        updated: 1,
        ready: 3,
        available: 3,
    };

    #[test]
    fn progress_resets_the_clock() {
        let before = previous(REVISION_PROGRESSING, 0, STUCK);
        let better = Counts {
            available: 4,
            ready: 4,
            ..STUCK
        };
        let result = progress(&rollout(&before, better, 900));
        assert_eq!(
            (result.verdict.reason, result.last_progress),
            (REVISION_PROGRESSING, at(900))
        );
    }

    #[test]
    fn no_progress_past_the_deadline_is_reported_with_the_blocker() {
        let before = previous(REVISION_PROGRESSING, 0, STUCK);
        let early = progress(&rollout(&before, STUCK, 599));
        assert_eq!(early.verdict.status, Truth::True);
        assert_eq!(
            deadline_at(&rollout(&before, STUCK, 599), &early),
            Some(at(600))
        );

        let late = progress(&rollout(&before, STUCK, 600));
        assert_eq!(
            (late.verdict.status, late.verdict.reason),
            (Truth::False, PROGRESS_DEADLINE_EXCEEDED)
        );
        assert!(
            late.verdict
                .message
                .contains("made no progress for 600s: 1 of 3 pods updated")
        );
        assert!(late.verdict.message.contains("ImagePullBackOff"));
        assert_eq!(
            late.last_progress,
            at(0),
            "the clock is not reset by timing out"
        );
    }

    #[test]
    fn a_completed_rollout_never_times_out() {
        let done = Counts {
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
        };
        let before = previous(NEW_REVISION_AVAILABLE, 0, done);
        let degraded = Counts {
            ready: 2,
            available: 2,
            ..done
        };
        let result = progress(&rollout(&before, degraded, 10_000));
        assert_eq!(result.verdict.reason, NEW_REVISION_AVAILABLE);
    }

    #[test]
    fn a_new_revision_is_progress() {
        let done = Counts {
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
        };
        let before = previous(NEW_REVISION_AVAILABLE, 0, done);
        let mut next = rollout(&before, Counts { updated: 0, ..done }, 5000);
        next.update_revision = "web-3";
        next.update_is_new = true;
        let result = progress(&next);
        assert_eq!(
            (result.verdict.reason, result.last_progress),
            (NEW_REVISION_CREATED, at(5000))
        );
    }

    #[test]
    fn pause_stops_the_clock_and_resume_restarts_it() {
        let before = previous(REVISION_PROGRESSING, 0, STUCK);
        let mut paused = rollout(&before, STUCK, 100);
        paused.paused = true;
        let result = progress(&paused);
        assert_eq!(
            (result.verdict.status, result.verdict.reason),
            (Truth::Unknown, ROLLOUT_PAUSED)
        );
        assert_eq!(deadline_at(&paused, &result), None);

        let was_paused = previous(ROLLOUT_PAUSED, 0, STUCK);
        let resumed = progress(&rollout(&was_paused, STUCK, 5000));
        assert_eq!(
            (resumed.verdict.reason, resumed.last_progress),
            (ROLLOUT_RESUMED, at(5000))
        );
    }
}
