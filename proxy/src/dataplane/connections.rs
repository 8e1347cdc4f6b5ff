//! `ferry_proxy_service_connections_total{namespace,service}`: the new connections each
//! Service's frontends got, read from kernel counters at scrape time (the operator's
//! Autoscaler scrapes every few seconds; in nftables mode a scrape dumps every rule of the
//! table, a cost that grows with the Service count):
//! - IPVS mode: each virtual server's connection counter;
//! - nftables mode: the `counter` at the head of each Service chain, which only a
//!   connection's first packet reaches (shared by the ClusterIP and NodePort frontends that
//!   use the chain, and counted once).
//!
//! A kernel counter starts from zero when its virtual server is created again, or its chain's
//! rules are rewritten (an endpoint change does that), so the metric adds the increase of each
//! counter since the previous scrape, and the whole value of a counter seen for the first time
//! or seen going down: the metric only ever grows (what a reset counter had counted since the
//! previous scrape is lost, a few seconds' worth at most).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tracing::warn;

use crate::ipvs::{Ipvs, IpvsError};
use crate::metrics::{Metrics, ScrapeHook, ServiceLabels};
use crate::model::Frontend;
use crate::model::types::VirtualServerKey;
use crate::nft::{self, NetlinkDataplane, NftError};
use crate::sync::SharedDesired;

/// Why the counters could not be read this time.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("reading the IPVS virtual server counters: {0}")]
    Ipvs(#[from] IpvsError),
    #[error("reading the nftables Service chain counters: {0}")]
    Nft(#[from] NftError),
}

/// Where a mode keeps its per-frontend connection counters.
pub trait ConnectionCounters: Send + Sync {
    /// Identifies one kernel counter; frontends may share one.
    type Key: Ord + Clone + Send + Sync;

    /// Every counter's current value.
    fn read(&self) -> impl Future<Output = Result<BTreeMap<Self::Key, u64>, CounterError>> + Send;

    /// The counter that counts `frontend`'s connections.
    fn counter_of(key: &VirtualServerKey, frontend: &Frontend) -> Self::Key;
}

impl<I: Ipvs> ConnectionCounters for Arc<I> {
    type Key = VirtualServerKey;

    async fn read(&self) -> Result<BTreeMap<VirtualServerKey, u64>, CounterError> {
        let stats = self.list_stats().await?;
        Ok(stats
            .into_iter()
            .map(|(key, stats)| (key, stats.connections))
            .collect())
    }

    fn counter_of(key: &VirtualServerKey, _: &Frontend) -> VirtualServerKey {
        *key
    }
}

/// The nftables mode's counters, read through a netlink socket of their own (the sync loop
/// owns the other one).
pub struct NftCounters {
    nft: std::sync::Mutex<NetlinkDataplane>,
}

impl NftCounters {
    pub fn new(nft: NetlinkDataplane) -> Self {
        Self {
            nft: std::sync::Mutex::new(nft),
        }
    }
}

impl ConnectionCounters for NftCounters {
    type Key = String;

    async fn read(&self) -> Result<BTreeMap<String, u64>, CounterError> {
        let mut nft = self
            .nft
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(nft.read_counters()?)
    }

    fn counter_of(key: &VirtualServerKey, frontend: &Frontend) -> String {
        nft::build::service_chain(key, frontend)
    }
}

pub struct ConnectionStats<C: ConnectionCounters> {
    counters: C,
    desired: SharedDesired,
    metrics: Arc<Metrics>,
    /// Held for a whole refresh, so concurrent scrapes do not count an increase twice.
    seen: Mutex<Seen<C::Key>>,
}

struct Seen<K> {
    counters: BTreeMap<K, u64>,
    services: BTreeSet<ServiceLabels>,
}

impl<C: ConnectionCounters> ConnectionStats<C> {
    pub fn new(counters: C, desired: SharedDesired, metrics: Arc<Metrics>) -> Self {
        Self {
            counters,
            desired,
            metrics,
            seen: Mutex::new(Seen {
                counters: BTreeMap::new(),
                services: BTreeSet::new(),
            }),
        }
    }

    /// Reads the counters and adds their increase to each Service's series.
    pub async fn refresh(&self) {
        let mut seen = self.seen.lock().await;
        let values = match self.counters.read().await {
            Ok(values) => values,
            Err(error) => {
                warn!(%error, "cannot read the counters of the connections metric");
                return;
            }
        };
        let counted = self.counted_services().await;
        let mut increases: BTreeMap<ServiceLabels, u64> = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for (counter, service) in counted {
            let Some(&now) = values.get(&counter) else {
                continue;
            };
            let increase = match seen.counters.get(&counter) {
                Some(&before) if now >= before => now - before,
                _ => now,
            };
            counters.insert(counter, now);
            *increases.entry(service).or_default() += increase;
        }
        for (service, increase) in &increases {
            self.metrics.add_service_connections(service, *increase);
        }
        for gone in seen.services.iter().filter(|s| !increases.contains_key(s)) {
            self.metrics.forget_service_connections(gone);
        }
        *seen = Seen {
            counters,
            services: increases.into_keys().collect(),
        };
    }

    /// Each counter of the desired state, once, with the Service it counts for.
    async fn counted_services(&self) -> BTreeMap<C::Key, ServiceLabels> {
        let desired = self.desired.read().await;
        desired
            .virtual_servers()
            .iter()
            .map(|(key, frontend)| {
                let service = ServiceLabels {
                    namespace: frontend.service.service.namespace.clone(),
                    service: frontend.service.service.name.clone(),
                };
                (C::counter_of(key, frontend), service)
            })
            .collect()
    }
}

impl<C: ConnectionCounters> ScrapeHook for ConnectionStats<C> {
    fn before_scrape(&self) -> BoxFuture<'_, ()> {
        self.refresh().boxed()
    }
}
