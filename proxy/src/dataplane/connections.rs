//! `ferry_proxy_service_connections_total{namespace,service}` in IPVS mode: the connections
//! IPVS scheduled to each Service's frontends, read from the kernel's virtual server counters
//! at scrape time (the operator's Autoscaler scrapes every few seconds, and a dump of the
//! virtual servers without their real servers is cheap).
//!
//! A kernel counter starts from zero when its virtual server is created again, so the metric
//! adds the increase of each counter since the previous scrape, and the whole value of a
//! counter seen for the first time or seen going down: the metric only ever grows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tracing::warn;

use crate::ipvs::Ipvs;
use crate::metrics::{Metrics, ScrapeHook, ServiceLabels};
use crate::model::types::VirtualServerKey;
use crate::sync::SharedDesired;

pub struct ConnectionStats<I> {
    ipvs: Arc<I>,
    desired: SharedDesired,
    metrics: Arc<Metrics>,
    /// Held for a whole refresh, so concurrent scrapes do not count an increase twice.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    counters: BTreeMap<VirtualServerKey, u64>,
    services: BTreeSet<ServiceLabels>,
}

impl<I: Ipvs> ConnectionStats<I> {
    pub fn new(ipvs: Arc<I>, desired: SharedDesired, metrics: Arc<Metrics>) -> Self {
        Self {
            ipvs,
            desired,
            metrics,
            seen: Mutex::default(),
        }
    }

    /// Reads the counters and adds their increase to each Service's series.
    pub async fn refresh(&self) {
        let mut seen = self.seen.lock().await;
        let stats = match self.ipvs.list_stats().await {
            Ok(stats) => stats,
            Err(error) => {
                warn!(%error, "cannot read IPVS counters for the connections metric");
                return;
            }
        };
        let desired = self.desired.read().await;
        let mut increases: BTreeMap<ServiceLabels, u64> = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for (key, frontend) in desired.virtual_servers() {
            let Some(now) = stats.get(key).map(|s| s.connections) else {
                continue;
            };
            let increase = match seen.counters.get(key) {
                Some(&before) if now >= before => now - before,
                _ => now,
            };
            counters.insert(*key, now);
            let service = ServiceLabels {
                namespace: frontend.service.service.namespace.clone(),
                service: frontend.service.service.name.clone(),
            };
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
}

impl<I: Ipvs> ScrapeHook for ConnectionStats<I> {
    fn before_scrape(&self) -> BoxFuture<'_, ()> {
        self.refresh().boxed()
    }
}
