//! A file as the source (`--from-file`): a Kubernetes `List` (YAML or JSON) of Services,
//! EndpointSlices and optionally the Node, for debugging and the VM tests.
//!
//! Every read is a re-list of each kind, so objects removed from the file are deleted. The
//! file is re-read on SIGHUP and when its modification time or size changes (polled: no
//! inotify dependency for a debugging path). Replace it atomically (write, then rename) so a
//! read never sees half a file; a file that does not parse is reported and the previous
//! contents stay in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::{ObjectKind, SharedTracker};
use crate::metrics::Metrics;

/// How often the file's modification time is checked.
const POLL_PERIOD: Duration = Duration::from_secs(1);

/// The objects of one read of the file.
#[derive(Debug, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a Kubernetes List: {source}")]
    NotAList {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

/// Parses a `List`; items of other kinds, and items that do not parse as their kind, are
/// skipped with a warning and counted.
pub fn parse(path: &Path, text: &str, metrics: &Metrics) -> Result<Objects, FileError> {
    let list: List = serde_yaml::from_str(text).map_err(|source| FileError::NotAList {
        path: path.to_owned(),
        source,
    })?;
    let mut objects = Objects::default();
    for (index, item) in list.items.into_iter().enumerate() {
        let kind = item.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let (kind, added) = match kind {
            "Service" => (ObjectKind::Service, decode(item, &mut objects.services)),
            "EndpointSlice" => (ObjectKind::EndpointSlice, decode(item, &mut objects.slices)),
            "Node" => (ObjectKind::Node, decode(item, &mut objects.nodes)),
            other => {
                warn!(
                    index,
                    kind = other,
                    "ignoring a list item of a kind the proxy does not read"
                );
                continue;
            }
        };
        if let Err(error) = added {
            warn!(index, kind = kind.as_str(), %error, "skipping a list item that does not parse");
            metrics.count_skipped(kind.as_str(), "unparsable");
        }
    }
    Ok(objects)
}

fn decode<T: DeserializeOwned>(
    item: serde_json::Value,
    into: &mut Vec<T>,
) -> Result<(), serde_json::Error> {
    into.push(serde_json::from_value(item)?);
    Ok(())
}

/// Applies the file now, then again on SIGHUP or when it changes; runs until the process
/// ends.
pub async fn run(path: PathBuf, tracker: Arc<SharedTracker>, metrics: Arc<Metrics>) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; only file changes reload");
            None
        }
    };
    let mut applied = stamp(&path);
    load(&path, &tracker, &metrics);
    loop {
        let hangup = async {
            match &mut hangups {
                Some(hangups) => hangups.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hangup => info!(path = %path.display(), "SIGHUP: re-reading"),
            () = tokio::time::sleep(POLL_PERIOD) => {
                let current = stamp(&path);
                if current == applied {
                    continue;
                }
                info!(path = %path.display(), "the file changed: re-reading");
            }
        }
        applied = stamp(&path);
        load(&path, &tracker, &metrics);
    }
}

/// What identifies a version of the file without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn load(path: &Path, tracker: &SharedTracker, metrics: &Metrics) {
    let objects = std::fs::read_to_string(path)
        .map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })
        .and_then(|text| parse(path, &text, metrics));
    match objects {
        Ok(objects) => apply(objects, tracker),
        Err(error) => {
            warn!(%error, "keeping the previous contents");
            metrics.count_skipped("List", "unreadable");
        }
    }
}

/// One re-list per kind.
pub fn apply(objects: Objects, tracker: &SharedTracker) {
    info!(
        services = objects.services.len(),
        slices = objects.slices.len(),
        nodes = objects.nodes.len(),
        "applying the file"
    );
    relist(objects.services, |event| tracker.apply_service(event));
    relist(objects.slices, |event| tracker.apply_slice(event));
    relist(objects.nodes, |event| tracker.apply_node(event));
}

fn relist<K>(objects: Vec<K>, apply: impl Fn(Event<K>)) {
    apply(Event::Init);
    for object in objects {
        apply(Event::InitApply(object));
    }
    apply(Event::InitDone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_yields_its_objects_and_skips_the_rest() {
        let text = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: default}
    spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
  - apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
    addressType: IPv4
    endpoints: [{addresses: [10.244.1.2]}]
  - apiVersion: v1
    kind: Node
    metadata: {name: vm}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: other}
  - apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: broken}
    endpoints: "not a list"
"#;
        let metrics = Metrics::new();
        let objects = parse(Path::new("test.yaml"), text, &metrics).unwrap();
        assert_eq!(
            (
                objects.services.len(),
                objects.slices.len(),
                objects.nodes.len()
            ),
            (1, 1, 1)
        );
        let exposition = metrics.encode().unwrap();
        assert!(
            exposition.contains(
                r#"ferry_proxy_skipped_objects_total{kind="EndpointSlice",reason="unparsable"} 1"#
            ),
            "{exposition}"
        );
    }

    #[test]
    fn json_lists_parse_too() {
        let text = r#"{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "vm"}}]}"#;
        let objects = parse(Path::new("test.json"), text, &Metrics::new()).unwrap();
        assert_eq!(objects.nodes.len(), 1);
    }

    #[test]
    fn something_else_is_an_error() {
        let error = parse(Path::new("x.yaml"), "- just\n- a list\n", &Metrics::new());
        assert!(matches!(error, Err(FileError::NotAList { .. })));
    }
}
