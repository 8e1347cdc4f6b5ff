//! Create/delete expectations, as ReplicaSet keeps them: after the controller creates or
//! deletes pods for an App, the App's pods are not acted on again until the pod watch has shown
//! those changes. Without this a reconcile running on a cache that lags its own writes would
//! create (or delete) the same pods twice. Expectations lapse after a timeout so a lost watch
//! event cannot wedge an App forever.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long an unmet expectation holds an App back, as in Kubernetes.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    creates: usize,
    deletes: HashSet<String>,
    since: Instant,
}

impl Pending {
    fn met(&self) -> bool {
        self.creates == 0 && self.deletes.is_empty()
    }
}

/// Pending pod creations and deletions per App, keyed by the App's uid (a recreated App with
/// the same name starts clean).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry<'a>(
        map: &'a mut HashMap<String, Pending>,
        app: &str,
        now: Instant,
    ) -> &'a mut Pending {
        // Entries of Apps that were deleted with expectations pending go once they lapse.
        map.retain(|_, p| now.duration_since(p.since) < EXPECTATIONS_TIMEOUT);
        let pending = map.entry(app.to_owned()).or_insert_with(|| Pending {
            creates: 0,
            deletes: HashSet::new(),
            since: now,
        });
        pending.since = now;
        pending
    }

    /// Call before creating `count` pods.
    pub fn expect_creations(&self, app: &str, count: usize, now: Instant) {
        Self::entry(&mut self.lock(), app, now).creates += count;
    }

    /// Call before deleting pods.
    pub fn expect_deletions(
        &self,
        app: &str,
        uids: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        Self::entry(&mut self.lock(), app, now).deletes.extend(uids);
    }

    /// A new pod of the App appeared in the watch, or a creation failed and never will.
    pub fn creation_observed(&self, app: &str) {
        if let Some(pending) = self.lock().get_mut(app) {
            pending.creates = pending.creates.saturating_sub(1);
        }
    }

    /// A pod of the App was seen terminating or gone, or its deletion failed.
    pub fn deletion_observed(&self, app: &str, uid: &str) {
        if let Some(pending) = self.lock().get_mut(app) {
            pending.deletes.remove(uid);
        }
    }

    /// Whether the App's pods may be acted on. Deletions of pods `still_running` no longer
    /// reports were missed by the watch (say, across a relist) and count as observed.
    pub fn satisfied(&self, app: &str, now: Instant, still_running: impl Fn(&str) -> bool) -> bool {
        let mut map = self.lock();
        let Some(pending) = map.get_mut(app) else {
            return true;
        };
        pending.deletes.retain(|uid| still_running(uid));
        let done = pending.met() || now.duration_since(pending.since) >= EXPECTATIONS_TIMEOUT;
        if done {
            map.remove(app);
        }
        done
    }

    /// When the App's expectations lapse, if it has any.
    pub fn deadline(&self, app: &str) -> Option<Instant> {
        self.lock().get(app).map(|p| p.since + EXPECTATIONS_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "uid-web";

    #[test]
    fn an_app_without_expectations_is_satisfied() {
        assert!(Expectations::default().satisfied(APP, Instant::now(), |_| true));
    }

    #[test]
    fn creations_must_all_be_observed() {
        let expectations = Expectations::default();
        let now = Instant::now();
        expectations.expect_creations(APP, 2, now);
        expectations.creation_observed(APP);
        assert!(!expectations.satisfied(APP, now, |_| true));
        expectations.creation_observed(APP);
        assert!(expectations.satisfied(APP, now, |_| true));
        assert_eq!(
            expectations.deadline(APP),
            None,
            "met expectations are forgotten"
        );
    }

    #[test]
    fn deletions_are_met_by_the_watch_or_by_the_pod_being_gone() {
        let expectations = Expectations::default();
        let now = Instant::now();
        expectations.expect_deletions(APP, ["a".to_owned(), "b".to_owned()], now);
        expectations.deletion_observed(APP, "a");
        assert!(!expectations.satisfied(APP, now, |_| true));
        assert!(expectations.satisfied(APP, now, |uid| uid != "b"));
    }

    #[test]
    fn unmet_expectations_lapse_after_the_timeout() {
        let expectations = Expectations::default();
        let now = Instant::now();
        expectations.expect_creations(APP, 1, now);
        assert_eq!(expectations.deadline(APP), Some(now + EXPECTATIONS_TIMEOUT));
        assert!(!expectations.satisfied(APP, now + Duration::from_secs(299), |_| true));
        assert!(expectations.satisfied(APP, now + EXPECTATIONS_TIMEOUT, |_| true));
    }

    #[test]
    fn other_apps_are_independent() {
        let expectations = Expectations::default();
        let now = Instant::now();
        expectations.expect_creations("uid-api", 1, now);
        assert!(expectations.satisfied(APP, now, |_| true));
        expectations.creation_observed(APP);
        assert!(!expectations.satisfied("uid-api", now, |_| true));
    }
}
