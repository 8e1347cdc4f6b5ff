//! The watches behind the App controller: each fills a cache the reconciles read and
//! triggers the Apps its objects belong to. Pod events also settle create/delete
//! expectations, before the cache applies them, so "new to the cache" is known.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::core::NamespaceResourceScope;
use kube::core::{DeserializeGuard, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store, store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{APP_NAME_LABEL, App};
use crate::app::{controller_uid, pod_selector};
use crate::controllers::expectations::Expectations;

/// A cache and the stream of touched objects that keeps it filled (the controller polls it).
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub events: futures::stream::BoxStream<'static, Result<K, watcher::Error>>,
}

/// The API for `K` in the watched namespace, or in all namespaces.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The Apps. Only spec changes (a new generation) trigger a reconcile: the controller's own
/// status writes must not, or a status that changes on every attempt (an API error naming a
/// generated pod) would spin. The cache still holds the latest status for the next reconcile.
pub fn apps(api: Api<DeserializeGuard<App>>) -> Watched<DeserializeGuard<App>> {
    let (reader, writer) = store();
    let events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|app| app.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
        .boxed();
    Watched {
        store: reader,
        events,
    }
}

/// All pods: orphans anywhere may match an App's selector.
pub fn pods(api: Api<Pod>, expectations: Arc<Expectations>) -> Watched<Pod> {
    let (reader, writer) = store();
    let before_apply = reader.clone();
    let events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|pod| pod.managed_fields_mut().clear())
        .inspect_ok(move |event| settle_expectations(&expectations, &before_apply, event))
        .reflect(writer)
        .touched_objects()
        .boxed();
    Watched {
        store: reader,
        events,
    }
}

/// The ControllerRevisions Apps created (they carry the App label), without their data: the
/// stored templates are most of a revision's size and are read only for a paused App (see
/// `observe`), so caching them would double the operator's memory per App.
pub fn revisions(api: Api<ControllerRevision>) -> Watched<ControllerRevision> {
    let (reader, writer) = store();
    let config = watcher::Config::default()
        .labels(APP_NAME_LABEL)
        .any_semantic();
    let events = watcher(api, config)
        .default_backoff()
        .modify(|revision: &mut ControllerRevision| {
            revision.managed_fields_mut().clear();
            revision.data = None;
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    Watched {
        store: reader,
        events,
    }
}

/// All Services: a Service with an App's name that is not the App's must be seen, so it is
/// never taken over.
pub fn services(api: Api<Service>) -> Watched<Service> {
    cached(api, watcher::Config::default())
}

fn cached<K>(api: Api<K>, config: watcher::Config) -> Watched<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = store();
    let events = watcher(api, config.any_semantic())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
        .boxed();
    Watched {
        store: reader,
        events,
    }
}

fn settle_expectations(
    expectations: &Expectations,
    cache: &Store<Pod>,
    event: &watcher::Event<Pod>,
) {
    let (pod, gone) = match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
        watcher::Event::Delete(pod) => (pod, true),
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    let Some(app_uid) = app_controller(pod).map(|r| r.uid.as_str()) else {
        return;
    };
    let uid = pod.uid().unwrap_or_default();
    let cached = cache
        .get(&ObjectRef::from_obj(pod))
        .is_some_and(|old| old.uid().as_deref() == Some(&uid));
    if !cached && !gone {
        expectations.creation_observed(app_uid);
    }
    if gone || pod.metadata.deletion_timestamp.is_some() {
        expectations.deletion_observed(app_uid, &uid);
    }
}

/// The pod's controller reference, if the controller is an App.
fn app_controller(
    pod: &Pod,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.owner_references().iter().find(|r| {
        r.controller == Some(true)
            && r.kind == App::kind(&())
            && r.api_version == App::api_version(&())
    })
}

/// The Apps a pod event concerns: its controlling App, or for an orphan every App in its
/// namespace whose selector matches it (one of them adopts it).
pub fn apps_for_pod(
    apps: &Store<DeserializeGuard<App>>,
    pod: &Pod,
) -> Vec<ObjectRef<DeserializeGuard<App>>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = app_controller(pod) {
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    if controller_uid(&pod.metadata).is_some() {
        return vec![];
    }
    apps.state()
        .iter()
        .filter_map(|object| object.0.as_ref().ok())
        .filter(|app| app.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|app| pod_selector(app).is_some_and(|s| s.matches(pod.labels())))
        .map(|app| ObjectRef::new(&app.name_any()).within(&namespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{AppBuilder, PodBuilder};
    use kube::runtime::reflector::store::Writer;
    use std::time::Instant;

    #[test]
    fn a_pod_new_to_the_cache_meets_a_creation_and_a_deleted_one_a_deletion() {
        let app = AppBuilder::new("web").build();
        let app_uid = app.uid().unwrap();
        let expectations = Expectations::default();
        let mut writer: Writer<Pod> = Writer::default();
        let cache = writer.as_reader();
        let pod = Arc::unwrap_or_clone(PodBuilder::new("p").owned_by(&app).pod());
        let now = Instant::now();
        expectations.expect_creations(&app_uid, 1, now);
        expectations.expect_deletions(&app_uid, ["uid-p".to_owned()], now);

        let applied = watcher::Event::Apply(pod.clone());
        settle_expectations(&expectations, &cache, &applied);
        writer.apply_watcher_event(&applied);
        // Seen again (a status update): not another creation.
        expectations.expect_creations(&app_uid, 1, now);
        settle_expectations(&expectations, &cache, &applied);
        assert!(!expectations.satisfied(&app_uid, now, |_| true));

        settle_expectations(&expectations, &cache, &watcher::Event::Delete(pod));
        expectations.creation_observed(&app_uid);
        assert!(expectations.satisfied(&app_uid, now, |_| true));
    }

    #[test]
    fn orphans_trigger_every_matching_app_in_their_namespace() {
        let mut writer: Writer<DeserializeGuard<App>> = Writer::default();
        for app in [
            AppBuilder::new("web").build(),
            AppBuilder::new("api")
                .labels([("app".to_owned(), "api".to_owned())].into())
                .build(),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(app))));
        }
        let apps = writer.as_reader();
        let orphan = PodBuilder::new("stray").pod();
        assert_eq!(
            apps_for_pod(&apps, &orphan),
            vec![ObjectRef::new("web").within("default")]
        );

        let owned = PodBuilder::new("p")
            .owned_by(&AppBuilder::new("api").build())
            .pod();
        assert_eq!(
            apps_for_pod(&apps, &owned),
            vec![ObjectRef::new("api").within("default")]
        );
        assert!(
            apps_for_pod(&apps, &PodBuilder::new("rs-pod").controlled_by("rs").pod()).is_empty()
        );
    }
}
