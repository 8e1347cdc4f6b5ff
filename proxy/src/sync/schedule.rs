//! When to sync, as a pure value: the loop asks it what is due and when to wake up.
//!
//! - a full sync at start, then every `sync_period` after the last full one;
//! - after a failure, a full sync after a backoff (1 s, doubling up to `sync_period`), until
//!   one succeeds;
//! - partial syncs for changes, at most one per `min_sync_period` (measured between starts,
//!   so bursts of changes coalesce into one sync);
//! - while real servers drain, a partial sync every [`DRAIN_CHECK_PERIOD`] to look at their
//!   connections again.

use std::time::Duration;

use tokio::time::Instant;

/// How often draining real servers are looked at again.
pub const DRAIN_CHECK_PERIOD: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The kernel is read back and the whole desired state rebuilt.
    Full,
    /// Only changed Services are rebuilt, against the state the last sync left.
    Partial,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Partial => "partial",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub min_sync_period: Duration,
    pub sync_period: Duration,
}

/// How a sync ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded { draining: bool },
    Failed,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    periods: Periods,
    last_start: Option<Instant>,
    next_full: Instant,
    retry_after: Duration,
    changes_pending: bool,
    drain_check: Option<Instant>,
}

impl Schedule {
    /// A schedule whose first sync, a full one, is due at `now`.
    pub fn new(now: Instant, periods: Periods) -> Self {
        Self {
            periods,
            last_start: None,
            next_full: now,
            retry_after: FIRST_RETRY,
            changes_pending: false,
            drain_check: None,
        }
    }

    pub fn note_changes(&mut self) {
        self.changes_pending = true;
    }

    /// The sync due at `now`, if any; a due full sync covers pending changes too.
    pub fn due(&self, now: Instant) -> Option<SyncKind> {
        if now >= self.next_full {
            return Some(SyncKind::Full);
        }
        self.partial_at()
            .filter(|&at| now >= at)
            .map(|_| SyncKind::Partial)
    }

    /// When to look again if nothing changes meanwhile.
    pub fn next_wakeup(&self) -> Instant {
        self.partial_at()
            .map_or(self.next_full, |at| at.min(self.next_full))
    }

    /// Records the end of a sync that started at `started`.
    pub fn finished(&mut self, kind: SyncKind, started: Instant, now: Instant, outcome: Outcome) {
        self.last_start = Some(started);
        self.changes_pending = false;
        match outcome {
            Outcome::Succeeded { draining } => {
                self.retry_after = FIRST_RETRY;
                if kind == SyncKind::Full {
                    self.next_full = now + self.periods.sync_period;
                }
                self.drain_check = draining.then(|| now + DRAIN_CHECK_PERIOD);
            }
            Outcome::Failed => {
                self.next_full = now + self.retry_after;
                self.retry_after = (self.retry_after * 2).min(self.periods.sync_period);
                self.drain_check = None;
            }
        }
    }

    /// When a partial sync is due, if one is wanted.
    fn partial_at(&self) -> Option<Instant> {
        let wanted_at = match (self.changes_pending, self.drain_check) {
            (true, _) => self.last_start?,
            (false, Some(check)) => check,
            (false, None) => return None,
        };
        let earliest = self.last_start? + self.periods.min_sync_period;
        Some(wanted_at.max(earliest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn schedule(start: Instant) -> Schedule {
        Schedule::new(
            start,
            Periods {
                min_sync_period: SECOND,
                sync_period: 30 * SECOND,
            },
        )
    }

    fn ok() -> Outcome {
        Outcome::Succeeded { draining: false }
    }

    #[test]
    fn starts_with_a_full_sync_then_waits_for_changes_or_the_period() {
        let t0 = Instant::now();
        let mut schedule = schedule(t0);
        assert_eq!(schedule.due(t0), Some(SyncKind::Full));
        schedule.finished(SyncKind::Full, t0, t0, ok());
        assert_eq!(schedule.due(t0 + 5 * SECOND), None);
        assert_eq!(schedule.next_wakeup(), t0 + 30 * SECOND);
        assert_eq!(schedule.due(t0 + 30 * SECOND), Some(SyncKind::Full));
    }

    #[test]
    fn changes_coalesce_within_the_minimum_period() {
        let t0 = Instant::now();
        let mut schedule = schedule(t0);
        schedule.finished(SyncKind::Full, t0, t0, ok());
        schedule.note_changes();
        let quarter = SECOND / 4;
        assert_eq!(
            schedule.due(t0 + quarter),
            None,
            "too soon after the last sync"
        );
        assert_eq!(schedule.next_wakeup(), t0 + SECOND);
        assert_eq!(schedule.due(t0 + SECOND), Some(SyncKind::Partial));
        schedule.finished(SyncKind::Partial, t0 + SECOND, t0 + SECOND, ok());
        schedule.note_changes();
        let later = t0 + 10 * SECOND;
        assert_eq!(
            schedule.due(later),
            Some(SyncKind::Partial),
            "a quiet period has passed"
        );
    }

    #[test]
    fn a_failure_retries_in_full_with_backoff() {
        let t0 = Instant::now();
        let mut schedule = schedule(t0);
        schedule.finished(SyncKind::Full, t0, t0, Outcome::Failed);
        assert_eq!(schedule.next_wakeup(), t0 + SECOND);
        let t1 = t0 + SECOND;
        assert_eq!(schedule.due(t1), Some(SyncKind::Full));
        schedule.finished(SyncKind::Full, t1, t1, Outcome::Failed);
        assert_eq!(schedule.next_wakeup(), t1 + 2 * SECOND);
        let t2 = t1 + 2 * SECOND;
        schedule.finished(SyncKind::Full, t2, t2, ok());
        assert_eq!(schedule.next_wakeup(), t2 + 30 * SECOND);
    }

    #[test]
    fn draining_real_servers_are_checked_again() {
        let t0 = Instant::now();
        let mut schedule = schedule(t0);
        schedule.finished(
            SyncKind::Full,
            t0,
            t0,
            Outcome::Succeeded { draining: true },
        );
        assert_eq!(schedule.next_wakeup(), t0 + DRAIN_CHECK_PERIOD);
        assert_eq!(
            schedule.due(t0 + DRAIN_CHECK_PERIOD),
            Some(SyncKind::Partial)
        );
    }

    #[test]
    fn the_backoff_is_capped_by_the_sync_period() {
        let t0 = Instant::now();
        let mut schedule = schedule(t0);
        let mut now = t0;
        for _ in 0..10 {
            schedule.finished(SyncKind::Full, now, now, Outcome::Failed);
            now = schedule.next_wakeup();
        }
        schedule.finished(SyncKind::Full, now, now, Outcome::Failed);
        assert_eq!(schedule.next_wakeup(), now + 30 * SECOND);
    }
}
