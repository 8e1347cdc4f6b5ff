//! The App's status: pod counts, revisions, selector and the Available, Progressing and
//! ReplicaFailure conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::Selector;

use super::conditions::{
    self, AVAILABLE, FAILED_CREATE, INVALID_SPEC, MINIMUM_REPLICAS_AVAILABLE,
    MINIMUM_REPLICAS_UNAVAILABLE, PROGRESSING, REPLICA_FAILURE, Truth, Verdict,
};
use super::fleet::Fleet;
use super::progress::{Counts, Rollout, deadline_at, progress};
use super::revision::Revisions;
use super::rollout::Fenceposts;
use super::validate::SpecProblem;
use crate::api::{App, AppStatus};

/// Everything the status is computed from.
pub struct StatusInput<'a> {
    pub app: &'a App,
    pub fleet: &'a Fleet<'a>,
    pub revisions: &'a Revisions,
    pub selector: &'a Selector,
    pub fenceposts: Fenceposts,
}

/// The new status and when it changes by itself (a pod becomes available, a deadline passes).
#[derive(Clone, Debug, PartialEq)]
pub struct StatusPlan {
    pub status: AppStatus,
    pub wake_at: Option<Timestamp>,
}

pub fn compute(input: &StatusInput) -> StatusPlan {
    let app = input.app;
    let fleet = input.fleet;
    let previous = app.status.clone().unwrap_or_default();
    let desired = desired(app);
    let counts = counts(fleet);
    let now = fleet.now();
    let generation = app.metadata.generation;
    let update = &input.revisions.update;

    let rollout = Rollout {
        previous: &previous,
        counts,
        desired,
        update_revision: &update.name,
        update_is_new: input.revisions.update_is_new,
        paused: app.spec.paused,
        deadline: SignedDuration::from_secs(i64::from(app.spec.progress_deadline_seconds)),
        now,
        blocker: blocker(fleet),
    };
    let progress = progress(&rollout);
    let wake_at = [fleet.next_available_at(), deadline_at(&rollout, &progress)]
        .into_iter()
        .flatten()
        .min();

    let current_revision = if counts.complete(desired) {
        update.name.clone()
    } else {
        previous
            .current_revision
            .clone()
            .unwrap_or_else(|| update.name.clone())
    };
    let mut status = AppStatus {
        observed_generation: generation,
        current_revision: Some(current_revision),
        update_revision: Some(update.name.clone()),
        selector: Some(input.selector.to_string()),
        last_progress_time: Some(Time(progress.last_progress)),
        conditions: previous.conditions.clone(),
        ..with_counts(&previous, counts)
    };
    let min_available = desired.saturating_sub(input.fenceposts.max_unavailable.min(desired));
    let conditions = &mut status.conditions;
    conditions::set(
        conditions,
        AVAILABLE,
        availability(counts.available, desired, min_available),
        now,
        generation,
    );
    conditions::set(conditions, PROGRESSING, progress.verdict, now, generation);
    let failure = conditions::find(conditions, REPLICA_FAILURE);
    if failure.is_some_and(|c| c.reason == INVALID_SPEC) || counts.replicas >= desired {
        conditions::remove(conditions, REPLICA_FAILURE);
    }
    StatusPlan { status, wake_at }
}

/// The status of an App whose spec cannot be acted on: counts of the pods it owns, the problem
/// as ReplicaFailure, everything else as before.
pub fn invalid(app: &App, fleet: &Fleet, problem: &SpecProblem) -> AppStatus {
    let previous = app.status.clone().unwrap_or_default();
    let mut status = AppStatus {
        observed_generation: app.metadata.generation,
        ..with_counts(&previous, counts(fleet))
    };
    let verdict = Verdict {
        status: Truth::True,
        reason: INVALID_SPEC,
        message: problem.0.clone(),
    };
    conditions::set(
        &mut status.conditions,
        REPLICA_FAILURE,
        verdict,
        fleet.now(),
        app.metadata.generation,
    );
    status
}

/// How creating pods went in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreationOutcome {
    /// No pods were created.
    NotAttempted,
    /// Every pod was created.
    Created,
    /// The API server refused a pod; its message.
    Failed(String),
}

/// Records the creation outcome as the ReplicaFailure condition.
pub fn with_creation_outcome(
    mut status: AppStatus,
    outcome: &CreationOutcome,
    now: Timestamp,
    generation: Option<i64>,
) -> AppStatus {
    match outcome {
        CreationOutcome::NotAttempted => {}
        CreationOutcome::Created => conditions::remove(&mut status.conditions, REPLICA_FAILURE),
        CreationOutcome::Failed(message) => {
            let verdict = Verdict {
                status: Truth::True,
                reason: FAILED_CREATE,
                message: format!("pods cannot be created: {message}"),
            };
            conditions::set(
                &mut status.conditions,
                REPLICA_FAILURE,
                verdict,
                now,
                generation,
            );
        }
    }
    status
}

fn desired(app: &App) -> usize {
    usize::try_from(app.spec.replicas).unwrap_or(0)
}

fn counts(fleet: &Fleet) -> Counts {
    Counts {
        replicas: fleet.active_count(),
        updated: fleet.new.len(),
        ready: fleet.active().filter(|p| p.is_ready()).count(),
        available: fleet.available_count(),
    }
}

fn with_counts(previous: &AppStatus, counts: Counts) -> AppStatus {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    AppStatus {
        replicas: count(counts.replicas),
        updated_replicas: count(counts.updated),
        ready_replicas: count(counts.ready),
        available_replicas: count(counts.available),
        ..previous.clone()
    }
}

fn availability(available: usize, desired: usize, min_available: usize) -> Verdict {
    if available >= min_available {
        Verdict {
            status: Truth::True,
            reason: MINIMUM_REPLICAS_AVAILABLE,
            message: format!(
                "{available} of {desired} pods available (at least {min_available} required)"
            ),
        }
    } else {
        Verdict {
            status: Truth::False,
            reason: MINIMUM_REPLICAS_UNAVAILABLE,
            message: format!(
                "{available} of {desired} pods available, at least {min_available} required"
            ),
        }
    }
}

/// The first trouble of a pod that keeps the rollout from finishing: new pods first.
fn blocker(fleet: &Fleet) -> Option<String> {
    fleet
        .new
        .iter()
        .chain(fleet.old.iter())
        .filter(|p| !fleet.is_available(p))
        .find_map(|p| {
            p.problem
                .as_ref()
                .map(|problem| format!("pod {}: {problem}", p.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{AppBuilder, PodBuilder, at};

    #[test]
    fn creation_failure_sets_and_success_clears_replica_failure() {
        let status = AppStatus::default();
        let failed = with_creation_outcome(
            status,
            &CreationOutcome::Failed("exceeded quota".into()),
            at(1),
            Some(1),
        );
        let condition = conditions::find(&failed.conditions, REPLICA_FAILURE).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", FAILED_CREATE)
        );
        assert!(condition.message.contains("exceeded quota"));

        let unchanged = with_creation_outcome(
            failed.clone(),
            &CreationOutcome::NotAttempted,
            at(2),
            Some(1),
        );
        assert_eq!(unchanged, failed);
        let cleared = with_creation_outcome(failed, &CreationOutcome::Created, at(2), Some(1));
        assert!(cleared.conditions.is_empty());
    }

    #[test]
    fn invalid_spec_keeps_revisions_and_reports_the_problem() {
        let mut app = AppBuilder::new("web").build();
        app.status = Some(AppStatus {
            update_revision: Some("web-a".into()),
            ..AppStatus::default()
        });
        let pods = [PodBuilder::new("p")
            .revision("a")
            .running()
            .ready_at(at(0))
            .view()];
        let fleet = Fleet::new(&pods, "a", SignedDuration::ZERO, at(10));
        let status = invalid(&app, &fleet, &SpecProblem("spec.selector is empty".into()));
        assert_eq!((status.replicas, status.available_replicas), (1, 1));
        assert_eq!(status.update_revision.as_deref(), Some("web-a"));
        let condition = conditions::find(&status.conditions, REPLICA_FAILURE).unwrap();
        assert_eq!(
            (condition.reason.as_str(), condition.message.as_str()),
            (INVALID_SPEC, "spec.selector is empty")
        );
    }
}
