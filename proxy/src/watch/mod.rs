//! Watching the cluster: Services, EndpointSlices and this Node, from the API server
//! ([`api`]) or a file ([`file`]), applied to one [`ChangeTracker`] that the sync loop drains.
//!
//! Both sources speak kube-runtime's watcher [`Event`]s, re-lists included: between `Init`
//! and `InitDone` every listed object is applied, and at `InitDone` the objects of that kind
//! that were not listed are deleted (they went away while the watch was down). The file
//! source is a re-list on every read.

pub mod api;
pub mod file;
mod intake;
pub mod tracker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::runtime::watcher::Event;
use tokio::sync::{Notify, watch};

pub use intake::{IntakeSettings, ObjectKind, SERVICE_PROXY_NAME_SELECTOR, SLICE_SELECTOR};
pub use tracker::{ChangeTracker, Changes};

use crate::metrics::Metrics;
use intake::{Intake, ObjectKey, Watched};

/// The change tracker shared by the sources and the sync loop.
pub struct SharedTracker {
    inner: Mutex<Inner>,
    intake: Intake,
    changed: Notify,
    listed: watch::Sender<bool>,
}

struct Inner {
    tracker: ChangeTracker,
    /// Kinds being re-listed, with the objects listed so far.
    relisting: BTreeMap<ObjectKind, BTreeSet<ObjectKey>>,
    /// Kinds whose first list is complete.
    listed: BTreeSet<ObjectKind>,
}

impl SharedTracker {
    pub fn new(settings: IntakeSettings, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                tracker: ChangeTracker::new(),
                relisting: BTreeMap::new(),
                listed: BTreeSet::new(),
            }),
            intake: Intake::new(settings, metrics),
            changed: Notify::new(),
            listed: watch::Sender::new(false),
        })
    }

    pub fn apply_service(&self, event: Event<k8s_openapi::api::core::v1::Service>) {
        self.apply(event);
    }

    pub fn apply_slice(&self, event: Event<k8s_openapi::api::discovery::v1::EndpointSlice>) {
        self.apply(event);
    }

    pub fn apply_node(&self, event: Event<k8s_openapi::api::core::v1::Node>) {
        self.apply(event);
    }

    /// Runs `f` on the tracker, with the sources held off meanwhile.
    pub fn with_tracker<T>(&self, f: impl FnOnce(&mut ChangeTracker) -> T) -> T {
        f(&mut self.lock().tracker)
    }

    /// Resolves after a change (at once if one came since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Resolves once Services, EndpointSlices and the Node have each been listed: syncing
    /// before would delete what the kernel serves for objects not seen yet.
    pub async fn listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = listed.wait_for(|listed| *listed).await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply<K: Watched>(&self, event: Event<K>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        match event {
            Event::Init => {
                inner.relisting.insert(K::KIND, BTreeSet::new());
            }
            Event::InitApply(object) => {
                if let (Some(seen), Some(key)) =
                    (inner.relisting.get_mut(&K::KIND), ObjectKey::of(&object))
                {
                    seen.insert(key);
                }
                object.upsert(&mut inner.tracker, &self.intake, false);
            }
            Event::InitDone => {
                let seen = inner.relisting.remove(&K::KIND).unwrap_or_default();
                for key in K::known(&inner.tracker) {
                    if !seen.contains(&key) {
                        K::remove(&key, &mut inner.tracker, &self.intake);
                    }
                }
                inner.listed.insert(K::KIND);
                if inner.listed.len() == ObjectKind::ALL.len() {
                    self.listed.send_replace(true);
                }
            }
            Event::Apply(object) => object.upsert(&mut inner.tracker, &self.intake, true),
            Event::Delete(object) => {
                if let Some(key) = ObjectKey::of(&object) {
                    K::remove(&key, &mut inner.tracker, &self.intake);
                }
            }
        }
        if inner.tracker.has_changes() {
            self.changed.notify_one();
        }
    }
}
