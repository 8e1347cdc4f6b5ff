//! Warnings about a Service's allocation, published once per change: every change in the
//! cluster re-runs every Service's reconcile, and a pending Service must not collect a new
//! Event each time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::lbpool::{Assignments, Outcome, ServiceKey};

pub const ALLOCATION_FAILED: &str = "AllocationFailed";
pub const ADDRESS_CONFLICT: &str = "AddressConflict";

/// A Warning Event for a Service; `related` is the other Service involved, if any.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Notice {
    pub reason: &'static str,
    pub note: String,
    pub related: Option<ServiceKey>,
}

/// What should be said about `key` now: why it lacks addresses, and which conflicts it won.
pub fn notices(key: &ServiceKey, outcome: &Outcome, assignments: &Assignments) -> BTreeSet<Notice> {
    let failure = outcome
        .problem()
        .filter(|problem| !problem.is_transient())
        .map(|problem| Notice {
            reason: ALLOCATION_FAILED,
            note: problem.to_string(),
            related: None,
        });
    let conflicts = assignments.conflicts_kept_by(key).map(|conflict| Notice {
        reason: ADDRESS_CONFLICT,
        note: format!(
            "Service {} also claims {}; this Service keeps it",
            conflict.claimant, conflict.address
        ),
        related: Some(conflict.claimant.clone()),
    });
    failure.into_iter().chain(conflicts).collect()
}

/// The notices last published per Service.
#[derive(Default)]
pub struct Published {
    by_service: Mutex<HashMap<ServiceKey, BTreeSet<Notice>>>,
}

impl Published {
    /// Records `current` as what holds for `key` and returns the notices not published yet.
    pub fn fresh(&self, key: &ServiceKey, current: BTreeSet<Notice>) -> Vec<Notice> {
        let mut by_service = self
            .by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = by_service.remove(key).unwrap_or_default();
        let fresh = current.difference(&previous).cloned().collect();
        if !current.is_empty() {
            by_service.insert(key.clone(), current);
        }
        fresh
    }

    /// Forgets Services the allocation no longer mentions (deleted, or no longer Ferry's),
    /// so they are announced afresh should they come back.
    pub fn forget_others(&self, assignments: &Assignments) {
        let mut by_service = self
            .by_service
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_service.retain(|key, _| assignments.services.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbpool::{Conflict, Family, Problem};

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("shop", name)
    }

    #[test]
    fn failures_and_won_conflicts_are_said_once() {
        let address = "192.0.2.7".parse().expect("an address");
        let mut assignments = Assignments::default();
        assignments.conflicts.insert(Conflict {
            address,
            holder: key("holder"),
            claimant: key("newcomer"),
        });
        let taken = Outcome::Served {
            addresses: vec![],
            problem: Some(Problem::Taken {
                address,
                holder: key("holder"),
            }),
        };
        let held = Outcome::Served {
            addresses: vec![],
            problem: None,
        };
        let loser = notices(&key("newcomer"), &taken, &assignments);
        let winner = notices(&key("holder"), &held, &assignments);
        assert_eq!(
            loser.iter().map(|n| n.reason).collect::<Vec<_>>(),
            [ALLOCATION_FAILED]
        );
        assert_eq!(
            winner.first().map(|n| n.note.as_str()),
            Some("Service shop/newcomer also claims 192.0.2.7; this Service keeps it")
        );

        let published = Published::default();
        assert_eq!(published.fresh(&key("newcomer"), loser.clone()).len(), 1);
        assert!(published.fresh(&key("newcomer"), loser.clone()).is_empty());
        assert!(
            published
                .fresh(&key("newcomer"), BTreeSet::new())
                .is_empty()
        );
        assert_eq!(
            published.fresh(&key("newcomer"), loser).len(),
            1,
            "a problem that comes back is said again"
        );
    }

    #[test]
    fn releases_in_progress_are_not_worth_a_warning() {
        let releasing = Outcome::Served {
            addresses: vec![],
            problem: Some(Problem::Releasing {
                address: "192.0.2.7".parse().expect("an address"),
                holder: key("former"),
            }),
        };
        assert!(notices(&key("next"), &releasing, &Assignments::default()).is_empty());
        let exhausted = Outcome::Served {
            addresses: vec![],
            problem: Some(Problem::NoPool { family: Family::V6 }),
        };
        assert_eq!(
            notices(&key("web"), &exhausted, &Assignments::default()).len(),
            1
        );
    }
}
