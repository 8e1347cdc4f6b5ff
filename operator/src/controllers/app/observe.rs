//! Reads what the planner needs about one App from the caches, plus the one thing they leave
//! out: the stored template a paused App makes its pods from.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::jiff::Timestamp;
use kube::core::SelectorExt;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::Context;
use crate::api::App;
use crate::app::revision::revision_name;
use crate::app::{Observed, controller_uid, pod_selector, template_hash};
use crate::controllers::Error;

pub async fn observe(ctx: &Context, app: &App, now: Timestamp) -> Result<Observed, Error> {
    let missing = || Error::MissingMetadata(app.name_any());
    let namespace = app.namespace().ok_or_else(missing)?;
    let uid = app.uid().ok_or_else(missing)?;
    let selector = pod_selector(app);
    let in_namespace = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());

    let pods = ctx.pods.state_filter(|pod| {
        in_namespace(pod.namespace())
            && match controller_uid(&pod.metadata) {
                Some(controller) => controller == uid,
                None => selector.as_ref().is_some_and(|s| s.matches(pod.labels())),
            }
    });
    let running: HashSet<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.uid())
        .collect();
    let expectations_satisfied = ctx
        .expectations
        .satisfied(&uid, Instant::now(), |pod_uid| running.contains(pod_uid));
    let mut revisions = ctx.revisions.state_filter(|r| {
        in_namespace(r.namespace()) && controller_uid(&r.metadata) == Some(uid.as_str())
    });
    if let Some(name) = paused_on_older_revision(app) {
        let api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &namespace);
        if let Some(full) = api.get_opt(&name).await? {
            revisions.retain(|r| r.name_any() != name);
            revisions.push(Arc::new(full));
        }
    }
    let service = ctx
        .services
        .get(&ObjectRef::new(&app.name_any()).within(&namespace));
    Ok(Observed {
        pods,
        revisions,
        service,
        expectations_satisfied,
        now,
    })
}

/// The revision a paused App replaces missing pods from, when it is not the current
/// template's: its data is not cached, so it is read from the API server.
fn paused_on_older_revision(app: &App) -> Option<String> {
    let current = app.status.as_ref()?.current_revision.clone()?;
    let update = revision_name(&app.name_any(), &template_hash(&app.spec.template));
    (app.spec.paused && current != update).then_some(current)
}
