//! The glue between the desired model and the kernel edges, one implementation per mode:
//! [`IpvsDataplane`] (IPVS virtual servers, addresses on `ferry-ipvs0`, the helper nftables
//! table, conntrack) and [`NftablesDataplane`] (table `inet ferry`, conntrack).
//!
//! Both take the kernel edges as traits, so the sync loop runs against the in-memory fakes in
//! tests exactly as against netlink.

mod cleanup;
mod connections;
mod helper;
mod ipvs;
mod nft_table;
mod nftables;
mod sysctls;
mod udp;

use std::future::Future;

pub use cleanup::{CleanupError, cleanup, remove_ipvs_mode};
pub use connections::{ConnectionCounters, ConnectionStats, CounterError, NftCounters};
pub use helper::ruleset as ipvs_helper_ruleset;
pub use ipvs::{IpvsDataplane, IpvsEdges};
pub use nftables::NftablesDataplane;
pub use sysctls::{NodeSysctl, apply_sysctls};

use crate::conntrack::ConntrackError;
use crate::ipvs::IpvsError;
use crate::link::LinkError;
use crate::model::Desired;
use crate::nft::NftError;

/// Whether a sync may trust what the previous one left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Read the kernel back first and repair whatever differs (start, periodic, after a
    /// failure).
    Kernel,
    /// Trust the state the last sync left (partial syncs).
    Remembered,
}

/// A mode's dataplane: brings the kernel to a desired state.
pub trait Dataplane: Send {
    fn sync(
        &mut self,
        desired: &Desired,
        reading: Reading,
    ) -> impl Future<Output = Result<SyncReport, DataplaneError>> + Send;
}

/// What a successful sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Kernel operations applied (IPVS, addresses, nftables, conntrack).
    pub ops: usize,
    /// Real servers still draining at weight 0: the next sync must look at their
    /// connections again.
    pub draining: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    /// Some operations failed; the others were applied (ops that depended on a failed one
    /// were skipped).
    #[error("{failed} of {total} operations failed, the first: {first}")]
    Ops {
        failed: usize,
        total: usize,
        first: Box<DataplaneError>,
    },
}

impl DataplaneError {
    /// A stable label for `ferry_proxy_sync_errors_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DataplaneError::Ipvs(_) => "ipvs",
            DataplaneError::Link(_) => "link",
            DataplaneError::Nft(_) => "nftables",
            DataplaneError::Ops { first, .. } => first.metric_label(),
        }
    }
}

/// The label of a diff op in `ferry_proxy_ops_applied_total{kind}`.
fn op_kind(op: &crate::diff::Op) -> &'static str {
    use crate::diff::Op;
    match op {
        Op::AddVirtualServer { .. } => "add_virtual_server",
        Op::UpdateVirtualServer { .. } => "update_virtual_server",
        Op::DeleteVirtualServer { .. } => "delete_virtual_server",
        Op::AddRealServer { .. } => "add_real_server",
        Op::UpdateRealServer { .. } => "update_real_server",
        Op::DeleteRealServer { .. } => "delete_real_server",
        Op::BindAddress { .. } => "bind_address",
        Op::UnbindAddress { .. } => "unbind_address",
        Op::DeleteConntrackToBackend { .. } => "conntrack_cleanup_backend",
        Op::DeleteConntrackToFrontend { .. } => "conntrack_cleanup_frontend",
    }
}

/// Conntrack failures never fail a sync: a resync cannot bring the cleanup back (the kernel
/// state it followed is already right), so they are logged and counted on their own.
const CONNTRACK_ERROR_LABEL: &str = "conntrack";

fn conntrack_failure(metrics: &crate::metrics::Metrics, error: &ConntrackError) {
    tracing::warn!(%error, "conntrack cleanup failed; stale UDP flows expire on their own");
    metrics.count_sync_error(CONNTRACK_ERROR_LABEL);
}
