//! The desired dataplane as a pure function of the cluster:
//! (Services, EndpointSlices, this Node, config) → [`Desired`].
//!
//! - [`input`], the only place that sees Kubernetes types, converts API objects into the
//!   plain values of [`cluster`], skipping bad input with typed reasons;
//! - [`Snapshot`] holds those values, slices indexed by Service;
//! - [`service_dataplane`] builds one Service's frontends, [`desired()`] all of them, and
//!   [`Desired::update_service`] rebuilds one for a partial sync (see [`desired`](mod@desired)).
//!
//! The same `Desired` feeds both dataplanes: IPVS (virtual servers, bound addresses, and the
//! helper nftables table for masquerade, source ranges and drops) and pure nftables.

pub mod cluster;
pub mod config;
pub mod desired;
mod endpoints;
pub mod frontend;
pub mod input;
pub mod service;
pub mod snapshot;
pub mod types;

#[cfg(test)]
mod tests;

pub use cluster::{
    Endpoint, EndpointConditions, EndpointSliceInfo, NodeAddress, NodeAddressKind, NodeInfo,
    ServiceInfo, ServiceName, ServicePort, ServicePortName, SliceName, SlicePort, TrafficPolicy,
};
pub use config::{ModelConfig, NodeContext};
pub use desired::{Desired, desired};
pub use endpoints::ENDPOINT_WEIGHT;
pub use frontend::{Frontend, FrontendKind, HairpinEndpoint, HealthCheck, Masquerade, NoEndpoints};
pub use service::{ServiceDataplane, service_dataplane};
pub use snapshot::Snapshot;
