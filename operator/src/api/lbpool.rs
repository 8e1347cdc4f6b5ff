//! `LoadBalancerPool`: address pools from which the operator assigns LoadBalancer ingress
//! IPs to native `type: LoadBalancer` Services on clusters without a cloud load balancer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `spec.loadBalancerClass` a Service sets to be served by Ferry's pools.
pub const LOAD_BALANCER_CLASS: &str = "ferry.dev/pool";

/// Desired state of a LoadBalancerPool.
// kube's printcolumn(...) entries repeat keys such as `type_` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferry.dev",
    version = "v1alpha1",
    kind = "LoadBalancerPool",
    status = "LoadBalancerPoolStatus",
    shortname = "lbpool",
    category = "ferry",
    derive = "PartialEq",
    doc = "LoadBalancerPool is a set of addresses that Ferry assigns to type LoadBalancer \
           Services. ferry-proxy announces them from the nodes when it runs with \
           `--announce l2`; otherwise route them to the nodes by other means.",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocated"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.available"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolSpec {
    /// Addresses of the pool: CIDRs (`192.0.2.0/28`, `2001:db8::/120`) or inclusive ranges
    /// of one family (`192.0.2.10-192.0.2.20`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 100)))]
    #[x_kube(validation = Rule::new(
        "self.all(a, isCIDR(a) || (a.split('-').size() == 2 && isIP(a.split('-')[0]) && isIP(a.split('-')[1]) && ip(a.split('-')[0]).family() == ip(a.split('-')[1]).family()))"
    ).message("each address must be a CIDR such as 192.0.2.0/28 or a range of one family such as 192.0.2.10-192.0.2.20"))]
    pub addresses: Vec<String>,
    /// Skip addresses ending in .0 and .255, which some old clients and routers mishandle.
    #[serde(default)]
    pub avoid_buggy_ips: bool,
    /// Assign from this pool to Services that do not ask for a pool by name. Defaults to true.
    #[serde(default = "default_true")]
    pub auto_assign: bool,
    /// Also serve Services that leave `spec.loadBalancerClass` unset (not only those whose
    /// class is `ferry.dev/pool`). Make one pool the default on clusters with no other
    /// load-balancer implementation.
    #[serde(default)]
    pub default: bool,
    /// Only Services whose labels match may use this pool; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// Only Services in namespaces whose labels match may use this pool; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

fn default_true() -> bool {
    true
}

/// Observed state of a LoadBalancerPool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolStatus {
    /// The generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Addresses of the pool assigned to Services.
    #[serde(default)]
    pub allocated: i64,
    /// Addresses of the pool still free (saturates for very large IPv6 pools).
    #[serde(default)]
    pub available: i64,
    /// `Valid` is False, with a message, when the pool overlaps another pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
