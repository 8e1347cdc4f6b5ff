//! The App planner: a pure function from an App and what the cluster shows of it to the
//! actions that move the cluster towards the spec, and the status that describes it. It never
//! calls the API; the controller executes what it returns.

mod claim;
pub mod conditions;
mod fleet;
mod notices;
mod objects;
mod pods;
mod progress;
pub mod revision;
mod rollout;
mod service;
mod status;
mod validate;

#[cfg(test)]
mod simulation;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::{App, AppStatus, StrategyType};

pub use notices::{Notice, SERVICE_CONFLICT, Severity};
pub use objects::{controller_uid, owner_reference};
pub use pods::PodRef;
pub use revision::{Revision, stored_template, template_hash};
pub use rollout::DeleteReason;
pub use status::{CreationOutcome, with_creation_outcome};
pub use validate::pod_selector;

use claim::Claim;
use fleet::Fleet;
use pods::PodView;
use revision::Revisions;
use rollout::{PodChanges, Source, Target};
use service::ServicePlan;
use validate::ValidSpec;

/// What the cluster shows of one App.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Pods in the App's namespace that the App controls or that have no controller and
    /// match its selector.
    pub pods: Vec<Arc<Pod>>,
    /// ControllerRevisions the App controls.
    pub revisions: Vec<Arc<ControllerRevision>>,
    /// The Service named like the App, whoever owns it.
    pub service: Option<Arc<Service>>,
    /// False while pod creations or deletions the controller made are not yet visible in the
    /// cache: acting on the stale view would create or delete twice.
    pub expectations_satisfied: bool,
    pub now: Timestamp,
}

/// One change to the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateRevision(Box<ControllerRevision>),
    RenumberRevision {
        name: String,
        number: i64,
    },
    AdoptPods(Vec<PodRef>),
    ReleasePods(Vec<PodRef>),
    /// `count` pods like `pod` (which has a generateName), of `revision`.
    CreatePods {
        pod: Box<Pod>,
        count: usize,
        revision: String,
    },
    DeletePods {
        pods: Vec<PodRef>,
        reason: DeleteReason,
    },
    ApplyService(Box<Service>),
    DeleteService {
        name: String,
    },
    DeleteRevisions(Vec<String>),
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status as observed before the actions; creation failures are added after.
    pub status: AppStatus,
    pub notices: Vec<Notice>,
    /// When the App should be looked at again even if nothing changes.
    pub wake_at: Option<Timestamp>,
}

pub fn plan(app: &App, observed: &Observed) -> Plan {
    let previous = app.status.clone().unwrap_or_default();
    if app.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the App's objects; creating any would race it.
        return Plan {
            actions: vec![],
            status: previous,
            notices: vec![],
            wake_at: None,
        };
    }
    let update_hash = template_hash(&app.spec.template);
    let mut plan = match validate::validate(app) {
        Ok(spec) => plan_valid(app, observed, &spec, &update_hash),
        Err(problem) => {
            let owned = claim::owned_only(&app.uid().unwrap_or_default(), &observed.pods);
            let views: Vec<PodView> = owned.into_iter().map(PodView::new).collect();
            let fleet = Fleet::new(&views, &update_hash, min_ready(app), observed.now);
            Plan {
                actions: vec![],
                status: status::invalid(app, &fleet, &problem),
                notices: vec![],
                wake_at: None,
            }
        }
    };
    let mut notices = notices::between(&previous, &plan.status);
    notices.append(&mut plan.notices);
    plan.notices = notices;
    plan
}

fn plan_valid(app: &App, observed: &Observed, spec: &ValidSpec, update_hash: &str) -> Plan {
    let Claim {
        owned,
        adopt,
        release,
    } = claim::claim(
        &app.uid().unwrap_or_default(),
        &spec.selector,
        &observed.pods,
    );
    let revision_objects: Vec<ControllerRevision> =
        observed.revisions.iter().map(|r| (**r).clone()).collect();
    let revisions = revision::resolve(app, &revision_objects, update_hash);
    let views: Vec<PodView> = owned.into_iter().map(PodView::new).collect();
    let fleet = Fleet::new(&views, update_hash, min_ready(app), observed.now);

    let mut actions = revisions.actions.clone();
    if !adopt.is_empty() {
        actions.push(Action::AdoptPods(adopt));
    }
    if !release.is_empty() {
        actions.push(Action::ReleasePods(release));
    }
    let mut notices = vec![];
    if observed.expectations_satisfied {
        let target = Target {
            replicas: usize::try_from(app.spec.replicas).unwrap_or(0),
            fenceposts: spec.fenceposts,
            recreate: app.spec.strategy.type_ == StrategyType::Recreate,
            paused: app.spec.paused,
            has_current: revisions.current.is_some(),
        };
        let changes = rollout::plan_pods(&fleet, target);
        actions.extend(pod_actions(app, &revisions, changes));
    }
    let selector_labels = app.effective_selector().match_labels.unwrap_or_default();
    match service::plan_service(app, &selector_labels, observed.service.as_deref()) {
        ServicePlan::Nothing => {}
        ServicePlan::Apply(service) => actions.push(Action::ApplyService(service)),
        ServicePlan::Delete => actions.push(Action::DeleteService {
            name: app.name_any(),
        }),
        ServicePlan::Conflict => notices.push(Notice::warning(
            SERVICE_CONFLICT,
            format!(
                "a Service named {} exists and is not owned by this App; it is left alone",
                app.name_any()
            ),
        )),
    }
    if observed.expectations_satisfied {
        let prunable = prunable_revisions(app, &revision_objects, &revisions, &views);
        if !prunable.is_empty() {
            actions.push(Action::DeleteRevisions(prunable));
        }
    }
    let status = status::compute(&status::StatusInput {
        app,
        fleet: &fleet,
        revisions: &revisions,
        selector: &spec.selector,
        fenceposts: spec.fenceposts,
    });
    Plan {
        actions,
        status: status.status,
        notices,
        wake_at: status.wake_at,
    }
}

fn pod_actions(app: &App, revisions: &Revisions, changes: PodChanges) -> Vec<Action> {
    let mut actions = vec![];
    for reason in [
        DeleteReason::Finished,
        DeleteReason::Surplus,
        DeleteReason::Replaced,
    ] {
        let pods: Vec<PodRef> = changes
            .delete
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(pod, _)| pod.clone())
            .collect();
        if !pods.is_empty() {
            actions.push(Action::DeletePods { pods, reason });
        }
    }
    let source = match (changes.source, &revisions.current) {
        (Some(Source::Current), Some((current, template))) => Some((template, current)),
        (Some(_), _) => Some((&app.spec.template, &revisions.update)),
        (None, _) => None,
    };
    if let Some((template, revision)) = source {
        actions.push(Action::CreatePods {
            pod: Box::new(objects::pod_prototype(app, template, &revision.hash)),
            count: changes.create,
            revision: revision.name.clone(),
        });
    }
    actions
}

fn prunable_revisions(
    app: &App,
    existing: &[ControllerRevision],
    revisions: &Revisions,
    pods: &[PodView],
) -> Vec<String> {
    let in_use: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.revision_hash.as_deref())
        .collect();
    let current = app
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref());
    let protected: Vec<&str> = [Some(revisions.update.name.as_str()), current]
        .into_iter()
        .flatten()
        .collect();
    let limit = usize::try_from(app.spec.revision_history_limit).unwrap_or(0);
    revision::prunable(existing, limit, &protected, &in_use)
}

fn min_ready(app: &App) -> SignedDuration {
    SignedDuration::from_secs(i64::from(app.spec.min_ready_seconds.max(0)))
}

#[cfg(test)]
mod tests;
