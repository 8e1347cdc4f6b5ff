//! The IPVS mode: virtual servers, their addresses on `ferry-ipvs0`, the helper nftables
//! table and UDP conntrack cleanup.
//!
//! A sync that reads the kernel lists every virtual server and bound address and diffs
//! against that, so whatever is there (from a previous Ferry process, or drift) is adopted or
//! repaired, never flushed. A partial sync trusts the state the previous sync left, kept by
//! applying each successful op to it, except for the connection counters of real servers
//! being retired or drained: they decide whether a real server goes now, so the real servers
//! of those virtual servers (only those) are read again.
//!
//! Ops run in the diff's order. A failed op does not stop the others (one bad Service must
//! not hold every other change back), but the ops that depend on it (later ops on the same
//! virtual server) are skipped, the sync reports the failure, and the remembered state is
//! dropped so the next sync reads the kernel.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tracing::warn;

use super::nft_table::NftTable;
use super::{Dataplane, DataplaneError, Reading, SyncReport, helper, op_kind, udp};
use crate::conntrack::Conntrack;
use crate::diff::{self, DiffConfig, GracefulState, Op};
use crate::ipvs::{Ipvs, IpvsError, ObservedVirtualServer};
use crate::link::Link;
use crate::metrics::Metrics;
use crate::model::types::{
    KernelRealServer, KernelState, KernelVirtualServer, Protocol, VirtualServerKey,
};
use crate::model::{Desired, FrontendKind};
use crate::nft::NftDataplane;

/// The kernel edges the IPVS mode drives.
pub struct IpvsEdges<I, L, C, N> {
    pub ipvs: Arc<I>,
    pub link: Arc<L>,
    pub conntrack: Arc<C>,
    /// For the helper table.
    pub nft: N,
}

pub struct IpvsDataplane<I, L, C, N> {
    ipvs: Arc<I>,
    link: Arc<L>,
    conntrack: Arc<C>,
    helper: NftTable<N>,
    cluster_cidrs: Vec<IpNet>,
    diff_config: DiffConfig,
    /// The kernel as the last sync left it; `None` when it must be read.
    remembered: Option<KernelState>,
    graceful: GracefulState,
    metrics: Arc<Metrics>,
}

impl<I, L, C, N> IpvsDataplane<I, L, C, N>
where
    I: Ipvs,
    L: Link,
    C: Conntrack,
    N: NftDataplane + Send + Sync,
{
    pub fn new(
        edges: IpvsEdges<I, L, C, N>,
        grace_period: Duration,
        cluster_cidrs: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            ipvs: edges.ipvs,
            link: edges.link,
            conntrack: edges.conntrack,
            helper: NftTable::new(edges.nft, metrics.clone()),
            cluster_cidrs,
            diff_config: DiffConfig {
                grace_period,
                ..DiffConfig::default()
            },
            remembered: None,
            graceful: GracefulState::default(),
            metrics,
        }
    }

    /// The state to diff against: remembered (with fresh counters for draining real servers),
    /// or read from the kernel.
    async fn current(
        &mut self,
        desired: &Desired,
        reading: Reading,
    ) -> Result<KernelState, DataplaneError> {
        match self.remembered.take() {
            Some(mut state) if reading == Reading::Remembered => {
                let draining = self.graceful.iter().map(|(key, _, _)| *key).collect();
                self.refresh_counters(&mut state, draining).await?;
                Ok(state)
            }
            _ => {
                // Someone may have deleted the link, or the node's addresses changed.
                self.link.ensure_link().await?;
                self.refresh_ownership(desired).await?;
                self.read().await
            }
        }
    }

    /// Reads the real servers of `keys` again: whether a retired real server drains or goes
    /// depends on its connections, which the remembered state does not follow.
    async fn refresh_counters(
        &self,
        state: &mut KernelState,
        keys: BTreeSet<VirtualServerKey>,
    ) -> Result<(), DataplaneError> {
        for key in keys {
            match self.ipvs.list_real_servers(key).await {
                Ok(real_servers) => {
                    let fresh = kernel_virtual_server(ObservedVirtualServer {
                        real_servers,
                        ..ObservedVirtualServer::default()
                    });
                    if let Some(server) = state.virtual_servers.get_mut(&key) {
                        server.real_servers = fresh.real_servers;
                    }
                }
                Err(IpvsError::NotFound { .. }) => {
                    state.virtual_servers.remove(&key);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn read(&self) -> Result<KernelState, DataplaneError> {
        let virtual_servers = self.ipvs.list_virtual_servers().await?;
        Ok(KernelState {
            virtual_servers: virtual_servers
                .into_iter()
                .map(|(key, observed)| (key, kernel_virtual_server(observed)))
                .collect(),
            bound_addresses: self.link.list_addresses().await?,
        })
    }

    /// NodePorts may have been served on any of the node's addresses (loopback only when it
    /// serves them now): virtual servers there in the NodePort range are Ferry's.
    async fn refresh_ownership(&mut self, desired: &Desired) -> Result<(), DataplaneError> {
        let host = self.link.host_addresses().await?;
        let node_ports = desired
            .virtual_servers()
            .iter()
            .filter(|(_, frontend)| frontend.kind == FrontendKind::NodePort)
            .map(|(key, _)| key.address);
        self.diff_config.ownership.node_port_addresses = host
            .into_iter()
            .filter(|address| !address.is_loopback())
            .chain(node_ports)
            .collect();
        Ok(())
    }

    /// Applies `ops`, keeping `state` in step with what succeeded. Returns how many were
    /// applied, and whether `state` still matches the kernel.
    async fn apply(
        &self,
        ops: &[Op],
        state: &mut KernelState,
    ) -> Result<(usize, bool), DataplaneError> {
        let mut applied = 0;
        let mut consistent = true;
        let mut failures = Vec::new();
        let mut failed_servers = BTreeSet::new();
        for op in ops {
            if virtual_server_of(op).is_some_and(|key| failed_servers.contains(&key)) {
                continue;
            }
            match self.apply_one(op).await {
                Ok(true) => {
                    applied += 1;
                    self.metrics.count_ops(op_kind(op), 1);
                    // The diff's own model of the op; should it disagree with the kernel,
                    // the next sync reads the kernel instead of trusting `state`.
                    if let Err(error) = diff::apply(state, std::slice::from_ref(op)) {
                        warn!(?op, %error, "the remembered IPVS state disagrees with the kernel");
                        consistent = false;
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    warn!(?op, %error, "IPVS operation failed");
                    failed_servers.extend(virtual_server_of(op));
                    failures.push(error);
                }
            }
        }
        match failures.len() {
            0 => Ok((applied, consistent)),
            failed => Err(DataplaneError::Ops {
                failed,
                total: ops.len(),
                first: Box::new(failures.swap_remove(0)),
            }),
        }
    }

    /// Applies one op; `Ok(false)` for a conntrack cleanup that failed (logged and counted:
    /// it never fails the sync).
    async fn apply_one(&self, op: &Op) -> Result<bool, DataplaneError> {
        match *op {
            Op::AddVirtualServer { key, ref params } => {
                self.ipvs.add_virtual_server(key, params).await?
            }
            Op::UpdateVirtualServer { key, ref params } => {
                self.ipvs.update_virtual_server(key, params).await?
            }
            Op::DeleteVirtualServer { key } => self.ipvs.delete_virtual_server(key).await?,
            Op::AddRealServer {
                key,
                real_server,
                weight,
            } => self.ipvs.add_real_server(key, real_server, weight).await?,
            Op::UpdateRealServer {
                key,
                real_server,
                weight,
            } => {
                self.ipvs
                    .update_real_server(key, real_server, weight)
                    .await?
            }
            Op::DeleteRealServer { key, real_server } => {
                self.ipvs.delete_real_server(key, real_server).await?
            }
            Op::BindAddress { address } => self.link.add_address(address).await?,
            Op::UnbindAddress { address } => self.link.delete_address(address).await?,
            Op::DeleteConntrackToBackend { .. } | Op::DeleteConntrackToFrontend { .. } => {
                return Ok(udp::clean(&*self.conntrack, op, &self.metrics).await);
            }
        }
        Ok(true)
    }
}

impl<I, L, C, N> Dataplane for IpvsDataplane<I, L, C, N>
where
    I: Ipvs,
    L: Link,
    C: Conntrack,
    N: NftDataplane + Send + Sync,
{
    async fn sync(
        &mut self,
        desired: &Desired,
        reading: Reading,
    ) -> Result<SyncReport, DataplaneError> {
        // The helper first: source-range filters and masquerade marks are in place before a
        // new frontend takes traffic.
        let helper = helper::ruleset(desired, &self.cluster_cidrs);
        let helper_ops = self.helper.sync(helper, reading)?;
        let mut state = self.current(desired, reading).await?;
        let now = tokio::time::Instant::now().into_std();
        let mut diff = diff::diff(&state, desired, &self.graceful, now, &self.diff_config);
        let retiring = retiring_servers(&diff.ops);
        if reading == Reading::Remembered && !retiring.is_empty() {
            self.refresh_counters(&mut state, retiring).await?;
            diff = diff::diff(&state, desired, &self.graceful, now, &self.diff_config);
        }
        self.graceful = diff.graceful;
        let (applied, consistent) = self.apply(&diff.ops, &mut state).await?;
        self.remembered = consistent.then_some(state);
        Ok(SyncReport {
            ops: helper_ops + applied,
            draining: self.graceful.len(),
        })
    }
}

/// The virtual servers whose ops retire a real server that may still carry connections
/// (TCP, SCTP).
fn retiring_servers(ops: &[Op]) -> BTreeSet<VirtualServerKey> {
    let retiring = ops.iter().filter_map(|op| match *op {
        Op::DeleteRealServer { key, .. } if key.protocol != Protocol::Udp => Some(key),
        Op::UpdateRealServer { key, weight: 0, .. } => Some(key),
        _ => None,
    });
    retiring.collect()
}

/// The ops that name a virtual server, and so depend on its earlier ops.
fn virtual_server_of(op: &Op) -> Option<VirtualServerKey> {
    match *op {
        Op::AddVirtualServer { key, .. }
        | Op::UpdateVirtualServer { key, .. }
        | Op::DeleteVirtualServer { key }
        | Op::AddRealServer { key, .. }
        | Op::UpdateRealServer { key, .. }
        | Op::DeleteRealServer { key, .. } => Some(key),
        Op::DeleteConntrackToBackend { frontend, .. }
        | Op::DeleteConntrackToFrontend { frontend } => Some(frontend),
        Op::BindAddress { .. } | Op::UnbindAddress { .. } => None,
    }
}

fn kernel_virtual_server(observed: ObservedVirtualServer) -> KernelVirtualServer {
    let real_servers = observed.real_servers.into_iter().map(|(key, rs)| {
        let kernel = KernelRealServer {
            weight: rs.weight,
            active_connections: rs.active_connections,
            inactive_connections: rs.inactive_connections,
            masquerade: rs.masquerade,
        };
        (key, kernel)
    });
    KernelVirtualServer {
        params: observed.params,
        real_servers: real_servers.collect(),
    }
}
