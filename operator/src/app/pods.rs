//! What the planner reads from a Pod: its lifecycle, readiness and revision, read once into a
//! `PodView` so the rules below work on plain values.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::REVISION_HASH_LABEL;

/// Where a pod is in its life, as far as replica counting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Counts as a replica.
    Active,
    /// Has a deletion timestamp: on its way out, no longer a replica.
    Terminating,
    /// Phase Succeeded or Failed: will never run again and must be replaced.
    Finished,
}

/// A pod reduced to the facts the planner decides on.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    pub revision_hash: Option<String>,
    pub lifecycle: Lifecycle,
    /// Scheduled to a node.
    pub assigned: bool,
    /// Pending < Unknown < Running, as ReplicaSet ranks them for deletion.
    pub phase_rank: u8,
    /// When the Ready condition last became true; `None` while not ready.
    pub ready_since: Option<Timestamp>,
    /// The highest restart count among its containers.
    pub restarts: i32,
    pub created: Option<Timestamp>,
    /// Why the pod is not running well, in words a person can act on.
    pub problem: Option<String>,
}

/// A pod's identity, enough to act on exactly that pod (the uid guards against a namesake).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

impl PodView {
    pub fn new(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let lifecycle = if meta.deletion_timestamp.is_some() {
            Lifecycle::Terminating
        } else if matches!(phase, "Succeeded" | "Failed") {
            Lifecycle::Finished
        } else {
            Lifecycle::Active
        };
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let ready_since = ready_condition.filter(|c| c.status == "True").map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        });
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
            .unwrap_or(0);
        Self {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            revision_hash: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH_LABEL).cloned()),
            lifecycle,
            assigned: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some(),
            phase_rank: match phase {
                "Pending" => 0,
                "Running" => 2,
                _ => 1,
            },
            ready_since,
            restarts,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            problem: problem(pod),
        }
    }

    pub fn reference(&self) -> PodRef {
        PodRef {
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready_since.is_some()
    }

    /// When the pod counts as available: `min_ready` after it became ready.
    pub fn available_at(&self, min_ready: SignedDuration) -> Option<Timestamp> {
        self.ready_since
            .map(|since| since.saturating_add(min_ready).unwrap_or(since))
    }

    /// Ready for at least `min_ready` at `now`.
    pub fn is_available(&self, min_ready: SignedDuration, now: Timestamp) -> bool {
        self.available_at(min_ready).is_some_and(|at| at <= now)
    }

    pub fn is_revision(&self, hash: &str) -> bool {
        self.revision_hash.as_deref() == Some(hash)
    }
}

/// Orders pods so the ones to delete first come first, as ReplicaSet ranks them: unscheduled
/// before scheduled, Pending before Unknown before Running, not ready before ready, ready for
/// a shorter time first, more restarts first, newer first. Losing the least settled pods
/// costs the least capacity.
pub fn deletion_order(a: &PodView, b: &PodView) -> Ordering {
    a.assigned
        .cmp(&b.assigned)
        .then(a.phase_rank.cmp(&b.phase_rank))
        .then(a.is_ready().cmp(&b.is_ready()))
        .then(b.ready_since.cmp(&a.ready_since))
        .then(b.restarts.cmp(&a.restarts))
        .then(b.created.cmp(&a.created))
        .then(a.name.cmp(&b.name))
}

/// The first `count` pods in deletion order.
pub fn first_to_delete<'a>(pods: &[&'a PodView], count: usize) -> Vec<&'a PodView> {
    let mut ranked = pods.to_vec();
    ranked.sort_by(|a, b| deletion_order(a, b));
    ranked.truncate(count);
    ranked
}

/// The most telling reason a pod is not running well: a waiting or failed container, or a
/// scheduling failure.
fn problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten();
    for container in containers {
        let state = container.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or("Waiting");
            if reason != "ContainerCreating" && reason != "PodInitializing" {
                return Some(describe(
                    &container.name,
                    reason,
                    waiting.message.as_deref(),
                ));
            }
        }
        if let Some(terminated) = state.and_then(|s| s.terminated.as_ref())
            && terminated.exit_code != 0
        {
            let reason = terminated.reason.as_deref().unwrap_or("Error");
            return Some(describe(
                &container.name,
                reason,
                terminated.message.as_deref(),
            ));
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            let reason = c.reason.as_deref().unwrap_or("Unschedulable");
            match c.message.as_deref() {
                Some(message) => format!("{reason}: {message}"),
                None => reason.to_owned(),
            }
        })
}

fn describe(container: &str, reason: &str, message: Option<&str>) -> String {
    match message {
        Some(message) if !message.is_empty() => {
            format!("container {container}: {reason}: {message}")
        }
        _ => format!("container {container}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{PodBuilder, at};

    #[track_caller]
    fn assert_deleted_first(first: PodBuilder, second: PodBuilder) {
        let (a, b) = (first.view(), second.view());
        assert_eq!(
            deletion_order(&a, &b),
            Ordering::Less,
            "{a:?}\nshould go before\n{b:?}"
        );
        assert_eq!(deletion_order(&b, &a), Ordering::Greater);
    }

    #[test]
    fn deletion_order_follows_replicaset_ranking() {
        let running = || PodBuilder::new("p").node("n1").running();
        assert_deleted_first(PodBuilder::new("p"), running());
        assert_deleted_first(PodBuilder::new("p").node("n1"), running());
        assert_deleted_first(PodBuilder::new("p").node("n1").phase("Unknown"), running());
        assert_deleted_first(running(), running().ready_at(at(10)));
        assert_deleted_first(running().ready_at(at(20)), running().ready_at(at(10)));
        assert_deleted_first(running().restarts(3), running().restarts(1));
        assert_deleted_first(running().created_at(at(5)), running().created_at(at(1)));
    }

    #[test]
    fn lifecycle_distinguishes_terminating_and_finished_pods() {
        assert_eq!(PodBuilder::new("a").view().lifecycle, Lifecycle::Active);
        assert_eq!(
            PodBuilder::new("a").terminating().view().lifecycle,
            Lifecycle::Terminating
        );
        assert_eq!(
            PodBuilder::new("a").phase("Failed").view().lifecycle,
            Lifecycle::Finished
        );
        assert_eq!(
            PodBuilder::new("a").phase("Succeeded").view().lifecycle,
            Lifecycle::Finished
        );
    }

    #[test]
    fn available_only_after_min_ready_seconds() {
        let pod = PodBuilder::new("a").running().ready_at(at(100)).view();
        let min_ready = SignedDuration::from_secs(10);
        assert!(!pod.is_available(min_ready, at(109)));
        assert!(pod.is_available(min_ready, at(110)));
        assert!(
            !PodBuilder::new("b")
                .running()
                .view()
                .is_available(min_ready, at(500))
        );
    }

    #[test]
    fn problem_names_the_waiting_container() {
        let pod = PodBuilder::new("a")
            .waiting(
                "web",
                "ImagePullBackOff",
                "Back-off pulling image \"nope:v9\"",
            )
            .view();
        assert_eq!(
            pod.problem.as_deref(),
            Some("container web: ImagePullBackOff: Back-off pulling image \"nope:v9\"")
        );
        assert_eq!(
            PodBuilder::new("b")
                .waiting("web", "ContainerCreating", "")
                .view()
                .problem,
            None
        );
    }
}
