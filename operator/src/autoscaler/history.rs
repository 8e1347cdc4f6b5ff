//! What the algorithm remembers between runs: its recent unstabilized recommendations (for the
//! stabilization windows) and its recent rescales (for the rate policies).
//!
//! Like the HorizontalPodAutoscaler, the controller keeps this in memory only. A new operator
//! process (restart or leader change) would therefore start with an empty memory and could
//! scale down at once; to avoid that, a fresh history is *seeded* with the target's current
//! size as if it had just been recommended, so the first scale-down waits a full window. The
//! rate policies still start from zero: the first rescale after a restart may use a whole
//! period's allowance even if the previous leader had just used it.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::behavior::{Behavior, Rules};

/// A replica count (or change) at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timed {
    at: Timestamp,
    replicas: i32,
}

/// Recommendations and rescales of one Autoscaler, pruned to what its behavior can still use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    recommendations: Vec<Timed>,
    replicas_added: Vec<Timed>,
    replicas_removed: Vec<Timed>,
}

impl History {
    /// The memory of a newly started controller: the current size counts as recommended now.
    pub fn seeded(now: Timestamp, current_replicas: i32) -> Self {
        Self {
            recommendations: vec![Timed {
                at: now,
                replicas: current_replicas,
            }],
            ..Self::default()
        }
    }

    /// Remembers a successful rescale from `from` to `to` replicas.
    pub fn record_rescale(&mut self, behavior: &Behavior, now: Timestamp, from: i32, to: i32) {
        let (events, rules) = if to > from {
            (&mut self.replicas_added, &behavior.scale_up)
        } else {
            (&mut self.replicas_removed, &behavior.scale_down)
        };
        let longest = rules.longest_policy_period();
        events.retain(|e| is_within(e.at, longest, now));
        events.push(Timed {
            at: now,
            replicas: to.abs_diff(from).try_into().unwrap_or(i32::MAX),
        });
    }

    /// Remembers an unstabilized recommendation, forgetting those older than both windows.
    pub(super) fn record_recommendation(
        &mut self,
        behavior: &Behavior,
        now: Timestamp,
        replicas: i32,
    ) {
        let longest = behavior
            .scale_up
            .stabilization_window
            .max(behavior.scale_down.stabilization_window);
        self.recommendations
            .retain(|r| is_within(r.at, longest, now));
        self.recommendations.push(Timed { at: now, replicas });
    }

    /// The (lowest, highest) recommendation within each direction's window, starting from
    /// `desired`: the lowest bounds a scale-up, the highest bounds a scale-down.
    pub(super) fn stabilization_bounds(
        &self,
        behavior: &Behavior,
        now: Timestamp,
        desired: i32,
    ) -> (i32, i32) {
        self.recommendations
            .iter()
            .fold((desired, desired), |(lowest, highest), r| {
                let lowest = if is_within(r.at, behavior.scale_up.stabilization_window, now) {
                    lowest.min(r.replicas)
                } else {
                    lowest
                };
                let highest = if is_within(r.at, behavior.scale_down.stabilization_window, now) {
                    highest.max(r.replicas)
                } else {
                    highest
                };
                (lowest, highest)
            })
    }

    /// Replicas (added, removed) by rescales within `period` before `now`.
    pub(super) fn changes_within(&self, period: SignedDuration, now: Timestamp) -> (i64, i64) {
        let sum = |events: &[Timed]| {
            events
                .iter()
                .filter(|e| is_within(e.at, period, now))
                .map(|e| i64::from(e.replicas))
                .sum()
        };
        (sum(&self.replicas_added), sum(&self.replicas_removed))
    }
}

impl Rules {
    fn longest_policy_period(&self) -> SignedDuration {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or(SignedDuration::ZERO)
    }
}

/// Whether `at` lies strictly inside the `window` that ends at `now`.
fn is_within(at: Timestamp, window: SignedDuration, now: Timestamp) -> bool {
    now.checked_sub(window).is_ok_and(|cutoff| at > cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_the_windows_and_periods_can_use() {
        let behavior = Behavior::default();
        let start = Timestamp::from_second(1_750_000_000).expect("valid instant");
        let mut history = History::default();
        for step in 0..1000 {
            let now = start + SignedDuration::from_secs(step * 15);
            history.record_recommendation(&behavior, now, 3);
            history.record_rescale(&behavior, now, 3, 4);
            history.record_rescale(&behavior, now, 4, 3);
        }
        assert_eq!(
            history.recommendations.len(),
            20,
            "300 s of 15 s steps, the oldest excluded"
        );
        assert_eq!(
            history.replicas_added.len(),
            1,
            "the 15 s period holds one step"
        );
        assert_eq!(history.replicas_removed.len(), 1);
    }
}
