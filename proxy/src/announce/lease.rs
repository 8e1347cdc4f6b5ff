//! The proxy's heartbeat: a `coordination.k8s.io` Lease `ferry-proxy-<node>` renewed every
//! third of its duration, and deleted on a graceful stop so the peers fail over at once
//! rather than after the duration.
//!
//! One write per node per renewal, and every proxy watches every Lease: with the default 6 s
//! duration that is a third of a write per node per second. Clusters of hundreds of nodes
//! should lengthen the duration (`l2.leaseDuration`), trading crash failover time for load.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use tracing::{info, warn};

/// Labels every heartbeat Lease, so peers watch only those.
pub const LEASE_LABEL: &str = "ferry.dev/l2-announcer";
const FIELD_MANAGER: &str = "ferry-proxy";
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn lease_name(node: &str) -> String {
    format!("ferry-proxy-{node}")
}

/// What a peer's Lease says: whose it is, which renewal, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub node: String,
    pub renewed: String,
    pub valid_for: Duration,
}

/// The heartbeat in a Lease; `None` for a Lease without a holder or a renewal time.
pub fn beat_of(lease: &Lease) -> Option<Beat> {
    let spec = lease.spec.as_ref()?;
    let seconds = spec.lease_duration_seconds.filter(|s| *s > 0)?;
    Some(Beat {
        node: spec.holder_identity.clone().filter(|n| !n.is_empty())?,
        renewed: spec.renew_time.as_ref()?.0.to_string(),
        valid_for: Duration::from_secs(seconds.unsigned_abs().into()),
    })
}

pub struct Heartbeat {
    api: Api<Lease>,
    node: String,
    duration: Duration,
}

impl Heartbeat {
    pub fn new(client: Client, namespace: &str, node: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            node: node.to_owned(),
            duration,
        }
    }

    /// Once `ready` resolves, renews until `stopping` resolves, then deletes the Lease.
    pub async fn run(self, ready: impl Future<Output = ()>, stopping: impl Future<Output = ()>) {
        tokio::pin!(stopping);
        tokio::select! {
            () = ready => {}
            () = &mut stopping => return,
        }
        let mut ticks = tokio::time::interval(self.duration / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.renew().await,
                () = &mut stopping => break,
            }
        }
        self.release().await;
    }

    async fn renew(&self) {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(lease_name(&self.node)),
                labels: Some([(LEASE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.node.clone()),
                lease_duration_seconds: i32::try_from(self.duration.as_secs()).ok(),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = lease_name(&self.node);
        if let Err(error) = self.api.patch(&name, &params, &Patch::Apply(&lease)).await {
            warn!(lease = name, %error, "cannot renew the announcer Lease");
        }
    }

    /// Deletes the Lease, giving up after [`RELEASE_TIMEOUT`]: an unreachable API server must
    /// not hold up the shutdown (the Lease then expires instead).
    async fn release(&self) {
        let name = lease_name(&self.node);
        let params = DeleteParams::default();
        let deleting = self.api.delete(&name, &params);
        match tokio::time::timeout(RELEASE_TIMEOUT, deleting).await {
            Ok(Ok(_)) => info!(
                lease = name,
                "released the announcer Lease: peers take over"
            ),
            Ok(Err(error)) => warn!(lease = name, %error, "cannot release the announcer Lease"),
            Err(_) => warn!(lease = name, "releasing the announcer Lease timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, seconds: Option<i32>, renewed: bool) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: seconds,
                renew_time: renewed.then(|| MicroTime("2026-12-06T02:00:00.5Z".parse().unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_says_whose_heartbeat_which_renewal_and_how_long() {
        assert_eq!(
            beat_of(&lease(Some("node1"), Some(6), true)),
            Some(Beat {
                node: "node1".into(),
                renewed: "2026-12-06T02:00:00.5Z".into(),
                valid_for: Duration::from_secs(6),
            })
        );
        assert_eq!(lease_name("node1"), "ferry-proxy-node1");
    }

    #[test]
    fn an_incomplete_lease_is_no_heartbeat() {
        assert_eq!(beat_of(&lease(None, Some(6), true)), None);
        assert_eq!(beat_of(&lease(Some(""), Some(6), true)), None);
        assert_eq!(beat_of(&lease(Some("node1"), None, true)), None);
        assert_eq!(beat_of(&lease(Some("node1"), Some(0), true)), None);
        assert_eq!(beat_of(&lease(Some("node1"), Some(6), false)), None);
        assert_eq!(beat_of(&Lease::default()), None);
    }
}
