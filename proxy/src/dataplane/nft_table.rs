//! Table `inet ferry`, kept in step with a desired ruleset: the whole nftables mode, and the
//! helper table of the IPVS mode.
//!
//! A partial sync diffs against the ruleset applied last. A sync that reads the kernel dumps
//! the table and compares it with what the desired ruleset lowers to: equal, nothing is sent
//! (a restart keeps the table, and its affinity entries, as they are); different, the table is
//! replaced in one transaction. Established connections keep their NAT either way: it lives
//! in conntrack, not in the table.
//!
//! The nf_tables edge is synchronous; a batch is one local netlink transaction, so it runs
//! on the sync task rather than on a blocking thread.

use std::sync::Arc;

use super::Reading;
use crate::metrics::Metrics;
use crate::nft::diff::Op;
use crate::nft::{self, Batch, NftDataplane, NftError, Ruleset, TableSnapshot};

pub(super) struct NftTable<N> {
    nft: N,
    /// What the kernel holds, as far as Ferry knows; `None` after a failure or at start.
    applied: Option<Ruleset>,
    metrics: Arc<Metrics>,
}

impl<N: NftDataplane> NftTable<N> {
    pub(super) fn new(nft: N, metrics: Arc<Metrics>) -> Self {
        Self {
            nft,
            applied: None,
            metrics,
        }
    }

    /// Brings the table to `desired`; returns how many operations that took.
    pub(super) fn sync(&mut self, desired: Ruleset, reading: Reading) -> Result<usize, NftError> {
        let batch = match (&self.applied, reading) {
            (Some(applied), Reading::Remembered) => nft::diff(applied, &desired),
            _ => self.repair(&desired)?,
        };
        if batch.is_empty() {
            self.applied = Some(desired);
            return Ok(0);
        }
        if let Err(error) = self.nft.apply(&batch) {
            self.applied = None;
            return Err(error);
        }
        for op in &batch.ops {
            self.metrics.count_ops(op_kind(op), 1);
        }
        self.applied = Some(desired);
        Ok(batch.ops.len())
    }

    fn repair(&mut self, desired: &Ruleset) -> Result<Batch, NftError> {
        let held = self.nft.read_table()?;
        if held.as_ref() == Some(&TableSnapshot::of(desired)) {
            return Ok(Batch::default());
        }
        if held.is_some() {
            tracing::info!("table inet ferry differs from the desired ruleset: replacing it");
        }
        Ok(nft::full_replace(desired))
    }
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::RemoveTable => "nft_remove_table",
        Op::AddTable => "nft_add_table",
        Op::AddSet { .. } => "nft_add_set",
        Op::DeleteSet(_) => "nft_delete_set",
        Op::FlushSet(_) => "nft_flush_set",
        Op::AddElements { .. } => "nft_add_elements",
        Op::DeleteElements { .. } => "nft_delete_elements",
        Op::AddChain { .. } => "nft_add_chain",
        Op::DeleteChain(_) => "nft_delete_chain",
        Op::FlushChain(_) => "nft_flush_chain",
        Op::AddRule { .. } => "nft_add_rule",
    }
}
