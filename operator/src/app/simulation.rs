//! Property tests of the rollout invariants: a fake cluster executes the planner's actions
//! while pods become ready (and flap back) at random, time passes and the App is paused and
//! resumed. At every step:
//! - RollingUpdate never runs more than replicas + maxSurge pods, and never deletes an
//!   available pod when fewer than replicas - maxUnavailable would stay available;
//! - Recreate never starts a new pod while an old one exists;
//! - a paused App neither starts new-template pods beyond replacing missing ones nor replaces
//!   old pods.
//!
//! Once pods stop flapping, the rollout finishes: exactly replicas pods, all updated.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use proptest::prelude::*;

use super::conditions::{NEW_REVISION_AVAILABLE, PROGRESSING, find};
use super::rollout::{Fenceposts, fenceposts};
use super::testing::{AppBuilder, PodBuilder, at};
use super::{
    Action, App, CreationOutcome, DeleteReason, Observed, plan, template_hash,
    with_creation_outcome,
};
use crate::api::{REVISION_HASH_LABEL, StrategyType};

#[derive(Clone, Debug)]
struct SimPod {
    name: String,
    hash: String,
    ready_since: Option<i64>,
    terminating: bool,
}

/// What happens between two reconciles.
#[derive(Clone, Debug)]
struct Tick {
    seconds: i64,
    /// Bit i: the i-th not-ready pod becomes ready.
    become_ready: u16,
    /// A ready pod (by index) loses readiness.
    flap: Option<usize>,
    toggle_pause: bool,
    /// Pods deleted so far finish terminating.
    finish_termination: bool,
}

struct Cluster {
    app: App,
    pods: Vec<SimPod>,
    revisions: Vec<ControllerRevision>,
    now: i64,
    created: usize,
}

impl Cluster {
    fn new(app: App) -> Self {
        Cluster {
            app,
            pods: vec![],
            revisions: vec![],
            now: 1,
            created: 0,
        }
    }

    fn observed(&self) -> Observed {
        let pods = self
            .pods
            .iter()
            .map(|p| {
                let mut pod = PodBuilder::new(&p.name)
                    .owned_by(&self.app)
                    .revision(&p.hash)
                    .node("n1")
                    .running();
                if let Some(since) = p.ready_since {
                    pod = pod.ready_at(at(since));
                }
                if p.terminating {
                    pod = pod.terminating();
                }
                pod.pod()
            })
            .collect();
        Observed {
            pods,
            revisions: self.revisions.iter().cloned().map(Arc::new).collect(),
            service: None,
            expectations_satisfied: true,
            now: at(self.now),
        }
    }

    fn active(&self) -> impl Iterator<Item = &SimPod> {
        self.pods.iter().filter(|p| !p.terminating)
    }

    fn is_available(&self, pod: &SimPod) -> bool {
        let min_ready = i64::from(self.app.spec.min_ready_seconds);
        pod.ready_since
            .is_some_and(|since| since + min_ready <= self.now)
    }

    fn available(&self) -> usize {
        self.active().filter(|p| self.is_available(p)).count()
    }

    /// One reconcile: plan, check the plan against the invariants, execute it.
    fn reconcile(&mut self, bounds: Fenceposts) -> Result<usize, TestCaseError> {
        let plan = plan(&self.app, &self.observed());
        self.check(&plan.actions, bounds)?;
        let created = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreatePods { .. }));
        let outcome = if created {
            CreationOutcome::Created
        } else {
            CreationOutcome::NotAttempted
        };
        let status = with_creation_outcome(plan.status, &outcome, at(self.now), None);
        self.app.status = Some(status);
        let changes = plan.actions.len();
        for action in plan.actions {
            self.execute(action);
        }
        Ok(changes)
    }

    fn check(&self, actions: &[Action], bounds: Fenceposts) -> Result<(), TestCaseError> {
        let replicas = usize::try_from(self.app.spec.replicas).unwrap_or(0);
        let update_hash = template_hash(&self.app.spec.template);
        let mut active = self.active().count();
        let mut deleted_available = 0;
        for action in actions {
            match action {
                Action::CreatePods { pod, count, .. } => {
                    active += count;
                    let hash = &pod.labels()[REVISION_HASH_LABEL];
                    if self.app.spec.strategy.type_ == StrategyType::Recreate
                        && *hash == update_hash
                    {
                        let old = self.pods.iter().filter(|p| p.hash != update_hash).count();
                        prop_assert_eq!(old, 0, "Recreate started a new pod while old pods exist");
                    }
                    if self.app.spec.paused {
                        prop_assert!(
                            active <= replicas,
                            "a paused App only replaces missing pods"
                        );
                    }
                }
                Action::DeletePods { pods, reason } => {
                    active = active.saturating_sub(pods.len());
                    deleted_available += self
                        .active()
                        .filter(|p| pods.iter().any(|d| d.name == p.name) && self.is_available(p))
                        .count();
                    if self.app.spec.paused {
                        prop_assert_ne!(
                            *reason,
                            DeleteReason::Replaced,
                            "a paused App replaced an old pod"
                        );
                    }
                }
                _ => {}
            }
        }
        if self.app.spec.strategy.type_ == StrategyType::RollingUpdate {
            prop_assert!(
                active <= replicas + bounds.max_surge,
                "{active} pods exceed {replicas} replicas + {} surge",
                bounds.max_surge
            );
            let min_available = replicas.saturating_sub(bounds.max_unavailable);
            prop_assert!(
                deleted_available == 0 || self.available() - deleted_available >= min_available,
                "deleting {deleted_available} available pods leaves fewer than {min_available}"
            );
        }
        Ok(())
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::CreateRevision(revision) => self.revisions.push(*revision),
            Action::RenumberRevision { name, number } => {
                for revision in self.revisions.iter_mut().filter(|r| r.name_any() == name) {
                    revision.revision = number;
                }
            }
            Action::DeleteRevisions(names) => {
                self.revisions.retain(|r| !names.contains(&r.name_any()))
            }
            Action::CreatePods { pod, count, .. } => {
                for _ in 0..count {
                    self.created += 1;
                    self.pods.push(SimPod {
                        name: format!("pod-{}", self.created),
                        hash: pod.labels()[REVISION_HASH_LABEL].clone(),
                        ready_since: None,
                        terminating: false,
                    });
                }
            }
            Action::DeletePods { pods, .. } => {
                for pod in self
                    .pods
                    .iter_mut()
                    .filter(|p| pods.iter().any(|d| d.name == p.name))
                {
                    pod.terminating = true;
                }
            }
            Action::AdoptPods(_)
            | Action::ReleasePods(_)
            | Action::ApplyService(_)
            | Action::DeleteService { .. } => {}
        }
    }

    fn apply(&mut self, tick: &Tick) {
        self.now += tick.seconds;
        let now = self.now;
        let not_ready = self.pods.iter_mut().filter(|p| p.ready_since.is_none());
        for (i, pod) in not_ready.enumerate() {
            if i < 16 && tick.become_ready & (1 << i) != 0 {
                pod.ready_since = Some(now);
            }
        }
        if let Some(index) = tick.flap {
            let ready: Vec<&mut SimPod> = self
                .pods
                .iter_mut()
                .filter(|p| p.ready_since.is_some())
                .collect();
            let count = ready.len();
            if let Some(pod) = ready.into_iter().nth(index % count.max(1)) {
                pod.ready_since = None;
            }
        }
        if tick.toggle_pause {
            self.app.spec.paused = !self.app.spec.paused;
        }
        if tick.finish_termination {
            self.pods.retain(|p| !p.terminating);
        }
    }

    /// Pods stop flapping and everything becomes ready: the rollout must finish.
    fn settle(&mut self, bounds: Fenceposts) -> Result<(), TestCaseError> {
        self.app.spec.paused = false;
        for _ in 0..200 {
            let changes = self.reconcile(bounds)?;
            self.pods.retain(|p| !p.terminating);
            let now = self.now;
            for pod in self.pods.iter_mut().filter(|p| p.ready_since.is_none()) {
                pod.ready_since = Some(now);
            }
            self.now += i64::from(self.app.spec.min_ready_seconds) + 1;
            if changes == 0 && self.rollout_complete() {
                return Ok(());
            }
        }
        Err(TestCaseError::fail(format!(
            "rollout did not finish: {:?}",
            self.pods
        )))
    }

    fn rollout_complete(&self) -> bool {
        let progressing = self
            .app
            .status
            .as_ref()
            .and_then(|s| find(&s.conditions, PROGRESSING));
        progressing.is_some_and(|c| c.reason == NEW_REVISION_AVAILABLE)
    }
}

fn tick() -> impl Strategy<Value = Tick> {
    let pause = proptest::bool::weighted(0.05);
    let flap = proptest::option::weighted(0.1, 0usize..16);
    (0i64..20, any::<u16>(), flap, pause, any::<bool>()).prop_map(
        |(seconds, become_ready, flap, toggle_pause, finish_termination)| Tick {
            seconds,
            become_ready,
            flap,
            toggle_pause,
            finish_termination,
        },
    )
}

fn int_or_percent() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4).prop_map(|n| n.to_string()),
        (0u8..=100).prop_map(|p| format!("{p}%"))
    ]
}

fn app() -> impl Strategy<Value = App> {
    (
        0i32..9,
        int_or_percent(),
        int_or_percent(),
        0i32..15,
        any::<bool>(),
    )
        .prop_filter(
            "maxSurge and maxUnavailable cannot both be 0",
            |(_, surge, unavailable, _, _)| !(is_zero(surge) && is_zero(unavailable)),
        )
        .prop_map(|(replicas, surge, unavailable, min_ready, recreate)| {
            let builder = AppBuilder::new("web")
                .replicas(replicas)
                .min_ready_seconds(min_ready);
            let builder = if recreate {
                builder.recreate()
            } else {
                builder.rolling(&surge, &unavailable)
            };
            builder.build()
        })
}

fn is_zero(value: &str) -> bool {
    value.trim_end_matches('%') == "0"
}

fn bounds_of(app: &App) -> Fenceposts {
    match app.spec.strategy.type_ {
        StrategyType::Recreate => Fenceposts::RECREATE,
        StrategyType::RollingUpdate => {
            fenceposts(&app.rolling_update(), app.spec.replicas).expect("valid bounds")
        }
    }
}

/// Brings a fresh App up with every pod ready, so the rollout starts from a steady state.
fn steady(app: App) -> Result<Cluster, TestCaseError> {
    let mut cluster = Cluster::new(app);
    let bounds = bounds_of(&cluster.app);
    cluster.settle(bounds)?;
    Ok(cluster)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rollouts_respect_their_bounds_and_finish(app in app(), ticks in proptest::collection::vec(tick(), 1..60)) {
        let mut cluster = steady(app)?;
        let bounds = bounds_of(&cluster.app);
        cluster.app.spec.template.spec.get_or_insert_default().containers[0].image = Some("web:v2".into());
        cluster.app.metadata.generation = Some(2);
        for tick in &ticks {
            cluster.reconcile(bounds)?;
            cluster.apply(tick);
        }
        cluster.settle(bounds)?;

        let update_hash = template_hash(&cluster.app.spec.template);
        let replicas = usize::try_from(cluster.app.spec.replicas).unwrap_or(0);
        prop_assert_eq!(cluster.pods.len(), replicas);
        prop_assert!(cluster.pods.iter().all(|p| p.hash == update_hash), "old pods left: {:?}", cluster.pods);
        let status = cluster.app.status.clone().unwrap_or_default();
        prop_assert_eq!(status.current_revision, status.update_revision);
    }
}

#[test]
fn settle_reaches_a_steady_state_from_nothing() {
    let cluster = steady(AppBuilder::new("web").build()).expect("settles");
    assert_eq!(cluster.pods.len(), 3);
    assert!(cluster.rollout_complete());
    let time = cluster.app.status.and_then(|s| s.last_progress_time);
    assert!(time.is_some_and(|Time(t)| t > at(0)));
}
