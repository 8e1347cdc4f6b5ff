//! Builders for planner tests. Fixtures live in namespace `default`; an App named `web` has
//! uid `uid-web`, labels `app: web` and image `web:v1`; a pod named `p` has uid `uid-p`.
//! Times are whole seconds after the epoch (`at(10)`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::json;

use super::objects::owner_reference;
use super::pods::PodView;
use crate::api::{
    App, AppService, AppSpec, AppStatus, AppStrategy, REVISION_HASH_LABEL, RollingUpdate,
    StrategyType,
};

pub const NAMESPACE: &str = "default";

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("test time in range")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub struct AppBuilder {
    app: App,
}

impl AppBuilder {
    pub fn new(name: &str) -> Self {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("web:v1".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        };
        let spec = AppSpec {
            replicas: 3,
            selector: None,
            template,
            strategy: AppStrategy::default(),
            min_ready_seconds: 0,
            revision_history_limit: 10,
            progress_deadline_seconds: 600,
            paused: false,
            service: None,
        };
        let mut app = App::new(name, spec);
        app.metadata.namespace = Some(NAMESPACE.into());
        app.metadata.uid = Some(format!("uid-{name}"));
        app.metadata.generation = Some(1);
        AppBuilder { app }
    }

    fn pod_spec(&mut self) -> &mut PodSpec {
        self.app.spec.template.spec.get_or_insert_default()
    }

    pub fn image(mut self, image: &str) -> Self {
        self.pod_spec().containers[0].image = Some(image.into());
        self
    }

    pub fn replicas(mut self, replicas: i32) -> Self {
        self.app.spec.replicas = replicas;
        self
    }

    pub fn selector(mut self, selector: LabelSelector) -> Self {
        self.app.spec.selector = Some(selector);
        self
    }

    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.app
            .spec
            .template
            .metadata
            .get_or_insert_default()
            .labels = Some(labels);
        self
    }

    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.pod_spec().restart_policy = Some(policy.into());
        self
    }

    pub fn rolling(mut self, max_surge: &str, max_unavailable: &str) -> Self {
        let value = |v: &str| {
            v.parse()
                .map_or_else(|_| IntOrString::String(v.into()), IntOrString::Int)
        };
        self.app.spec.strategy = AppStrategy {
            type_: StrategyType::RollingUpdate,
            rolling_update: Some(RollingUpdate {
                max_surge: value(max_surge),
                max_unavailable: value(max_unavailable),
            }),
        };
        self
    }

    pub fn recreate(mut self) -> Self {
        self.app.spec.strategy = AppStrategy {
            type_: StrategyType::Recreate,
            rolling_update: None,
        };
        self
    }

    pub fn paused(mut self, paused: bool) -> Self {
        self.app.spec.paused = paused;
        self
    }

    pub fn min_ready_seconds(mut self, seconds: i32) -> Self {
        self.app.spec.min_ready_seconds = seconds;
        self
    }

    pub fn revision_history_limit(mut self, limit: i32) -> Self {
        self.app.spec.revision_history_limit = limit;
        self
    }

    pub fn service(mut self, service: AppService) -> Self {
        self.app.spec.service = Some(service);
        self
    }

    pub fn status(mut self, status: AppStatus) -> Self {
        self.app.status = Some(status);
        self
    }

    pub fn build(self) -> App {
        self.app
    }
}

/// A ControllerRevision of `app`'s current template.
pub fn revision(app: &App, name: &str, hash: &str, number: i64) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels(&[(REVISION_HASH_LABEL, hash)])),
            owner_references: owner_reference(app).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(
            json!({ "spec": { "template": app.spec.template } }),
        )),
        revision: number,
    }
}

pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    pub fn new(name: &str) -> Self {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "web")])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        };
        PodBuilder { pod }
    }

    fn status(&mut self) -> &mut PodStatus {
        self.pod.status.get_or_insert_default()
    }

    pub fn node(mut self, node: &str) -> Self {
        self.pod.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.status().phase = Some(phase.into());
        self
    }

    pub fn running(self) -> Self {
        self.phase("Running")
    }

    pub fn ready_at(mut self, since: Timestamp) -> Self {
        self.status().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..PodCondition::default()
        }]);
        self
    }

    pub fn restarts(mut self, restarts: i32) -> Self {
        self.status().container_statuses = Some(vec![ContainerStatus {
            name: "web".into(),
            restart_count: restarts,
            ..ContainerStatus::default()
        }]);
        self
    }

    pub fn waiting(mut self, container: &str, reason: &str, message: &str) -> Self {
        self.status().container_statuses = Some(vec![ContainerStatus {
            name: container.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        self
    }

    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.pod.metadata.creation_timestamp = Some(Time(at));
        self
    }

    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(at(0)));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod.labels_mut().insert(key.into(), value.into());
        self
    }

    pub fn revision(self, hash: &str) -> Self {
        self.label(REVISION_HASH_LABEL, hash)
    }

    pub fn owned_by(mut self, app: &App) -> Self {
        self.pod.metadata.owner_references = owner_reference(app).map(|r| vec![r]);
        self
    }

    pub fn controlled_by(mut self, uid: &str) -> Self {
        self.pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "other".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        self
    }

    pub fn view(&self) -> PodView {
        PodView::new(&self.pod)
    }

    pub fn pod(self) -> Arc<Pod> {
        Arc::new(self.pod)
    }
}
