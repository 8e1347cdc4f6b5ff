//! The App's pods, split by lifecycle and by revision, with the clock and minReadySeconds
//! that decide availability.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::pods::{Lifecycle, PodView};

/// The pods an App owns (after adoption and release), classified.
#[derive(Clone, Debug)]
pub struct Fleet<'a> {
    /// Active pods of the update revision.
    pub new: Vec<&'a PodView>,
    /// Active pods of any other revision (or none, for adopted pods).
    pub old: Vec<&'a PodView>,
    /// Terminating pods of other revisions: Recreate waits for them to be gone.
    pub old_terminating: usize,
    /// Pods that ran to completion or failed; they are replaced and cleaned up.
    pub finished: Vec<&'a PodView>,
    min_ready: SignedDuration,
    now: Timestamp,
}

impl<'a> Fleet<'a> {
    pub fn new(
        pods: impl IntoIterator<Item = &'a PodView>,
        update_hash: &str,
        min_ready: SignedDuration,
        now: Timestamp,
    ) -> Self {
        let mut fleet = Fleet {
            new: vec![],
            old: vec![],
            old_terminating: 0,
            finished: vec![],
            min_ready,
            now,
        };
        for pod in pods {
            let updated = pod.is_revision(update_hash);
            match (pod.lifecycle, updated) {
                (Lifecycle::Active, true) => fleet.new.push(pod),
                (Lifecycle::Active, false) => fleet.old.push(pod),
                (Lifecycle::Terminating, false) => fleet.old_terminating += 1,
                (Lifecycle::Terminating, true) => {}
                (Lifecycle::Finished, _) => fleet.finished.push(pod),
            }
        }
        fleet
    }

    pub fn is_available(&self, pod: &PodView) -> bool {
        pod.is_available(self.min_ready, self.now)
    }

    pub fn active(&self) -> impl Iterator<Item = &'a PodView> + '_ {
        self.new.iter().chain(self.old.iter()).copied()
    }

    pub fn active_count(&self) -> usize {
        self.new.len() + self.old.len()
    }

    pub fn available_count(&self) -> usize {
        self.active().filter(|p| self.is_available(p)).count()
    }

    /// When the next ready pod becomes available, if one is waiting out minReadySeconds.
    pub fn next_available_at(&self) -> Option<Timestamp> {
        self.active()
            .filter_map(|p| p.available_at(self.min_ready))
            .filter(|at| *at > self.now)
            .min()
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }
}
