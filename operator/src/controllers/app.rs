//! The App controller: watches Apps, all Pods (to adopt orphans), and the ControllerRevisions
//! and Services Apps own; each reconcile observes the caches, asks the planner, executes the
//! plan and writes the status.

mod events;
mod execute;
mod observe;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info_span, warn};

use super::Error;
use super::expectations::Expectations;
use crate::api::{App, AppStatus};
use crate::app::conditions::{INVALID_SPEC, REPLICA_FAILURE};
use crate::app::{Notice, plan, with_creation_outcome};
use crate::metrics::Metrics;

const CONTROLLER: &str = "app";
/// Field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "ferry-operator";
/// Every App is looked at this often even if nothing changes, in case a watch event was lost.
const RESYNC: Duration = Duration::from_secs(5 * 60);
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(10);

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Apps reconciled at once.
    pub concurrency: u16,
    /// Manage Apps in this namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Who publishes the Events.
    pub reporter: Reporter,
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    expectations: Arc<Expectations>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    services: Store<Service>,
}

impl Context {
    async fn caches_synced(&self) -> Result<(), Error> {
        self.pods.wait_until_ready().await?;
        self.revisions.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        Ok(())
    }
}

/// Runs the App controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let expectations = Arc::new(Expectations::default());
    let namespace = settings.namespace.as_deref();
    let pods = watch::pods(watch::scoped(&client, namespace), expectations.clone());
    let revisions = watch::revisions(watch::scoped(&client, namespace));
    let services = watch::services(watch::scoped(&client, namespace));
    let apps = watch::apps(watch::scoped(&client, namespace));
    let app_store = apps.store.clone();
    let controller = Controller::for_stream(apps.events, apps.store);
    let context = Arc::new(Context {
        reporter: settings.reporter,
        client,
        metrics,
        expectations,
        pods: pods.store,
        revisions: revisions.store,
        services: services.store,
    });
    controller
        .watches_stream(pods.events, move |pod| {
            watch::apps_for_pod(&app_store, &pod)
        })
        .owns_stream(revisions.events)
        .owns_stream(services.events)
        .with_config(Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "app controller event");
            }
            futures::future::ready(())
        })
        .await;
}

async fn reconcile(object: Arc<DeserializeGuard<App>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    match &object.0 {
        Ok(app) => {
            let span = info_span!(
                "reconcile",
                controller = CONTROLLER,
                namespace = app.namespace(),
                app = app.name_any()
            );
            reconcile_app(app, &ctx).instrument(span).await
        }
        Err(invalid) => {
            let span = info_span!(
                "reconcile",
                controller = CONTROLLER,
                namespace = invalid.metadata.namespace,
                app = invalid.metadata.name
            );
            report_unreadable(invalid, &ctx).instrument(span).await
        }
    }
}

fn error_policy(object: Arc<DeserializeGuard<App>>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = object
        .0
        .as_ref()
        .map_or_else(|i| i.metadata.name.clone(), |a| a.metadata.name.clone());
    warn!(app = name, %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(RETRY)
}

async fn reconcile_app(app: &App, ctx: &Context) -> Result<Action, Error> {
    let uid = app
        .uid()
        .ok_or_else(|| Error::MissingMetadata(app.name_any()))?;
    ctx.caches_synced().await?;
    let now = Timestamp::now();
    let observed = observe::observe(ctx, app, now).await?;
    let plan = plan(app, &observed);
    let report = execute::execute(ctx, app, plan.actions).await;
    for notice in &plan.notices {
        events::publish(ctx, &app.object_ref(&()), notice).await;
    }
    let status = with_creation_outcome(plan.status, &report.creation, now, app.metadata.generation);
    if app.status.as_ref() != Some(&status) {
        patch_status(ctx, app, &status).await?;
    }
    if let Some(error) = report.errors.into_iter().next() {
        return Err(error);
    }
    Ok(next_look(
        plan.wake_at,
        now,
        ctx.expectations.deadline(&uid),
        Instant::now(),
    ))
}

async fn patch_status(ctx: &Context, app: &App, status: &AppStatus) -> Result<(), Error> {
    let namespace = app
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(app.name_any()))?;
    let api = Api::<App>::namespaced(ctx.client.clone(), &namespace);
    let patch = Patch::Merge(json!({ "status": status }));
    api.patch_status(&app.name_any(), &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// An App the operator cannot parse (a pod template the Pod type rejects) gets a Warning and
/// the ReplicaFailure condition; the rest of the Apps are unaffected.
async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
        return Err(Error::MissingMetadata(format!("{meta:?}")));
    };
    let message = format!("the App cannot be read: {}", invalid.error);
    let reference = events::reference_to_unreadable(meta);
    events::publish(
        ctx,
        &reference,
        &Notice::warning(INVALID_SPEC, message.clone()),
    )
    .await;
    let condition = json!({
        "type": REPLICA_FAILURE,
        "status": "True",
        "reason": INVALID_SPEC,
        "message": message,
        "lastTransitionTime": Time(Timestamp::now()),
        "observedGeneration": meta.generation,
    });
    let patch = Patch::Merge(
        json!({ "status": { "observedGeneration": meta.generation, "conditions": [condition] } }),
    );
    Api::<App>::namespaced(ctx.client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &patch)
        .await?;
    Ok(Action::await_change())
}

/// When to look at the App again: when the planner expects a change by itself, when pending
/// expectations lapse, and at the latest after the resync period.
fn next_look(
    wake_at: Option<Timestamp>,
    now: Timestamp,
    expectations_deadline: Option<Instant>,
    instant: Instant,
) -> Action {
    let until_wake = wake_at
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        // Pod readiness times have second precision: wake just after the moment.
        .map(|d| d + Duration::from_secs(1));
    let until_lapse =
        expectations_deadline.map(|deadline| deadline.saturating_duration_since(instant));
    let after = [Some(RESYNC), until_wake, until_lapse]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(RESYNC);
    Action::requeue(after.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::at;

    #[test]
    fn next_look_is_the_earliest_of_wake_lapse_and_resync() {
        let instant = Instant::now();
        assert_eq!(
            next_look(None, at(0), None, instant),
            Action::requeue(RESYNC)
        );
        assert_eq!(
            next_look(Some(at(30)), at(0), None, instant),
            Action::requeue(Duration::from_secs(31))
        );
        let lapse = instant + Duration::from_secs(20);
        assert_eq!(
            next_look(Some(at(30)), at(0), Some(lapse), instant),
            Action::requeue(Duration::from_secs(20))
        );
        assert_eq!(
            next_look(Some(at(0)), at(50), None, instant),
            Action::requeue(RESYNC),
            "a past wake time is no reason to hurry"
        );
    }
}
