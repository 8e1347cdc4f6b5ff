//! What the packet path wrote to dynamic sets, and what of it survives a batch.

use std::collections::{BTreeMap, BTreeSet};

use super::Path;
use crate::nft::diff::{Batch, Op};
use crate::nft::ruleset::Element;

/// The elements the kernel added to dynamic sets (the clients affinity sets remember), by set.
/// Timeouts are not modelled: an element stays until its set is deleted or flushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    sets: BTreeMap<String, BTreeSet<Element>>,
}

impl Memory {
    pub fn contains(&self, set: &str, element: &Element) -> bool {
        self.sets
            .get(set)
            .is_some_and(|elements| elements.contains(element))
    }

    /// Keeps what a connection's path added.
    pub(super) fn record(&mut self, path: &Path) {
        for (set, element) in &path.remembered {
            self.sets.entry(set.clone()).or_default().insert(*element);
        }
    }

    /// What the kernel still holds once `batch` is applied: a set that is deleted, flushed or
    /// created (anew) holds nothing, and removing the table forgets everything.
    pub fn after(mut self, batch: &Batch) -> Self {
        for op in &batch.ops {
            match op {
                Op::RemoveTable => self.sets.clear(),
                Op::AddSet { name, .. } | Op::DeleteSet(name) | Op::FlushSet(name) => {
                    self.sets.remove(name);
                }
                Op::AddTable
                | Op::AddElements { .. }
                | Op::DeleteElements { .. }
                | Op::AddChain { .. }
                | Op::DeleteChain(_)
                | Op::FlushChain(_)
                | Op::AddRule { .. } => {}
            }
        }
        self
    }
}
