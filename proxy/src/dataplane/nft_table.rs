//! Table `inet ferry`, kept in step with a desired ruleset: the whole nftables mode, and the
//! helper table of the IPVS mode.
//!
//! A partial sync diffs against the ruleset applied last. A sync that reads the kernel dumps
//! the table and compares it with what the desired ruleset lowers to: equal, nothing is sent
//! (a restart keeps the table, and its affinity entries, as they are). Different because the
//! cluster moved on while the kernel still holds what Ferry applied last (the usual case under
//! churn), it is a partial sync; different in any other way (someone else changed the table,
//! or Ferry does not know what it holds), the table is replaced in one transaction: at 10k
//! Services that takes seconds, too long to pay on every periodic sync. Established
//! connections keep their NAT either way: it lives in conntrack, not in the table.
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
        let Some(held) = self.nft.read_table()? else {
            return Ok(nft::full_replace(desired));
        };
        if held == TableSnapshot::of(desired) {
            return Ok(Batch::default());
        }
        match &self.applied {
            Some(applied) if held == TableSnapshot::of(applied) => Ok(nft::diff(applied, desired)),
            _ => {
                tracing::info!("table inet ferry is not what Ferry applied: replacing it");
                Ok(nft::full_replace(desired))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::fake::FakeDataplane;
    use crate::nft::ruleset::Chain;

    fn ruleset(chains: &[&str]) -> Ruleset {
        let mut ruleset = Ruleset::default();
        for name in chains {
            ruleset.chains.insert((*name).into(), Chain::default());
        }
        ruleset
    }

    fn synced(chains: &[&str]) -> NftTable<FakeDataplane> {
        let mut table = NftTable::new(FakeDataplane::new(), Arc::new(Metrics::new()));
        table
            .sync(ruleset(chains), Reading::Kernel)
            .expect("first sync");
        table
    }

    fn last_batch(table: &NftTable<FakeDataplane>) -> &Batch {
        table.nft.applied.last().expect("a batch")
    }

    #[test]
    fn a_full_sync_after_the_cluster_moved_on_is_a_partial_one() {
        let mut table = synced(&["svc-a", "svc-b"]);
        let ops = table.sync(ruleset(&["svc-a", "svc-b", "svc-c"]), Reading::Kernel);
        assert_eq!(ops.expect("sync"), 1);
        assert!(
            matches!(&last_batch(&table).ops[..], [Op::AddChain { name, .. }] if name == "svc-c")
        );
    }

    #[test]
    fn a_full_sync_replaces_a_table_someone_else_changed() {
        let mut table = synced(&["svc-a", "svc-b"]);
        let intruder = Batch {
            ops: vec![Op::AddChain {
                name: "intruder".into(),
                base: None,
            }],
        };
        table.nft.apply(&intruder).expect("foreign change");
        table
            .sync(ruleset(&["svc-a", "svc-b", "svc-c"]), Reading::Kernel)
            .expect("sync");
        assert!(
            last_batch(&table).ops.contains(&Op::RemoveTable),
            "a full replace"
        );
        assert_eq!(
            table.nft.table(),
            Some(&ruleset(&["svc-a", "svc-b", "svc-c"]))
        );
    }

    #[test]
    fn a_full_sync_of_an_unchanged_table_sends_nothing() {
        let mut table = synced(&["svc-a"]);
        assert_eq!(
            table
                .sync(ruleset(&["svc-a"]), Reading::Kernel)
                .expect("sync"),
            0
        );
        assert_eq!(table.nft.applied.len(), 1);
    }
}
