//! `Autoscaler`: scales any resource with a `/scale` subresource, with the
//! HorizontalPodAutoscaler's algorithm and behaviour, on CPU, memory and on the
//! new-connection rate Ferry's proxies observe for a Service.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of an Autoscaler.
// kube's printcolumn(...) entries repeat keys such as `type_` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "Autoscaler",
    namespaced,
    status = "AutoscalerStatus",
    shortname = "fas",
    category = "ferry",
    derive = "PartialEq",
    doc = "Autoscaler scales a resource with a /scale subresource (App, Deployment, StatefulSet) \
           on CPU, memory or the connection rate seen by Ferry's proxies, like a \
           HorizontalPodAutoscaler.",
    printcolumn(
        name = "Reference",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name"
    ),
    printcolumn(name = "MinPods", type_ = "integer", json_path = ".spec.minReplicas"),
    printcolumn(name = "MaxPods", type_ = "integer", json_path = ".spec.maxReplicas"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas")
    .message("spec.minReplicas must be less than or equal to spec.maxReplicas")
    .field_path(".minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerSpec {
    /// The resource to scale. It must serve the `/scale` subresource.
    pub scale_target_ref: ScaleTargetRef,
    /// Lower limit for the number of replicas. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Upper limit for the number of replicas; must be at least minReplicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// The metrics to scale on. Each proposes a replica count; the largest wins.
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<MetricSpec>,
    /// Scaling behaviour in each direction (stabilization windows and rate policies), with
    /// the HorizontalPodAutoscaler's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
    /// Relative deviation from the target within which no scaling happens. Defaults to 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: Option<f64>,
}

/// Identifies the scaled resource in the Autoscaler's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target, for example `ferry.dev/v1alpha1` or `apps/v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Kind of the target, for example `App` or `Deployment`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the target.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One metric to scale on: exactly one of `resource` or `connections`, matching `type`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.type == 'Resource' ? (has(self.resource) && !has(self.connections)) : (has(self.connections) && !has(self.resource))"
).message("a metric sets exactly the member named by its type: resource for Resource, connections for Connections"))]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// Which kind of metric this is.
    #[serde(rename = "type")]
    pub type_: MetricType,
    /// CPU or memory of the target's pods, from metrics.k8s.io.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetric>,
    /// New connections per second to a Service, counted by Ferry's proxies on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsMetric>,
}

/// The kinds of metric an Autoscaler understands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MetricType {
    Resource,
    Connections,
}

/// A per-pod resource metric (as HPA's `Resource` metric source).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "self.target.type == 'Utilization' ? has(self.target.averageUtilization) : has(self.target.averageValue)"
).message("target.averageUtilization is required for type Utilization, target.averageValue for AverageValue"))]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetric {
    /// The resource: `cpu` or `memory`.
    pub name: ResourceName,
    /// The target value across the target's pods.
    pub target: ResourceTarget,
}

/// Resources an Autoscaler can scale on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResourceName {
    Cpu,
    Memory,
}

/// Target of a resource metric: utilization of requests, or an absolute average.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTarget {
    /// `Utilization` (percent of the pods' requests) or `AverageValue` (absolute per pod).
    #[serde(rename = "type")]
    pub type_: ResourceTargetType,
    /// Target average utilization in percent of the pods' resource requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub average_utilization: Option<i32>,
    /// Target average value per pod, for example `500m` CPU or `256Mi` memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
}

/// How a resource target is expressed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ResourceTargetType {
    Utilization,
    AverageValue,
}

/// New-connection rate to a Service in the Autoscaler's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionsMetric {
    /// Name of the Service whose new connections are counted.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// Target new connections per second per ready replica, for example `50` or `2500m`.
    pub target_per_replica: Quantity,
}

/// Scaling behaviour for both directions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Scale-up rules. Defaults: no stabilization window; at most the larger of 100% and 4
    /// pods per 15 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Scale-down rules. Defaults: a 300-second stabilization window; at most 100% per 15
    /// seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// Rules for one scaling direction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Seconds of past recommendations considered, to avoid flapping (0 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy wins when several apply: `Max` (default), `Min`, or `Disabled` to stop
    /// scaling in this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Limits on how fast replicas change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// How to choose among several scaling policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// A limit on the change of replicas within a period.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` (an absolute number) or `Percent` (of the current replicas).
    #[serde(rename = "type")]
    pub type_: ScalingPolicyType,
    /// The amount of change allowed; must be greater than zero.
    #[schemars(range(min = 1))]
    pub value: i32,
    /// The window the limit applies to, in seconds (1 to 1800).
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// Units of a scaling policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScalingPolicyType {
    Pods,
    Percent,
}

/// Observed state of an Autoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// The generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the target when last observed.
    #[serde(default)]
    pub current_replicas: i32,
    /// Replicas the Autoscaler last asked for.
    #[serde(default)]
    pub desired_replicas: i32,
    /// When the Autoscaler last changed the target's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The last observed value of each metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    /// `AbleToScale`, `ScalingActive` and `ScalingLimited`, with the
    /// HorizontalPodAutoscaler's reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The last observed value of one metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// Which kind of metric this is.
    #[serde(rename = "type")]
    pub type_: MetricType,
    /// The resource measured, for Resource metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceName>,
    /// The Service measured, for Connections metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Average utilization in percent of requests, for Utilization targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// Average value per pod (resources) or per ready replica (connections per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
}
