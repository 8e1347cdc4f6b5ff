//! Kubernetes objects in, validated plain values out: the only place that sees API types.
//!
//! Bad input never panics and never poisons the model: an object that cannot be served is
//! skipped with a typed reason, and a bad field in an otherwise good object is dropped with a
//! warning. Callers log both and count them by [`InputError::metric_label`].

mod node;
mod parse;
mod service;
mod slice;

use std::net::IpAddr;

pub use node::node_info;
pub use service::{SCHEDULER_ANNOTATION, SERVICE_PROXY_NAME_LABEL, service_info};
pub use slice::{SERVICE_NAME_LABEL, endpoint_slice_info};

/// Most ports accepted in one Service.
pub const MAX_SERVICE_PORTS: usize = 1000;
/// Most entries accepted in one address list (clusterIPs, externalIPs, ingress, source ranges).
pub const MAX_ADDRESSES: usize = 256;
/// The API server's own limits for a slice; more means a broken or forged object.
pub const MAX_SLICE_ENDPOINTS: usize = 1000;
pub const MAX_SLICE_PORTS: usize = 100;

/// A converted object and the fields that were dropped from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted<T> {
    pub value: T,
    pub warnings: Vec<InputError>,
}

/// Why an object is not proxied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// Not Ferry's to serve, by design: log at debug level only.
    #[error("ignored: {0}")]
    Ignored(Ignored),
    /// Broken input: warn and count.
    #[error("invalid: {0}")]
    Invalid(#[from] InputError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("served by the proxy named {0:?} (service.kubernetes.io/service-proxy-name)")]
    OtherProxy(String),
    #[error("headless Service")]
    Headless,
    #[error("ExternalName Service")]
    ExternalName,
    #[error("EndpointSlice address type {0:?}")]
    AddressType(String),
}

/// A problem with the input: the object or the field is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("object has no namespace or name")]
    MissingName,
    #[error("EndpointSlice has no {SERVICE_NAME_LABEL} label")]
    MissingServiceLabel,
    #[error("Service has no usable port")]
    NoUsablePorts,
    #[error("Service has no usable cluster IP")]
    NoClusterIp,
    #[error("{field}: {count} entries, more than the {limit} Ferry accepts")]
    TooLarge {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{field}: unparsable address {value:?}")]
    UnparsableAddress { field: &'static str, value: String },
    #[error("{field}: unparsable CIDR {value:?}")]
    UnparsableCidr { field: &'static str, value: String },
    #[error("{field}: {address} is not of the object's IP families")]
    WrongFamily {
        field: &'static str,
        address: IpAddr,
    },
    #[error("{field}: port number {number} is outside 1-65535")]
    PortOutOfRange { field: &'static str, number: i32 },
    #[error("{field}: unsupported protocol {protocol:?}")]
    UnsupportedProtocol {
        field: &'static str,
        protocol: String,
    },
    #[error(
        "sessionAffinityConfig.clientIP.timeoutSeconds {0} is outside 1-86400, using the default"
    )]
    AffinityTimeout(i32),
    #[error("{SCHEDULER_ANNOTATION}: unknown scheduler {0:?}, using rr")]
    UnknownScheduler(String),
    #[error("loadBalancerSourceRanges has no valid entry: the LoadBalancer IPs are not served")]
    NoValidSourceRange,
}

impl InputError {
    /// A stable, low-cardinality label for the skipped-input metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            InputError::MissingName => "missing_name",
            InputError::MissingServiceLabel => "missing_service_label",
            InputError::NoUsablePorts => "no_usable_ports",
            InputError::NoClusterIp => "no_cluster_ip",
            InputError::TooLarge { .. } => "too_large",
            InputError::UnparsableAddress { .. } => "unparsable_address",
            InputError::UnparsableCidr { .. } => "unparsable_cidr",
            InputError::WrongFamily { .. } => "wrong_family",
            InputError::PortOutOfRange { .. } => "port_out_of_range",
            InputError::UnsupportedProtocol { .. } => "unsupported_protocol",
            InputError::AffinityTimeout(_) => "affinity_timeout",
            InputError::UnknownScheduler(_) => "unknown_scheduler",
            InputError::NoValidSourceRange => "no_valid_source_range",
        }
    }
}
