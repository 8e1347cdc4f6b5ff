//! Reads what the planner needs about one App from the caches.

use std::collections::HashSet;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::SelectorExt;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::api::App;
use crate::app::{Observed, controller_uid, pod_selector};
use crate::controllers::Error;

pub fn observe(ctx: &Context, app: &App, now: Timestamp) -> Result<Observed, Error> {
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
    let revisions = ctx.revisions.state_filter(|r| {
        in_namespace(r.namespace()) && controller_uid(&r.metadata) == Some(uid.as_str())
    });
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
