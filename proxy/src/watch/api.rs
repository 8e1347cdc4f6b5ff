//! The API server as the source: one kube-runtime watcher (with bookmarks, the default) per
//! kind, each event applied to the tracker as it arrives. No reflector store: the tracker's
//! plain values are the only copy, which keeps the proxy's memory proportional to what it
//! serves.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tracing::warn;

use super::{SERVICE_PROXY_NAME_SELECTOR, SLICE_SELECTOR, SharedTracker};

/// Watches until the process ends; watch errors are retried with kube-runtime's backoff.
pub async fn run(client: Client, tracker: Arc<SharedTracker>, node_name: &str) {
    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default().labels(SERVICE_PROXY_NAME_SELECTOR),
    );
    let slices = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(SLICE_SELECTOR),
    );
    let node = watcher(
        Api::<Node>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={node_name}")),
    );
    tokio::join!(
        drive("Service", services, |event| tracker.apply_service(event)),
        drive("EndpointSlice", slices, |event| tracker.apply_slice(event)),
        drive("Node", node, |event| tracker.apply_node(event)),
    );
}

async fn drive<K: Debug>(
    kind: &'static str,
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    apply: impl Fn(Event<K>),
) {
    let events = events.default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => apply(event),
            Err(error) => warn!(kind, %error, "watch failed; retrying"),
        }
    }
}
