//! The nftables mode: table `inet ferry` from [`nft::build`], and UDP conntrack cleanup.
//!
//! Conntrack cleanup compares the UDP frontends of the previous and the new desired state.
//! At start there is no previous state to compare with, so the first sync cleans nothing:
//! flushing every UDP flow would break live clients, and the flows a restart missed time out.

use std::sync::Arc;

use ipnet::IpNet;

use super::nft_table::NftTable;
use super::udp::{self, UdpFrontends};
use super::{Dataplane, DataplaneError, Reading, SyncReport, op_kind};
use crate::conntrack::Conntrack;
use crate::metrics::Metrics;
use crate::model::Desired;
use crate::nft::{self, NftDataplane};

pub struct NftablesDataplane<N, C> {
    table: NftTable<N>,
    conntrack: Arc<C>,
    cluster_cidrs: Vec<IpNet>,
    /// The UDP frontends the table serves, once a sync succeeded.
    udp: Option<UdpFrontends>,
    metrics: Arc<Metrics>,
}

impl<N: NftDataplane + Send, C: Conntrack> NftablesDataplane<N, C> {
    pub fn new(
        nft: N,
        conntrack: Arc<C>,
        cluster_cidrs: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            table: NftTable::new(nft, metrics.clone()),
            conntrack,
            cluster_cidrs,
            udp: None,
            metrics,
        }
    }
}

impl<N: NftDataplane + Send, C: Conntrack> Dataplane for NftablesDataplane<N, C> {
    async fn sync(
        &mut self,
        desired: &Desired,
        reading: Reading,
    ) -> Result<SyncReport, DataplaneError> {
        let ruleset = nft::build(desired, &self.cluster_cidrs);
        let mut ops = self.table.sync(ruleset, reading)?;
        let udp = udp::udp_frontends(desired);
        let cleanups = match &self.udp {
            Some(before) => udp::cleanups(before, &udp),
            None => Vec::new(),
        };
        self.udp = Some(udp);
        for op in &cleanups {
            if udp::clean(&*self.conntrack, op, &self.metrics).await {
                self.metrics.count_ops(op_kind(op), 1);
                ops += 1;
            }
        }
        Ok(SyncReport { ops, draining: 0 })
    }
}
