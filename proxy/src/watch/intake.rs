//! API objects into the tracker: conversion through the model's `input`, with every skip
//! logged and bad input counted in `ferry_proxy_skipped_objects_total{kind,reason}`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use tracing::{debug, warn};

use super::tracker::ChangeTracker;
use crate::metrics::Metrics;
use crate::model::input::{self, Converted, InputError, SCHEDULER_ANNOTATION, Skip};
use crate::model::types::Scheduler;
use crate::model::{ServiceName, SliceName};

/// Services another proxy serves are not even listed.
pub const SERVICE_PROXY_NAME_SELECTOR: &str = "!service.kubernetes.io/service-proxy-name";
/// Nor are the slices of headless Services, or of Services another proxy serves.
pub const SLICE_SELECTOR: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";
/// When the change a slice reflects happened (set by the EndpointSlice controller).
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Service,
    EndpointSlice,
    Node,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [Self::Service, Self::EndpointSlice, Self::Node];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Node => "Node",
        }
    }
}

/// What the conversion needs beyond the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeSettings {
    /// Only this Node is watched (and read from a file).
    pub node_name: String,
    /// For Services without the scheduler annotation.
    pub default_scheduler: Scheduler,
}

pub(super) struct Intake {
    settings: IntakeSettings,
    metrics: Arc<Metrics>,
}

/// `namespace/name` of any object (the namespace is empty for a Node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ObjectKey {
    namespace: String,
    name: String,
}

impl ObjectKey {
    pub(super) fn of(object: &impl Resource) -> Option<Self> {
        let meta = object.meta();
        Some(Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
        })
    }

    fn service(&self) -> ServiceName {
        ServiceName::new(&self.namespace, &self.name)
    }

    fn slice(&self) -> SliceName {
        SliceName {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl Intake {
    pub(super) fn new(settings: IntakeSettings, metrics: Arc<Metrics>) -> Self {
        Self { settings, metrics }
    }

    /// The converted value, after logging and counting what was dropped from it; `None` (also
    /// logged and counted) when the object is skipped.
    fn accept<T>(
        &self,
        kind: ObjectKind,
        meta: &ObjectMeta,
        converted: Result<Converted<T>, Skip>,
    ) -> Option<T> {
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        match converted {
            Ok(converted) => {
                for warning in &converted.warnings {
                    warn!(kind = kind.as_str(), namespace, name, %warning, "dropped a field");
                    self.count(kind, warning);
                }
                Some(converted.value)
            }
            Err(Skip::Ignored(reason)) => {
                debug!(kind = kind.as_str(), namespace, name, %reason, "not proxied");
                None
            }
            Err(Skip::Invalid(error)) => {
                warn!(kind = kind.as_str(), namespace, name, %error, "skipped");
                self.count(kind, &error);
                None
            }
        }
    }

    fn count(&self, kind: ObjectKind, error: &InputError) {
        self.metrics
            .count_skipped(kind.as_str(), error.metric_label());
    }
}

/// A kind of object the tracker follows.
pub(super) trait Watched: Resource + Sized {
    const KIND: ObjectKind;

    /// Applies an added or updated object; `live` for watch events (not list results), whose
    /// trigger times measure network programming latency.
    fn upsert(&self, tracker: &mut ChangeTracker, intake: &Intake, live: bool);

    fn remove(key: &ObjectKey, tracker: &mut ChangeTracker, intake: &Intake);

    /// The objects of this kind the tracker holds.
    fn known(tracker: &ChangeTracker) -> Vec<ObjectKey>;
}

impl Watched for Service {
    const KIND: ObjectKind = ObjectKind::Service;

    fn upsert(&self, tracker: &mut ChangeTracker, intake: &Intake, _live: bool) {
        let converted = input::service_info(self);
        match intake.accept(Self::KIND, &self.metadata, converted) {
            Some(mut service) => {
                if !has_scheduler_annotation(self) {
                    service.scheduler = intake.settings.default_scheduler;
                }
                tracker.upsert_service(service);
            }
            // It may have been served before this update (it became headless, say).
            None => {
                if let Some(key) = ObjectKey::of(self) {
                    tracker.remove_service(&key.service());
                }
            }
        }
    }

    fn remove(key: &ObjectKey, tracker: &mut ChangeTracker, _intake: &Intake) {
        tracker.remove_service(&key.service());
    }

    fn known(tracker: &ChangeTracker) -> Vec<ObjectKey> {
        let services = tracker.snapshot().services();
        services
            .map(|service| ObjectKey {
                namespace: service.name.namespace.clone(),
                name: service.name.name.clone(),
            })
            .collect()
    }
}

fn has_scheduler_annotation(service: &Service) -> bool {
    let annotations = service.metadata.annotations.as_ref();
    annotations.is_some_and(|a| a.contains_key(SCHEDULER_ANNOTATION))
}

impl Watched for EndpointSlice {
    const KIND: ObjectKind = ObjectKind::EndpointSlice;

    fn upsert(&self, tracker: &mut ChangeTracker, intake: &Intake, live: bool) {
        let converted = input::endpoint_slice_info(self);
        match intake.accept(Self::KIND, &self.metadata, converted) {
            Some(slice) => {
                let trigger = live.then(|| trigger_time(self)).flatten();
                tracker.upsert_slice(slice, trigger);
            }
            None => {
                if let Some(key) = ObjectKey::of(self) {
                    tracker.remove_slice(&key.slice());
                }
            }
        }
    }

    fn remove(key: &ObjectKey, tracker: &mut ChangeTracker, _intake: &Intake) {
        tracker.remove_slice(&key.slice());
    }

    fn known(tracker: &ChangeTracker) -> Vec<ObjectKey> {
        let names = tracker.snapshot().slice_names();
        names
            .map(|slice| ObjectKey {
                namespace: slice.namespace.clone(),
                name: slice.name.clone(),
            })
            .collect()
    }
}

fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let annotations = slice.metadata.annotations.as_ref()?;
    let text = annotations.get(TRIGGER_TIME_ANNOTATION)?;
    Timestamp::from_str(text).ok().map(SystemTime::from)
}

impl Watched for Node {
    const KIND: ObjectKind = ObjectKind::Node;

    fn upsert(&self, tracker: &mut ChangeTracker, intake: &Intake, _live: bool) {
        if self.metadata.name.as_deref() != Some(intake.settings.node_name.as_str()) {
            debug!(node = ?self.metadata.name, "ignoring another node");
            return;
        }
        let converted = input::node_info(self).map_err(Skip::from);
        if let Some(node) = intake.accept(Self::KIND, &self.metadata, converted) {
            tracker.set_node(Some(node));
        }
    }

    fn remove(key: &ObjectKey, tracker: &mut ChangeTracker, intake: &Intake) {
        if key.name == intake.settings.node_name {
            tracker.set_node(None);
        }
    }

    fn known(tracker: &ChangeTracker) -> Vec<ObjectKey> {
        let node = tracker.node().map(|node| ObjectKey {
            namespace: String::new(),
            name: node.name.clone(),
        });
        node.into_iter().collect()
    }
}
