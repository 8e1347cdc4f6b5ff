//! Table tests of `plan` as a whole: one case per rule, read like the cluster.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::conditions::{
    self, AVAILABLE, INVALID_SPEC, NEW_REVISION_AVAILABLE, NEW_REVISION_CREATED, PROGRESSING,
    REPLICA_FAILURE,
};
use super::testing::{AppBuilder, PodBuilder, at, revision};
use super::*;
use crate::api::{AppService, AppServicePort, REVISION_HASH_LABEL};

fn observe(pods: Vec<Arc<Pod>>, revisions: Vec<ControllerRevision>) -> Observed {
    Observed {
        pods,
        revisions: revisions.into_iter().map(Arc::new).collect(),
        service: None,
        expectations_satisfied: true,
        now: at(1000),
    }
}

/// Pods of `app`'s current template, ready since t=0.
fn ready_pods(app: &App, names: &[&str]) -> Vec<Arc<Pod>> {
    let hash = template_hash(&app.spec.template);
    names
        .iter()
        .map(|name| {
            PodBuilder::new(name)
                .owned_by(app)
                .revision(&hash)
                .node("n1")
                .running()
                .ready_at(at(0))
                .pod()
        })
        .collect()
}

fn created(plan: &Plan) -> usize {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::CreatePods { count, .. } => *count,
            _ => 0,
        })
        .sum()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .flat_map(|a| match a {
            Action::DeletePods { pods, .. } => pods.iter().map(|p| p.name.clone()).collect(),
            _ => vec![],
        })
        .collect()
}

#[track_caller]
fn condition<'a>(plan: &'a Plan, type_: &str) -> (&'a str, &'a str) {
    let c = conditions::find(&plan.status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn new_app_records_a_revision_and_creates_its_pods() {
    let app = AppBuilder::new("web").build();
    let plan = plan(&app, &observe(vec![], vec![]));
    assert!(matches!(plan.actions[0], Action::CreateRevision(_)));
    let Action::CreatePods {
        pod,
        count,
        revision,
    } = &plan.actions[1]
    else {
        panic!("expected CreatePods, got {:?}", plan.actions);
    };
    let hash = template_hash(&app.spec.template);
    assert_eq!(
        (*count, revision.as_str()),
        (3, format!("web-{hash}").as_str())
    );
    assert_eq!(pod.labels()[REVISION_HASH_LABEL], hash);
    assert_eq!(
        condition(&plan, PROGRESSING),
        ("True", NEW_REVISION_CREATED)
    );
    assert_eq!(condition(&plan, AVAILABLE).0, "False");
    assert_eq!(plan.status.selector.as_deref(), Some("app=web"));
}

#[test]
fn stale_cache_plans_no_pod_changes() {
    let app = AppBuilder::new("web").build();
    let mut observed = observe(vec![], vec![]);
    observed.expectations_satisfied = false;
    let plan = plan(&app, &observed);
    assert_eq!(created(&plan), 0);
}

#[test]
fn deleted_pod_is_replaced() {
    let app = AppBuilder::new("web").build();
    let hash = template_hash(&app.spec.template);
    let revisions = vec![revision(&app, &format!("web-{hash}"), &hash, 1)];
    let plan = plan(&app, &observe(ready_pods(&app, &["a", "b"]), revisions));
    assert_eq!(created(&plan), 1);
    assert_eq!(plan.status.replicas, 2);
}

#[test]
fn complete_rollout_is_reported_and_needs_nothing() {
    let app = AppBuilder::new("web").build();
    let hash = template_hash(&app.spec.template);
    let revisions = vec![revision(&app, &format!("web-{hash}"), &hash, 1)];
    let plan = plan(
        &app,
        &observe(ready_pods(&app, &["a", "b", "c"]), revisions),
    );
    assert_eq!(plan.actions, vec![]);
    assert_eq!(
        condition(&plan, PROGRESSING),
        ("True", NEW_REVISION_AVAILABLE)
    );
    assert_eq!(
        condition(&plan, AVAILABLE),
        ("True", "MinimumReplicasAvailable")
    );
    assert_eq!(plan.status.current_revision, plan.status.update_revision);
    assert_eq!(plan.wake_at, None);
}

#[test]
fn template_change_starts_a_rollout_within_the_bounds() {
    let v1 = AppBuilder::new("web").replicas(4).rolling("1", "1").build();
    let old_hash = template_hash(&v1.spec.template);
    let old_name = format!("web-{old_hash}");
    let status = AppStatus {
        current_revision: Some(old_name.clone()),
        update_revision: Some(old_name.clone()),
        ..AppStatus::default()
    };
    let v2 = AppBuilder::new("web")
        .replicas(4)
        .rolling("1", "1")
        .image("web:v2")
        .status(status)
        .build();
    let pods = ready_pods(&v1, &["a", "b", "c", "d"]);
    let plan = plan(
        &v2,
        &observe(pods, vec![revision(&v1, &old_name, &old_hash, 1)]),
    );
    assert_eq!((created(&plan), deleted(&plan).len()), (1, 1));
    assert_eq!(
        plan.notices,
        vec![Notice::normal(
            notices::ROLLOUT_STARTED,
            format!(
                "rolling out revision {}",
                plan.status.update_revision.clone().unwrap()
            )
        )]
    );
    assert_eq!(
        plan.status.current_revision.as_deref(),
        Some(old_name.as_str())
    );
}

#[test]
fn paused_app_with_a_new_template_replaces_pods_from_the_current_revision() {
    let v1 = AppBuilder::new("web").build();
    let old_hash = template_hash(&v1.spec.template);
    let old_name = format!("web-{old_hash}");
    let status = AppStatus {
        current_revision: Some(old_name.clone()),
        update_revision: Some(old_name.clone()),
        ..AppStatus::default()
    };
    let v2 = AppBuilder::new("web")
        .image("web:v2")
        .paused(true)
        .status(status)
        .build();
    let plan = plan(
        &v2,
        &observe(
            ready_pods(&v1, &["a", "b"]),
            vec![revision(&v1, &old_name, &old_hash, 1)],
        ),
    );
    let creation = plan.actions.iter().find_map(|a| match a {
        Action::CreatePods { pod, count, .. } => {
            Some((pod.labels()[REVISION_HASH_LABEL].clone(), *count))
        }
        _ => None,
    });
    assert_eq!(creation, Some((old_hash, 1)));
    assert_eq!(
        condition(&plan, PROGRESSING),
        ("Unknown", conditions::ROLLOUT_PAUSED)
    );
}

#[test]
fn orphans_are_adopted_and_count_as_replicas() {
    let app = AppBuilder::new("web").replicas(1).build();
    let orphan = PodBuilder::new("stray")
        .node("n1")
        .running()
        .ready_at(at(0))
        .pod();
    let plan = plan(&app, &observe(vec![orphan], vec![]));
    assert!(plan.actions.contains(&Action::AdoptPods(vec![PodRef {
        name: "stray".into(),
        uid: "uid-stray".into()
    }])));
    // The adopted pod has no revision hash: it is an old pod the rollout replaces.
    assert_eq!((plan.status.replicas, plan.status.updated_replicas), (1, 0));
}

#[test]
fn invalid_spec_touches_nothing_and_says_why() {
    let app = AppBuilder::new("web").restart_policy("OnFailure").build();
    let orphan = PodBuilder::new("stray").pod();
    let plan = plan(&app, &observe(vec![orphan], vec![]));
    assert_eq!(plan.actions, vec![]);
    assert_eq!(condition(&plan, REPLICA_FAILURE), ("True", INVALID_SPEC));
    assert_eq!(plan.notices[0].severity, Severity::Warning);
}

#[test]
fn app_being_deleted_plans_nothing() {
    let mut app = AppBuilder::new("web").build();
    app.metadata.deletion_timestamp = Some(Time(at(1)));
    let plan = plan(&app, &observe(vec![], vec![]));
    assert_eq!(plan.actions, vec![]);
}

#[test]
fn min_ready_seconds_wakes_the_app_when_a_pod_becomes_available() {
    let app = AppBuilder::new("web")
        .replicas(1)
        .min_ready_seconds(30)
        .build();
    let hash = template_hash(&app.spec.template);
    let pod = PodBuilder::new("a")
        .owned_by(&app)
        .revision(&hash)
        .running()
        .ready_at(at(990))
        .pod();
    let plan = plan(
        &app,
        &observe(
            vec![pod],
            vec![revision(&app, &format!("web-{hash}"), &hash, 1)],
        ),
    );
    assert_eq!(
        (plan.status.ready_replicas, plan.status.available_replicas),
        (1, 0)
    );
    assert_eq!(plan.wake_at, Some(at(1020)));
}

#[test]
fn old_revisions_beyond_the_limit_are_pruned() {
    let app = AppBuilder::new("web")
        .replicas(0)
        .revision_history_limit(1)
        .build();
    let hash = template_hash(&app.spec.template);
    let revisions = vec![
        revision(&app, "web-1", "h1", 1),
        revision(&app, "web-2", "h2", 2),
        revision(&app, &format!("web-{hash}"), &hash, 3),
    ];
    let plan = plan(&app, &observe(vec![], revisions));
    assert_eq!(
        plan.actions,
        vec![Action::DeleteRevisions(vec!["web-1".into()])]
    );
}

#[test]
fn service_block_is_applied_and_a_foreign_service_is_left_alone() {
    let block = AppService {
        ports: vec![AppServicePort {
            port: 80,
            ..AppServicePort::default()
        }],
        ..AppService::default()
    };
    let app = AppBuilder::new("web").replicas(0).service(block).build();
    let plan_without = plan(&app, &observe(vec![], vec![]));
    assert!(
        plan_without
            .actions
            .iter()
            .any(|a| matches!(a, Action::ApplyService(_)))
    );

    let mut observed = observe(vec![], vec![]);
    observed.service = Some(Arc::new(Service {
        metadata: kube::api::ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        ..Service::default()
    }));
    let plan_foreign = plan(&app, &observed);
    assert!(
        !plan_foreign
            .actions
            .iter()
            .any(|a| matches!(a, Action::ApplyService(_)))
    );
    assert!(
        plan_foreign
            .notices
            .iter()
            .any(|n| n.reason == SERVICE_CONFLICT)
    );
}
