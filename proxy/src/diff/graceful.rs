//! Real servers being drained: weight 0, deleted once idle or when their grace period ends.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::model::types::{RealServerKey, VirtualServerKey};

/// When each draining real server started draining. A plain value: [`diff`](super::diff)
/// takes the previous one and returns the next, so the sync loop owns the only copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GracefulState {
    since: BTreeMap<(VirtualServerKey, RealServerKey), Instant>,
}

impl GracefulState {
    /// When the real server started draining, if it is draining.
    pub fn started(&self, key: &VirtualServerKey, real_server: &RealServerKey) -> Option<Instant> {
        self.since.get(&(*key, *real_server)).copied()
    }

    pub(super) fn insert(
        &mut self,
        key: VirtualServerKey,
        real_server: RealServerKey,
        at: Instant,
    ) {
        self.since.insert((key, real_server), at);
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&VirtualServerKey, &RealServerKey, Instant)> {
        self.since.iter().map(|((key, rs), at)| (key, rs, *at))
    }
}
