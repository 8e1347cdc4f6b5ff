//! Ferry's custom resources (group `ferry.dev`, version `v1alpha1`).
//!
//! The Rust types are the single source of truth: `crds/*.yaml` is generated from them by
//! `ferry-crdgen`, and a test fails when the committed YAML drifts.

pub mod app;
pub mod autoscaler;
pub mod crds;
pub mod lbpool;

pub use app::*;
pub use autoscaler::*;
pub use lbpool::*;

/// The API group of every Ferry resource.
pub const GROUP: &str = "ferry.dev";
