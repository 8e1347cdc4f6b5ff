//! The caches the allocation reads (Services, pools, namespaces), a counter of their changes,
//! and the allocation for the latest change: every reconcile until the next change shares
//! one computation, so a change costs one allocation however many objects it wakes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Namespace, Service};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::debug;

use super::services::listed_ingress;
use crate::api::LoadBalancerPool;
use crate::lbpool::{Assignments, ServiceKey, allocate};

/// How long a reconcile waits for the cache to show its own status write.
const SEEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bits of `Signals::listed`: each cache sets its own once it holds a full list.
const SERVICES_LISTED: u8 = 1;
const POOLS_LISTED: u8 = 2;
const NAMESPACES_LISTED: u8 = 4;
const ALL_LISTED: u8 = SERVICES_LISTED | POOLS_LISTED | NAMESPACES_LISTED;

type Events<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The watch streams behind the caches; whoever polls them keeps the caches current.
pub struct Watches {
    pub services: Events<Service>,
    pub pools: Events<LoadBalancerPool>,
    pub namespaces: Events<Namespace>,
}

/// An allocation and the objects it was computed from.
pub struct Snapshot {
    /// The change counter the caches were read at.
    pub change: u64,
    pub assignments: Assignments,
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
}

/// What the watch streams tell the reconciles, beyond the caches' contents.
struct Signals {
    /// Counts changes applied to the caches.
    changes: watch::Sender<u64>,
    /// Which caches hold a full list. Tracked here rather than with `Store::wait_until_ready`,
    /// which wakes only one of several reconciles waiting at once.
    listed: watch::Sender<u8>,
}

pub struct Inventory {
    pub services: Store<Service>,
    pub pools: Store<LoadBalancerPool>,
    namespaces: Store<Namespace>,
    signals: Arc<Signals>,
    latest: Mutex<Option<Arc<Snapshot>>>,
}

impl Inventory {
    /// The caches and the streams that fill them; every applied change bumps the counter.
    pub fn watch(client: &Client) -> (Arc<Inventory>, Watches) {
        let signals = Arc::new(Signals {
            changes: watch::Sender::new(0),
            listed: watch::Sender::new(0),
        });
        let (services, services_writer) = store();
        let (pools, pools_writer) = store();
        let (namespaces, namespaces_writer) = store();
        let watches = Watches {
            services: cached(client, services_writer, &signals, SERVICES_LISTED),
            pools: cached(client, pools_writer, &signals, POOLS_LISTED),
            namespaces: cached(client, namespaces_writer, &signals, NAMESPACES_LISTED),
        };
        let inventory = Inventory {
            services,
            pools,
            namespaces,
            signals,
            latest: Mutex::new(None),
        };
        (Arc::new(inventory), watches)
    }

    /// Resolves once every cache holds a full list: an allocation from a partial list would
    /// release the addresses of every Service or pool not listed yet.
    pub async fn synced(&self) {
        let mut listed = self.signals.listed.subscribe();
        // Fails only once the sender is gone, and the inventory itself holds it.
        let _ = listed.wait_for(|bits| *bits == ALL_LISTED).await;
    }

    /// One item per change to the caches (changes in quick succession may coalesce).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(
            self.signals.changes.subscribe(),
            |mut receiver| async move {
                receiver.changed().await.ok()?;
                Some(((), receiver))
            },
        )
    }

    /// The allocation for the caches as they are now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the counter before the caches: a change landing in between makes the next
        // call compute again instead of serving a result older than its counter.
        let change = *self.signals.changes.borrow();
        if let Some(snapshot) = latest.as_ref().filter(|s| s.change == change) {
            return snapshot.clone();
        }
        let started = Instant::now();
        let services = self.services.state();
        let pools = self.pools.state();
        let namespaces = self.namespaces.state();
        let assignments = allocate(
            pools.iter().map(AsRef::as_ref),
            services.iter().map(AsRef::as_ref),
            namespaces.iter().map(AsRef::as_ref),
        );
        debug!(
            change,
            services = services.len(),
            pools = pools.len(),
            served = assignments.services.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "allocated"
        );
        let services = services
            .into_iter()
            .filter_map(|service| Some((ServiceKey::of(&service)?, service)))
            .collect();
        let snapshot = Arc::new(Snapshot {
            change,
            assignments,
            services,
        });
        *latest = Some(snapshot.clone());
        snapshot
    }

    /// Waits until the cache shows `ingress` in the Service's status (or the Service is gone)
    /// and the counter has moved past `change`, so the next snapshot sees the write. False if
    /// that takes longer than `SEEN_TIMEOUT`.
    pub async fn wait_until_seen(
        &self,
        key: &ServiceKey,
        ingress: &[LoadBalancerIngress],
        change: u64,
    ) -> bool {
        let reference = ObjectRef::new(&key.name).within(&key.namespace);
        let mut changes = self.signals.changes.subscribe();
        let deadline = tokio::time::Instant::now() + SEEN_TIMEOUT;
        loop {
            let shown = self
                .services
                .get(&reference)
                .is_none_or(|service| listed_ingress(&service) == ingress);
            if shown && *changes.borrow_and_update() != change {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }
}

/// A watch on all `K` that fills `writer`'s cache, bumps the change counter once the cache
/// holds each change (on a relist, once the new list replaces the old) and sets `listed_bit`
/// after the first full list.
fn cached<K>(
    client: &Client,
    writer: Writer<K>,
    signals: &Arc<Signals>,
    listed_bit: u8,
) -> Events<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let signals = signals.clone();
    let api = Api::<K>::all(client.clone());
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok(move |event| match event {
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                signals.listed.send_modify(|bits| *bits |= listed_bit);
                signals.changes.send_modify(|count| *count += 1);
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                signals.changes.send_modify(|count| *count += 1);
            }
        })
        .touched_objects()
        .boxed()
}
