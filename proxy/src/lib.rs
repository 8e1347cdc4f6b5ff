//! Ferry's per-node service proxy.
//!
//! Data flows one way: `watch` keeps the cluster objects, `model` turns them into the desired
//! dataplane, `diff` compares that with what the kernel holds, and the kernel edges (`ipvs`,
//! `link`, `conntrack`, `nft`) apply the resulting operations.

pub mod announce;
pub mod config;
pub mod conntrack;
pub mod dataplane;
pub mod diff;
pub mod health;
pub mod healthcheck;
pub mod ipvs;
pub mod link;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod sync;
pub mod sysctl;
pub mod watch;
