//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! a replica takes the Lease when it is free or its holder stopped renewing for a lease
//! duration, renews it every retry period, and gives up (the process exits) when it could not
//! renew within the renew deadline, before any other replica may take over. Every write goes
//! through the Lease's resourceVersion, so two replicas never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tracing::{debug, info, warn};

/// Lease timing and identity.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease.
    pub identity: String,
    /// How long a Lease lasts without renewal before another replica may take it.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// What to do with the Lease as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease yet.
    Create,
    /// The Lease is free or expired: take it over.
    TakeOver,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it.
    Wait,
}

pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.map(|l| l.spec.clone().unwrap_or_default()) else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
            let renewed = spec
                .renew_time
                .or(spec.acquire_time)
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            let expired = renewed.saturating_add(duration).is_ok_and(|end| end <= now);
            if expired {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

/// The Lease after `decision`, as this replica writes it.
pub fn next_lease(
    current: Option<&Lease>,
    decision: Decision,
    settings: &LeaseSettings,
    now: Timestamp,
) -> Option<Lease> {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    match decision {
        Decision::Wait => return None,
        Decision::Renew => {}
        Decision::Create | Decision::TakeOver => {
            let transitions = spec.lease_transitions.unwrap_or(0);
            spec.holder_identity = Some(settings.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(if decision == Decision::TakeOver {
                transitions + 1
            } else {
                transitions
            });
        }
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds =
        Some(i32::try_from(settings.lease_duration.as_secs()).unwrap_or(i32::MAX));
    Some(lease)
}

/// Holds (or waits for) the Lease on behalf of this replica.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// Returns once this replica leads. `on_contact` runs after the first answer from the API
    /// server (the replica is working, whether it leads or stands by).
    pub async fn acquire(&self, on_contact: impl Fn()) -> Result<(), kube::Error> {
        loop {
            let attempt = self.try_lead().await;
            if attempt.is_ok() {
                on_contact();
            }
            match attempt {
                Ok(true) => {
                    info!(identity = %self.settings.identity, lease = %self.settings.name, "became leader");
                    return Ok(());
                }
                Ok(false) => debug!("lease held by another replica"),
                Err(error) => warn!(%error, "cannot reach the lease"),
            }
            tokio::time::sleep(self.settings.retry_period).await;
        }
    }

    /// Renews the Lease until a renewal fails for longer than the renew deadline; returns
    /// then. The caller must stop acting as leader at once.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            let attempt = tokio::time::timeout(self.settings.retry_period, self.try_lead()).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    warn!("another replica took the lease");
                    return;
                }
                Ok(Err(error)) => warn!(%error, "lease renewal failed"),
                Err(_) => warn!("lease renewal timed out"),
            }
            if last_renewal.elapsed() > self.settings.renew_deadline {
                warn!("could not renew the lease within the renew deadline");
                return;
            }
        }
    }

    /// Frees the Lease so a standby replica takes over without waiting for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await?;
        info!("released the lease");
        Ok(())
    }

    /// One round: read the Lease, and create, take over or renew it if that is ours to do.
    /// A write another replica won (conflict, already exists) means we do not lead.
    async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.settings.name).await?;
        let decision = decide(current.as_ref(), &self.settings.identity, now);
        let Some(lease) = next_lease(current.as_ref(), decision, &self.settings, now) else {
            return Ok(false);
        };
        let written = match decision {
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => {
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn settings(identity: &str) -> LeaseSettings {
        LeaseSettings {
            namespace: "ferry-system".into(),
            name: "ferry-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn held_by(identity: &str, renewed: i64) -> Lease {
        next_lease(None, Decision::Create, &settings(identity), at(renewed)).unwrap()
    }

    #[test]
    fn a_missing_lease_is_created_and_ours_is_renewed() {
        assert_eq!(decide(None, "a", at(0)), Decision::Create);
        assert_eq!(
            decide(Some(&held_by("a", 0)), "a", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn another_holder_is_waited_for_until_the_lease_expires() {
        let lease = held_by("a", 100);
        assert_eq!(decide(Some(&lease), "b", at(114)), Decision::Wait);
        assert_eq!(decide(Some(&lease), "b", at(115)), Decision::TakeOver);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut lease = held_by("a", 100);
        lease.spec.as_mut().unwrap().holder_identity = None;
        assert_eq!(decide(Some(&lease), "b", at(101)), Decision::TakeOver);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let lease = held_by("a", 100);
        let taken = next_lease(Some(&lease), Decision::TakeOver, &settings("b"), at(200)).unwrap();
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(
            (spec.lease_transitions, spec.renew_time),
            (Some(1), Some(MicroTime(at(200))))
        );

        let renewed = next_lease(Some(&lease), Decision::Renew, &settings("a"), at(105)).unwrap();
        let spec = renewed.spec.unwrap();
        assert_eq!(
            (spec.lease_transitions, spec.acquire_time),
            (Some(0), Some(MicroTime(at(100))))
        );
        assert_eq!(
            next_lease(Some(&lease), Decision::Wait, &settings("b"), at(101)),
            None
        );
    }
}
