//! The scale target, read and written through its `/scale` subresource with a dynamic API, so
//! that anything serving `/scale` (App, Deployment, StatefulSet, other CRDs) can be scaled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, discovery};
use serde_json::json;

use crate::api::ScaleTargetRef;

/// How long a resolved kind is trusted before discovery is asked again (CRDs can change).
const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// The part of a Scale the Autoscaler reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleView {
    /// Desired replicas, the count the algorithm scales from.
    pub spec_replicas: i32,
    /// Replicas that exist, reported as the Autoscaler's currentReplicas.
    pub status_replicas: i32,
    /// The target's pod selector in string form.
    pub selector: Option<String>,
}

/// Why the target could not be read or written; the message ends up in a condition.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("apiVersion {0:?} is not of the form group/version or version")]
    BadApiVersion(String),
    #[error("kind {kind} in {api_version} is not served by the API server: {source}")]
    UnknownKind {
        kind: String,
        api_version: String,
        source: kube::Error,
    },
    #[error(
        "{kind} {name} has no scale subresource; an Autoscaler can only scale resources that serve /scale \
         (App, Deployment, StatefulSet, ReplicaSet, or a custom resource that declares it)"
    )]
    NoScaleSubresource { kind: String, name: String },
    #[error("{kind} {name} does not exist")]
    NotFound { kind: String, name: String },
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Resolves scale targets, caching what discovery says about each kind.
#[derive(Default)]
pub struct Targets {
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, bool, Instant)>>,
}

impl Targets {
    /// The target's current scale.
    pub async fn read(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<ScaleView, TargetError> {
        let api = self.scale_api(client, namespace, target).await?;
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|error| not_found(error, target))?;
        Ok(ScaleView {
            spec_replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
            selector: scale
                .status
                .and_then(|s| s.selector)
                .filter(|s| !s.is_empty()),
        })
    }

    /// Sets the target's desired replicas.
    pub async fn write_replicas(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), TargetError> {
        let api = self.scale_api(client, namespace, target).await?;
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        api.patch_scale(&target.name, &PatchParams::default(), &patch)
            .await
            .map_err(|error| not_found(error, target))?;
        Ok(())
    }

    async fn scale_api(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<Api<DynamicObject>, TargetError> {
        let gvk = group_version_kind(target)?;
        let (resource, has_scale) = self.resolve(client, &gvk, target).await?;
        if !has_scale {
            return Err(TargetError::NoScaleSubresource {
                kind: target.kind.clone(),
                name: target.name.clone(),
            });
        }
        Ok(Api::namespaced_with(client.clone(), namespace, &resource))
    }

    async fn resolve(
        &self,
        client: &Client,
        gvk: &GroupVersionKind,
        target: &ScaleTargetRef,
    ) -> Result<(ApiResource, bool), TargetError> {
        if let Some((resource, has_scale, at)) = self.lock().get(gvk)
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok((resource.clone(), *has_scale));
        }
        let (resource, capabilities) =
            discovery::pinned_kind(client, gvk)
                .await
                .map_err(|source| TargetError::UnknownKind {
                    kind: target.kind.clone(),
                    api_version: target.api_version.clone(),
                    source,
                })?;
        let has_scale = capabilities
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "scale");
        self.lock()
            .insert(gvk.clone(), (resource.clone(), has_scale, Instant::now()));
        Ok((resource, has_scale))
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<GroupVersionKind, (ApiResource, bool, Instant)>> {
        // The map holds plain values: a panic elsewhere cannot leave it half-written.
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn group_version_kind(target: &ScaleTargetRef) -> Result<GroupVersionKind, TargetError> {
    let bad = || TargetError::BadApiVersion(target.api_version.clone());
    let (group, version) = match target.api_version.split_once('/') {
        Some((group, version))
            if !group.is_empty() && !version.is_empty() && !version.contains('/') =>
        {
            (group, version)
        }
        Some(_) => return Err(bad()),
        None if !target.api_version.is_empty() => ("", target.api_version.as_str()),
        None => return Err(bad()),
    };
    Ok(GroupVersionKind::gvk(group, version, &target.kind))
}

fn not_found(error: kube::Error, target: &ScaleTargetRef) -> TargetError {
    match error {
        kube::Error::Api(status) if status.code == 404 => TargetError::NotFound {
            kind: target.kind.clone(),
            name: target.name.clone(),
        },
        error => TargetError::Api(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(api_version: &str) -> ScaleTargetRef {
        ScaleTargetRef {
            api_version: api_version.to_owned(),
            kind: "Deployment".to_owned(),
            name: "web".to_owned(),
        }
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        let gvk = group_version_kind(&target("apps/v1")).expect("valid");
        assert_eq!(
            (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()),
            ("apps", "v1", "Deployment")
        );
        let core = group_version_kind(&target("v1")).expect("valid");
        assert_eq!((core.group.as_str(), core.version.as_str()), ("", "v1"));
        for bad in ["", "/v1", "apps/", "a/b/c"] {
            assert!(
                matches!(
                    group_version_kind(&target(bad)),
                    Err(TargetError::BadApiVersion(_))
                ),
                "{bad}"
            );
        }
    }
}
