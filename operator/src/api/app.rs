//! `App`: a replicated application — what a ReplicaSet and a Deployment give, in one
//! resource. The operator manages the App's Pods directly, keeps every template it has run as
//! a `ControllerRevision`, and optionally exposes the pods through a Service it owns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Label on every pod and ControllerRevision: the hash of the pod template it was made from.
pub const REVISION_HASH_LABEL: &str = "ferry.dev/revision-hash";
/// Label on every object the App controller creates: the owning App's name. It lets the
/// operator watch only its own ControllerRevisions and Services.
pub const APP_NAME_LABEL: &str = "ferry.dev/app";
/// Annotation a user sets on the App to explain a change; copied to the revision it creates
/// and shown by `kubectl ferry rollout history`.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// Desired state of an App.
// Clippy reads the repeated `type_ = ...` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    shortname = "fapp",
    category = "ferry",
    category = "all",
    derive = "PartialEq",
    doc = "App runs a replicated set of Pods from a template, replaces failed pods, rolls out \
           template changes (RollingUpdate or Recreate), keeps its history for rollback, and can \
           expose the pods through a Service.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "has(self.selector) || (has(self.template.metadata) && has(self.template.metadata.labels) && size(self.template.metadata.labels) > 0)"
).message("spec.template.metadata.labels must not be empty when spec.selector is omitted: they become the selector"))]
#[x_kube(validation = Rule::new(
    "has(self.selector) == has(oldSelf.selector) && (!has(self.selector) || self.selector == oldSelf.selector)"
).message("spec.selector is immutable: delete and recreate the App to change it").field_path(".selector"))]
#[x_kube(validation = Rule::new(
    "has(self.selector) || !has(oldSelf.template.metadata) || !has(oldSelf.template.metadata.labels) || (has(self.template.metadata) && has(self.template.metadata.labels) && self.template.metadata.labels == oldSelf.template.metadata.labels)"
).message("spec.template.metadata.labels are the App's selector while spec.selector is omitted, so they cannot change").field_path(".template.metadata.labels"))]
#[x_kube(validation = Rule::new(
    "!has(self.service) || !has(self.selector) || !has(self.selector.matchExpressions) || size(self.selector.matchExpressions) == 0"
).message("spec.service needs a spec.selector of matchLabels only: a Service selects pods by label equality").field_path(".selector"))]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Number of pods to run. Defaults to 1. Changed by `kubectl scale` through the scale
    /// subresource.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Label query over the pods the App manages. Optional: when omitted, the template's
    /// labels are the selector (and then cannot change). It must match the template's labels
    /// and is immutable once set. Matching pods without a controller are adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// The pod template. Every pod is created from it, labelled with the selector's labels and
    /// `ferry.dev/revision-hash`. Any change starts a rollout to a new revision. The API
    /// server validates the pod itself when the App creates it; a template it rejects shows
    /// up as the `ReplicaFailure` condition and a Warning event on the App.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplateSpec,

    /// How old pods are replaced by new ones when the template changes. Defaults to a
    /// RollingUpdate with maxSurge 25% and maxUnavailable 25%.
    #[serde(default)]
    pub strategy: AppStrategy,

    /// Seconds a new pod must be ready, with no container crashing, before it counts as
    /// available. Defaults to 0 (available as soon as ready).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: i32,

    /// Number of old revisions (ControllerRevisions without pods) to keep for rollback.
    /// Defaults to 10.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: i32,

    /// Seconds a rollout may go without progress before the App reports
    /// `Progressing=False` with reason `ProgressDeadlineExceeded`. The rollout is not rolled
    /// back; the condition tells a person to look. Defaults to 600.
    #[serde(default = "default_progress_deadline_seconds")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: i32,

    /// Stops a rollout where it is: no pods of a new template are started and no old ones
    /// are removed for it, but missing pods are still replaced (from the last completed
    /// revision). Resuming continues the rollout.
    #[serde(default)]
    pub paused: bool,

    /// A Service for the App's pods, created and owned by the App and selecting exactly the
    /// App's pods. Removing the block deletes the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<AppService>,
}

fn default_replicas() -> i32 {
    1
}

fn default_revision_history_limit() -> i32 {
    10
}

fn default_progress_deadline_seconds() -> i32 {
    600
}

/// The pod template's schema in the CRD: the labels and annotations are typed (the selector
/// rules above read them), the pod spec is stored as given. Embedding the full PodSpec schema
/// would make the CRD megabytes large, and the API server validates the pod anyway when the
/// App creates one.
fn pod_template_schema(_: &mut SchemaGenerator) -> Schema {
    let string_map = json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" }
    });
    json_schema!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "description": "Labels and annotations of the pods. Name and namespace are chosen by the App.",
                "properties": {
                    "labels": string_map,
                    "annotations": string_map
                },
                "x-kubernetes-preserve-unknown-fields": true
            },
            "spec": {
                "type": "object",
                "description": "The pod spec (see `kubectl explain pod.spec`). restartPolicy must be Always.",
                "required": ["containers"],
                "properties": {
                    "containers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": { "name": { "type": "string" } },
                            "x-kubernetes-preserve-unknown-fields": true
                        }
                    }
                },
                "x-kubernetes-preserve-unknown-fields": true
            }
        }
    })
}

/// How a template change replaces old pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.type == 'RollingUpdate' || !has(self.rollingUpdate)")
    .message("spec.strategy.rollingUpdate may only be set when spec.strategy.type is RollingUpdate"))]
#[serde(rename_all = "camelCase")]
pub struct AppStrategy {
    /// `RollingUpdate` (default) replaces pods a few at a time, bounded by maxSurge and
    /// maxUnavailable; `Recreate` deletes every old pod before starting new ones.
    #[serde(rename = "type", default)]
    pub type_: StrategyType,

    /// Bounds of a rolling update. Only with type RollingUpdate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// The kind of update strategy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StrategyType {
    /// Replace pods gradually, keeping the App available.
    #[default]
    RollingUpdate,
    /// Delete all old pods, then create the new ones.
    Recreate,
}

/// Bounds of a rolling update, each an absolute number or a percentage of `spec.replicas`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// `string()` reads 0, "0" and "0%" alike, whether the value arrived as a number or a string.
#[x_kube(validation = Rule::new(
    "!(string(self.maxSurge).matches('^0+%?$') && string(self.maxUnavailable).matches('^0+%?$'))"
).message("maxSurge and maxUnavailable cannot both be 0: the rollout could never replace a pod"))]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// How many pods may exist above `spec.replicas` during a rollout: a number, or a
    /// percentage of replicas rounded up. Defaults to 25%.
    #[serde(default = "quarter")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]+%?$')")
        .message("must be a non-negative integer or a percentage such as '25%'"))]
    pub max_surge: IntOrString,

    /// How many of `spec.replicas` may be unavailable during a rollout: a number, or a
    /// percentage of replicas rounded down. Defaults to 25%. Cannot be 0 when maxSurge is 0.
    #[serde(default = "quarter")]
    #[x_kube(validation = Rule::new("string(self).matches('^([0-9]+|(100|[1-9]?[0-9])%)$')")
        .message("must be a non-negative integer or a percentage from '0%' to '100%'"))]
    pub max_unavailable: IntOrString,
}

fn quarter() -> IntOrString {
    IntOrString::String("25%".to_owned())
}

impl Default for RollingUpdate {
    fn default() -> Self {
        Self {
            max_surge: quarter(),
            max_unavailable: quarter(),
        }
    }
}

/// The Service the App creates for its pods. It is named like the App.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'ClusterIP' || !has(self.externalTrafficPolicy)")
    .message("externalTrafficPolicy may only be set for NodePort and LoadBalancer services"))]
#[x_kube(validation = Rule::new("self.type == 'LoadBalancer' || !has(self.loadBalancerClass)")
    .message("loadBalancerClass may only be set for LoadBalancer services"))]
#[x_kube(validation = Rule::new("self.type != 'ClusterIP' || self.ports.all(p, !has(p.nodePort))")
    .message("nodePort may only be set for NodePort and LoadBalancer services"))]
#[x_kube(validation = Rule::new("self.ports.size() <= 1 || self.ports.all(p, has(p.name))")
    .message("every port needs a name when the service has more than one port"))]
#[x_kube(validation = Rule::new(
    "self.ports.all(p, !has(p.name) || self.ports.exists_one(q, has(q.name) && q.name == p.name))"
).message("port names must be unique"))]
#[serde(rename_all = "camelCase")]
pub struct AppService {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(rename = "type", default)]
    pub type_: ServiceType,

    /// The ports the Service exposes.
    #[schemars(length(min = 1, max = 32))]
    pub ports: Vec<AppServicePort>,

    /// `ClientIP` sends a client's connections to the same pod; `None` (default) balances
    /// each connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,

    /// For NodePort and LoadBalancer: `Local` keeps traffic on the node it arrived at (and
    /// the client's source address), `Cluster` (default) spreads it over all pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,

    /// For LoadBalancer: which load-balancer implementation serves the Service, for example
    /// `ferry.dev/lb` for Ferry's LoadBalancerPool. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub load_balancer_class: Option<String>,
}

/// Type of the App's Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// A virtual IP reachable inside the cluster.
    #[default]
    ClusterIP,
    /// A ClusterIP plus a port on every node.
    NodePort,
    /// A NodePort plus an external address from a load-balancer implementation.
    LoadBalancer,
}

/// Session affinity of the App's Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SessionAffinity {
    /// Each connection may go to any pod.
    None,
    /// Connections from one client address go to the same pod.
    #[serde(rename = "ClientIP")]
    ClientIp,
}

/// External traffic policy of the App's Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TrafficPolicy {
    /// Any node forwards to any pod.
    Cluster,
    /// Nodes forward only to their own pods, preserving the client address.
    Local,
}

/// Transport protocol of a Service port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// TCP (default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// One port of the App's Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppServicePort {
    /// Name of the port (a DNS label). Required when there is more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,

    /// The port the Service listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The pod port traffic goes to: a number, or the name of a container port. Defaults to
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,

    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,

    /// For NodePort and LoadBalancer: the port on every node. Allocated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<i32>,
}

/// Observed state of an App, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The `metadata.generation` this status describes. Older than the generation means the
    /// operator has not acted on the latest spec yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Pods the App runs (not terminating), of any revision.
    #[serde(default)]
    pub replicas: i32,

    /// Pods made from the current template.
    #[serde(default)]
    pub updated_replicas: i32,

    /// Pods whose Ready condition is true.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Pods ready for at least `spec.minReadySeconds`.
    #[serde(default)]
    pub available_replicas: i32,

    /// The ControllerRevision the App last finished rolling out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,

    /// The ControllerRevision of the current template, which a rollout moves pods to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,

    /// The App's label selector in string form, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// When the rollout last made progress; the progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,

    /// `Available`: at least replicas - maxUnavailable pods are available. `Progressing`:
    /// the rollout moves (False with reason ProgressDeadlineExceeded when stuck).
    /// `ReplicaFailure`: pods cannot be created, with the API server's reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl App {
    /// The labels that select this App's pods: `spec.selector`, or the template's labels when
    /// the selector is omitted.
    pub fn effective_selector(&self) -> LabelSelector {
        self.spec.selector.clone().unwrap_or_else(|| LabelSelector {
            match_labels: Some(self.template_labels().clone()),
            match_expressions: None,
        })
    }

    /// The template's labels (empty when it has none).
    pub fn template_labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    /// The rolling-update bounds, with defaults when the block is omitted.
    pub fn rolling_update(&self) -> RollingUpdate {
        self.spec
            .strategy
            .rolling_update
            .clone()
            .unwrap_or_default()
    }
}

/// The CRD's validation rules, evaluated client-side with kube's CEL interpreter against the
/// generated schema (the API server runs the same rules; `e2e` checks them there too).
#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use kube::core::cel::Validator;
    use serde_json::{Value, json};

    use super::App;

    fn schema() -> Value {
        let crd = App::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        serde_json::to_value(schema).expect("schema serializes")
    }

    fn app(spec: Value) -> Value {
        json!({ "apiVersion": "ferry.dev/v1alpha1", "kind": "App", "metadata": { "name": "web" }, "spec": spec })
    }

    fn web(extra: Value) -> Value {
        let mut spec = json!({
            "replicas": 3,
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "web:v1" }] }
            }
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        app(spec)
    }

    /// The messages of the rules `object` breaks (on update when `old` is given).
    fn broken(object: &Value, old: Option<&Value>) -> Vec<String> {
        match Validator::new().validate(&schema(), object, old) {
            Ok(()) => vec![],
            Err(errors) => errors.to_string().lines().map(str::to_owned).collect(),
        }
    }

    #[track_caller]
    fn assert_rejected(object: Value, old: Option<Value>, fragment: &str) {
        let errors = broken(&object, old.as_ref());
        assert!(
            errors.iter().any(|e| e.contains(fragment)),
            "expected {fragment:?} in {errors:?}"
        );
    }

    fn strategy(surge: Value, unavailable: Value) -> Value {
        json!({ "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } } })
    }

    #[test]
    fn a_plain_app_is_valid() {
        assert_eq!(broken(&web(json!({})), None), Vec::<String>::new());
        assert_eq!(
            broken(&web(strategy(json!(0), json!("10%"))), None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn surge_and_unavailable_cannot_both_be_zero_in_any_spelling() {
        let zeros = [
            (json!(0), json!(0)),
            (json!("0%"), json!(0)),
            (json!(0), json!("0%")),
            (json!("0"), json!("00%")),
        ];
        for (surge, unavailable) in zeros {
            assert_rejected(web(strategy(surge, unavailable)), None, "cannot both be 0");
        }
    }

    #[test]
    fn surge_and_unavailable_must_be_numbers_or_percentages() {
        assert_rejected(
            web(strategy(json!("-1"), json!(1))),
            None,
            "percentage such as '25%'",
        );
        assert_rejected(
            web(strategy(json!("a%"), json!(1))),
            None,
            "percentage such as '25%'",
        );
        assert_rejected(
            web(strategy(json!(1), json!("150%"))),
            None,
            "from '0%' to '100%'",
        );
    }

    #[test]
    fn recreate_takes_no_rolling_update_bounds() {
        let spec = json!({ "strategy": { "type": "Recreate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 1 } } });
        assert_rejected(
            web(spec),
            None,
            "only be set when spec.strategy.type is RollingUpdate",
        );
    }

    #[test]
    fn an_omitted_selector_needs_template_labels_that_then_stay() {
        let mut unlabelled = web(json!({}));
        unlabelled["spec"]["template"]["metadata"] = json!({});
        assert_rejected(
            unlabelled,
            None,
            "must not be empty when spec.selector is omitted",
        );

        let mut relabelled = web(json!({}));
        relabelled["spec"]["template"]["metadata"]["labels"]["tier"] = json!("front");
        assert_rejected(relabelled, Some(web(json!({}))), "so they cannot change");
    }

    #[test]
    fn the_selector_is_immutable() {
        let selected =
            |value: &str| web(json!({ "selector": { "matchLabels": { "app": value } } }));
        assert_rejected(
            selected("api"),
            Some(selected("web")),
            "spec.selector is immutable",
        );
        assert_rejected(
            selected("web"),
            Some(web(json!({}))),
            "spec.selector is immutable",
        );
        assert_eq!(
            broken(&selected("web"), Some(&selected("web"))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn service_fields_must_fit_the_service_type() {
        let service = |block: Value| web(json!({ "service": block }));
        let port = json!({ "port": 80, "nodePort": 30080 });
        assert_rejected(
            service(json!({ "type": "ClusterIP", "ports": [port] })),
            None,
            "nodePort may only be set",
        );
        assert_rejected(
            service(
                json!({ "type": "ClusterIP", "ports": [{ "port": 80 }], "externalTrafficPolicy": "Local" }),
            ),
            None,
            "externalTrafficPolicy may only be set",
        );
        assert_rejected(
            service(
                json!({ "type": "NodePort", "ports": [{ "port": 80 }], "loadBalancerClass": "ferry.dev/lb" }),
            ),
            None,
            "loadBalancerClass may only be set",
        );
        assert_rejected(
            service(json!({ "ports": [{ "port": 80 }, { "port": 81 }] })),
            None,
            "needs a name",
        );
        let twins =
            json!({ "ports": [{ "name": "http", "port": 80 }, { "name": "http", "port": 81 }] });
        assert_rejected(service(twins), None, "port names must be unique");
    }
}
