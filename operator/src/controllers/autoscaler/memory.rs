//! What the controller remembers per Autoscaler between reconciles, in memory only (see
//! `autoscaler::History` for what that means after a restart or leader change).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::autoscaler::History;

/// An Autoscaler not reconciled for this long is taken as deleted and forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);

struct Entry {
    history: History,
    last_seen: Instant,
    last_status_write: Option<Instant>,
}

/// Per-Autoscaler memory, keyed by uid so a re-created Autoscaler starts afresh.
#[derive(Default)]
pub struct Memory {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Memory {
    /// The history of `uid`; a fresh one is seeded with the target's current replicas.
    pub fn history(&self, uid: &str, now: Timestamp, current_replicas: i32) -> History {
        self.lock().get(uid).map_or_else(
            || History::seeded(now, current_replicas),
            |entry| entry.history.clone(),
        )
    }

    /// Keeps `history` for `uid`, and forgets Autoscalers that have not been seen for long.
    pub fn remember(&self, uid: &str, history: History) {
        let mut entries = self.lock();
        entries.retain(|_, entry| entry.last_seen.elapsed() < FORGET_AFTER);
        let entry = entries.entry(uid.to_owned()).or_insert_with(|| Entry {
            history: History::default(),
            last_seen: Instant::now(),
            last_status_write: None,
        });
        entry.history = history;
        entry.last_seen = Instant::now();
    }

    /// Whether this controller wrote `uid`'s status within `period`.
    pub fn wrote_status_within(&self, uid: &str, period: Duration) -> bool {
        self.lock()
            .get(uid)
            .and_then(|entry| entry.last_status_write)
            .is_some_and(|at| at.elapsed() < period)
    }

    pub fn status_written(&self, uid: &str) {
        if let Some(entry) = self.lock().get_mut(uid) {
            entry.last_status_write = Some(Instant::now());
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
