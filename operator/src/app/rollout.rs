//! How many pods to create and which to delete: scaling, RollingUpdate, Recreate and pause,
//! with Deployment's arithmetic carried over to pods the App owns directly.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::fleet::Fleet;
use super::pods::{PodRef, PodView, first_to_delete};
use crate::api::RollingUpdate;

/// Rolling-update bounds resolved against `spec.replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fenceposts {
    pub max_surge: usize,
    pub max_unavailable: usize,
}

impl Fenceposts {
    /// Recreate never surges, and counts every missing pod as unavailable.
    pub const RECREATE: Fenceposts = Fenceposts {
        max_surge: 0,
        max_unavailable: 0,
    };
}

/// maxSurge rounds up and maxUnavailable rounds down, as Deployment does; both 0 would stall a
/// rollout, so maxUnavailable becomes 1 then.
pub fn fenceposts(strategy: &RollingUpdate, replicas: i32) -> Result<Fenceposts, String> {
    let replicas = usize::try_from(replicas).unwrap_or(0);
    let max_surge = scaled(&strategy.max_surge, replicas, Rounding::Up)
        .map_err(|e| format!("maxSurge: {e}"))?;
    let max_unavailable = scaled(&strategy.max_unavailable, replicas, Rounding::Down)
        .map_err(|e| format!("maxUnavailable: {e}"))?;
    Ok(Fenceposts {
        max_surge,
        max_unavailable: if max_surge == 0 && max_unavailable == 0 {
            1
        } else {
            max_unavailable
        },
    })
}

#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

fn scaled(value: &IntOrString, total: usize, rounding: Rounding) -> Result<usize, String> {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).map_err(|_| format!("{n} is negative")),
        IntOrString::String(text) => {
            let invalid = || format!("{text:?} is neither a number nor a percentage");
            let Some(digits) = text.strip_suffix('%') else {
                // A number written as a string ("1") means that number.
                return text.parse().map_err(|_| invalid());
            };
            let percent: usize = digits.parse().map_err(|_| invalid())?;
            let scaled = percent * total;
            Ok(match rounding {
                Rounding::Up => scaled.div_ceil(100),
                Rounding::Down => scaled / 100,
            })
        }
    }
}

/// Why a pod is deleted; it goes into the Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// More pods than replicas.
    Surplus,
    /// An old-revision pod replaced by the rollout.
    Replaced,
    /// A pod that succeeded or failed; it is replaced.
    Finished,
}

/// Which template missing pods are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The current template (the update revision).
    Update,
    /// The last completed revision: a paused App does not start the new template.
    Current,
}

/// The pod changes for one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodChanges {
    pub create: usize,
    pub source: Option<Source>,
    pub delete: Vec<(PodRef, DeleteReason)>,
}

impl PodChanges {
    fn delete(&mut self, pods: &[&PodView], reason: DeleteReason) {
        self.delete
            .extend(pods.iter().map(|p| (p.reference(), reason)));
    }

    fn create(&mut self, count: usize, source: Source) {
        if count > 0 {
            self.create = count;
            self.source = Some(source);
        }
    }
}

/// What the rollout rules need besides the pods.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub replicas: usize,
    pub fenceposts: Fenceposts,
    pub recreate: bool,
    pub paused: bool,
    /// A paused App can make pods from its last completed revision.
    pub has_current: bool,
}

pub fn plan_pods(fleet: &Fleet, target: Target) -> PodChanges {
    let mut changes = PodChanges::default();
    changes.delete(&fleet.finished, DeleteReason::Finished);
    if target.paused {
        paused(fleet, target, &mut changes);
    } else if target.recreate {
        recreate(fleet, target.replicas, &mut changes);
    } else {
        rolling(fleet, target.replicas, target.fenceposts, &mut changes);
    }
    changes
}

/// Paused: keep the pod count at replicas without moving the rollout either way.
fn paused(fleet: &Fleet, target: Target, changes: &mut PodChanges) {
    let active: Vec<&PodView> = fleet.active().collect();
    if active.len() > target.replicas {
        let surplus = first_to_delete(&active, active.len() - target.replicas);
        changes.delete(&surplus, DeleteReason::Surplus);
    } else {
        let source = if target.has_current {
            Source::Current
        } else {
            Source::Update
        };
        changes.create(target.replicas - active.len(), source);
    }
}

/// Recreate: every old pod goes, and new ones start only once the old are gone for good, so
/// two templates never run at once.
fn recreate(fleet: &Fleet, replicas: usize, changes: &mut PodChanges) {
    if !fleet.old.is_empty() {
        changes.delete(&fleet.old, DeleteReason::Replaced);
    } else if fleet.old_terminating == 0 {
        scale_new(&fleet.new, replicas, changes);
    }
}

fn scale_new(new: &[&PodView], replicas: usize, changes: &mut PodChanges) {
    if new.len() > replicas {
        changes.delete(
            &first_to_delete(new, new.len() - replicas),
            DeleteReason::Surplus,
        );
    } else {
        changes.create(replicas - new.len(), Source::Update);
    }
}

/// RollingUpdate: new pods up to replicas + maxSurge in total; old pods go while at least
/// replicas - maxUnavailable pods stay available.
fn rolling(fleet: &Fleet, replicas: usize, bounds: Fenceposts, changes: &mut PodChanges) {
    let mut new = fleet.new.clone();
    if new.len() > replicas {
        // The user asked for fewer pods: surplus new pods go regardless of availability.
        let surplus = first_to_delete(&new, new.len() - replicas);
        changes.delete(&surplus, DeleteReason::Surplus);
        new.retain(|p| !surplus.contains(p));
    }
    let max_total = replicas + bounds.max_surge;
    let active = new.len() + fleet.old.len();
    let create = (replicas - new.len()).min(max_total.saturating_sub(active));
    changes.create(create, Source::Update);
    if fleet.old.is_empty() {
        return;
    }

    let min_available = replicas.saturating_sub(bounds.max_unavailable);
    let new_available = new.iter().filter(|p| fleet.is_available(p)).count();
    let new_unavailable = new.len() + create - new_available;
    // Pods that may go without the App dropping below minAvailable even if every pending new
    // pod stays unavailable; nothing goes when that is not positive.
    let removable = (active + create).saturating_sub(min_available + new_unavailable);
    if removable == 0 {
        return;
    }
    let (healthy_old, unhealthy_old): (Vec<&PodView>, Vec<&PodView>) =
        fleet.old.iter().partition(|p| fleet.is_available(p));
    // Unavailable old pods serve nobody: they go first.
    changes.delete(
        &first_to_delete(&unhealthy_old, removable),
        DeleteReason::Replaced,
    );
    let available = new_available + healthy_old.len();
    let spare = available.saturating_sub(min_available);
    changes.delete(
        &first_to_delete(&healthy_old, spare),
        DeleteReason::Replaced,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{PodBuilder, at};
    use k8s_openapi::jiff::SignedDuration;

    fn bounds(max_surge: usize, max_unavailable: usize) -> Fenceposts {
        Fenceposts {
            max_surge,
            max_unavailable,
        }
    }

    fn rolling_target(replicas: usize, fenceposts: Fenceposts) -> Target {
        Target {
            replicas,
            fenceposts,
            recreate: false,
            paused: false,
            has_current: false,
        }
    }

    /// `old`/`new` pods as (name, available) pairs; available pods have been ready since t=0.
    fn views(old: &[(&str, bool)], new: &[(&str, bool)]) -> Vec<PodView> {
        let build = |(name, available): &(&str, bool), revision: &str| {
            let pod = PodBuilder::new(name)
                .revision(revision)
                .node("n1")
                .running();
            if *available { pod.ready_at(at(0)) } else { pod }.view()
        };
        old.iter()
            .map(|p| build(p, "old"))
            .chain(new.iter().map(|p| build(p, "new")))
            .collect()
    }

    fn changes(pods: &[PodView], target: Target) -> PodChanges {
        let fleet = Fleet::new(pods, "new", SignedDuration::ZERO, at(100));
        plan_pods(&fleet, target)
    }

    fn deleted(changes: &PodChanges) -> Vec<&str> {
        changes
            .delete
            .iter()
            .map(|(p, _)| p.name.as_str())
            .collect()
    }

    #[test]
    fn percentages_round_like_deployment() {
        let rolling = |surge: &str, unavailable: &str| RollingUpdate {
            max_surge: IntOrString::String(surge.into()),
            max_unavailable: IntOrString::String(unavailable.into()),
        };
        let cases = [
            (rolling("25%", "25%"), 10, bounds(3, 2)),
            (rolling("25%", "25%"), 1, bounds(1, 0)),
            (rolling("0%", "25%"), 3, bounds(0, 1)),
            (rolling("0%", "10%"), 3, bounds(0, 1)), // both round to 0: unavailable becomes 1
            (rolling("100%", "0%"), 0, bounds(0, 1)),
        ];
        for (strategy, replicas, expected) in cases {
            assert_eq!(
                fenceposts(&strategy, replicas),
                Ok(expected),
                "{strategy:?} x {replicas}"
            );
        }
        let ints = RollingUpdate {
            max_surge: IntOrString::Int(2),
            max_unavailable: IntOrString::Int(0),
        };
        assert_eq!(fenceposts(&ints, 5), Ok(bounds(2, 0)));
        assert_eq!(
            fenceposts(&rolling("2", "1"), 5),
            Ok(bounds(2, 1)),
            "numbers written as strings"
        );
    }

    #[test]
    fn scale_up_creates_the_missing_pods() {
        let pods = views(&[], &[("a", true)]);
        let changes = changes(&pods, rolling_target(4, bounds(1, 1)));
        assert_eq!((changes.create, changes.source), (3, Some(Source::Update)));
    }

    #[test]
    fn scale_down_deletes_unready_pods_first() {
        let pods = views(&[], &[("a", true), ("b", false), ("c", true)]);
        let changes = changes(&pods, rolling_target(2, bounds(1, 1)));
        assert_eq!(deleted(&changes), ["b"]);
        assert_eq!(changes.create, 0);
    }

    #[test]
    fn rollout_starts_with_surge_and_unavailable_budget() {
        let pods = views(
            &[("o1", true), ("o2", true), ("o3", true), ("o4", true)],
            &[],
        );
        let changes = changes(&pods, rolling_target(4, bounds(1, 1)));
        assert_eq!(changes.create, 1, "4 + 1 surge");
        assert_eq!(deleted(&changes).len(), 1, "4 available - 3 minimum");
    }

    #[test]
    fn rollout_without_surge_deletes_before_creating() {
        let pods = views(&[("o1", true), ("o2", true), ("o3", true)], &[]);
        let changes = changes(&pods, rolling_target(3, bounds(0, 1)));
        assert_eq!((changes.create, deleted(&changes).len()), (0, 1));
    }

    #[test]
    fn rollout_waits_for_new_pods_to_become_available() {
        // 3 replicas, surge 1, unavailable 0: one new pod exists but is not ready yet.
        let pods = views(
            &[("o1", true), ("o2", true), ("o3", true)],
            &[("n1", false)],
        );
        let changes = changes(&pods, rolling_target(3, bounds(1, 0)));
        assert_eq!(changes, PodChanges::default());
    }

    #[test]
    fn unavailable_old_pods_go_first_within_the_budget() {
        let pods = views(
            &[("o1", false), ("o2", true), ("o3", true)],
            &[("n1", true)],
        );
        let changes = changes(&pods, rolling_target(3, bounds(1, 0)));
        assert_eq!(deleted(&changes), ["o1"]);
    }

    #[test]
    fn rollout_keeps_old_pods_when_new_ones_are_broken() {
        // All surge used by broken new pods: no old pod may go.
        let pods = views(&[("o1", true), ("o2", true)], &[("n1", false)]);
        let changes = changes(&pods, rolling_target(2, bounds(1, 0)));
        assert_eq!(changes, PodChanges::default());
    }

    #[test]
    fn rollout_finishes_by_removing_the_last_old_pods() {
        let pods = views(&[("o1", true)], &[("n1", true), ("n2", true), ("n3", true)]);
        let changes = changes(&pods, rolling_target(3, bounds(1, 1)));
        assert_eq!((changes.create, deleted(&changes)), (0, vec!["o1"]));
    }

    #[test]
    fn recreate_deletes_all_old_pods_then_waits_for_them() {
        let target = Target {
            recreate: true,
            ..rolling_target(2, Fenceposts::RECREATE)
        };
        let pods = views(&[("o1", true), ("o2", false)], &[]);
        let first = changes(&pods, target);
        assert_eq!((first.create, deleted(&first).len()), (0, 2));

        let terminating = [PodBuilder::new("o1").revision("old").terminating().view()];
        assert_eq!(changes(&terminating, target), PodChanges::default());

        let second = changes(&[], target);
        assert_eq!((second.create, second.source), (2, Some(Source::Update)));
    }

    #[test]
    fn paused_app_replaces_missing_pods_from_the_current_revision() {
        let target = Target {
            paused: true,
            has_current: true,
            ..rolling_target(3, bounds(1, 1))
        };
        let pods = views(&[("o1", true), ("o2", true)], &[]);
        let changes = changes(&pods, target);
        assert_eq!((changes.create, changes.source), (1, Some(Source::Current)));
        assert!(
            changes.delete.is_empty(),
            "a paused rollout removes no old pods"
        );
    }

    #[test]
    fn finished_pods_are_deleted_and_replaced() {
        let mut pods = views(&[], &[("a", true)]);
        pods.push(
            PodBuilder::new("failed")
                .revision("new")
                .phase("Failed")
                .view(),
        );
        let changes = changes(&pods, rolling_target(2, bounds(1, 1)));
        assert_eq!(
            changes.delete,
            vec![(pods[1].reference(), DeleteReason::Finished)]
        );
        assert_eq!(changes.create, 1);
    }
}
