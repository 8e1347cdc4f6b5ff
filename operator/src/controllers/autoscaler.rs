//! The Autoscaler controller: every 15 s (2 s when a connection metric is present) it reads the
//! target's `/scale`, observes pods, pod usage and connection rates, asks the pure algorithm
//! in `crate::autoscaler` for a replica count, rescales the target, and writes the status.

mod decisions;
mod memory;
mod observe;
mod settings;
mod target;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

pub use decisions::DecisionMetrics;
pub use settings::{AutoscalerArgs, ProxyDiscovery, Settings, SettingsError};

use self::memory::Memory;
use self::target::{ScaleView, Targets};
use super::Error;
use crate::api::{Autoscaler, AutoscalerStatus, MetricType};
use crate::autoscaler::{AutoscalerCondition, Input, Recommendation, merge_conditions, recommend};
use crate::metrics::Metrics;
use crate::metrics_source::{RateSnapshot, proxy_scraper};

const CONTROLLER: &str = "autoscaler";
/// HPA's sync period, for Autoscalers on CPU and memory.
const RESOURCE_PERIOD: Duration = Duration::from_secs(15);
/// For Autoscalers on the connection rate, which the proxies report every 2 s.
const CONNECTIONS_PERIOD: Duration = Duration::from_secs(2);
/// Status changes that are only new metric values are written at most this often.
const METRICS_ONLY_WRITE_PERIOD: Duration = Duration::from_secs(15);
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(15);

/// What every reconcile shares.
struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    decisions: DecisionMetrics,
    settings: Settings,
    targets: Targets,
    memory: Memory,
    rates: watch::Receiver<Option<RateSnapshot>>,
}

/// Runs the controller until `shutdown` completes; scrapes the proxies meanwhile.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    decisions: DecisionMetrics,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let rates = proxy_scraper::spawn(client.clone(), settings.scrape.clone());
    let api = Api::<DeserializeGuard<Autoscaler>>::all(client.clone());
    let (store, writer) = reflector::store();
    // Only spec changes trigger a reconcile: the controller's own status writes must not, or
    // a 2-second loop would feed itself. Periodic requeues do the rest.
    let changes = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let concurrency = settings.concurrency;
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), settings.reporter.clone()),
        client,
        metrics,
        decisions,
        settings,
        targets: Targets::default(),
        memory: Memory::default(),
        rates,
    });
    Controller::for_stream(changes, store)
        .with_config(Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "autoscaler controller event");
            }
            futures::future::ready(())
        })
        .await;
}

async fn reconcile(
    object: Arc<DeserializeGuard<Autoscaler>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    match &object.0 {
        Ok(autoscaler) => {
            let span = info_span!(
                "reconcile",
                controller = CONTROLLER,
                namespace = autoscaler.namespace(),
                autoscaler = autoscaler.name_any()
            );
            reconcile_autoscaler(autoscaler, &ctx)
                .instrument(span)
                .await
        }
        Err(invalid) => {
            // The schema should make this impossible; nothing can be decided without a spec.
            warn!(autoscaler = invalid.metadata.name, error = %invalid.error, "unreadable Autoscaler");
            Ok(Action::await_change())
        }
    }
}

fn error_policy(
    object: Arc<DeserializeGuard<Autoscaler>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let name = object
        .0
        .as_ref()
        .map_or_else(|i| i.metadata.name.clone(), |a| a.metadata.name.clone());
    warn!(autoscaler = name, %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(RETRY)
}

async fn reconcile_autoscaler(autoscaler: &Autoscaler, ctx: &Context) -> Result<Action, Error> {
    let missing_metadata = || Error::MissingMetadata(autoscaler.name_any());
    let namespace = autoscaler.namespace().ok_or_else(missing_metadata)?;
    let uid = autoscaler.uid().ok_or_else(missing_metadata)?;
    let spec = &autoscaler.spec;
    let period = sync_period(autoscaler);
    let scale = match ctx
        .targets
        .read(&ctx.client, &namespace, &spec.scale_target_ref)
        .await
    {
        Ok(scale) => scale,
        Err(error) => {
            let unable = AutoscalerCondition::failed_get_scale(&error);
            write_status(ctx, autoscaler, &uid, unchanged_except(vec![unable])).await?;
            return Ok(Action::requeue(period));
        }
    };
    let Some(selector) = scale.selector.clone() else {
        let invalid = AutoscalerCondition::invalid_selector(
            "the Autoscaler's target's scale is missing a selector",
        );
        write_status(ctx, autoscaler, &uid, unchanged_except(vec![invalid])).await?;
        return Ok(Action::requeue(period));
    };
    let now = Timestamp::now();
    let rates = ctx.rates.borrow().clone();
    let observed = observe::observe(
        &ctx.client,
        &namespace,
        &selector,
        spec,
        rates.as_ref(),
        stale_after(ctx),
    )
    .await?;
    let history = ctx.memory.history(&uid, now, scale.spec_replicas);
    let mut input = Input::from_spec(spec, scale.spec_replicas, observed, history, now);
    input.delays = ctx.settings.delays;
    let decision = recommend(&input);
    let outcome = apply(ctx, autoscaler, &namespace, &scale, &input, decision).await;
    ctx.memory.remember(&uid, outcome.history.clone());
    write_status(ctx, autoscaler, &uid, outcome.status_update(&scale)).await?;
    Ok(Action::requeue(period))
}

/// Connection rates older than this (three scrapes) count as missing.
fn stale_after(ctx: &Context) -> Duration {
    ctx.settings.scrape.interval * 3
}

fn sync_period(autoscaler: &Autoscaler) -> Duration {
    let on_connections = autoscaler
        .spec
        .metrics
        .iter()
        .any(|m| m.type_ == MetricType::Connections);
    if on_connections {
        CONNECTIONS_PERIOD
    } else {
        RESOURCE_PERIOD
    }
}

/// A decision after the controller acted on it.
struct Outcome {
    decision: Recommendation,
    history: crate::autoscaler::History,
    conditions: Vec<AutoscalerCondition>,
    rescaled_at: Option<Timestamp>,
}

impl Outcome {
    fn status_update(self, scale: &ScaleView) -> StatusUpdate {
        StatusUpdate {
            current_replicas: Some(scale.status_replicas),
            desired_replicas: Some(if self.rescaled_at.is_some() {
                self.decision.desired_replicas
            } else {
                scale.spec_replicas
            }),
            last_scale_time: self.rescaled_at,
            current_metrics: Some(self.decision.current_metrics),
            conditions: self.conditions,
        }
    }
}

/// Rescales the target if the decision says so, and records what happened.
async fn apply(
    ctx: &Context,
    autoscaler: &Autoscaler,
    namespace: &str,
    scale: &ScaleView,
    input: &Input,
    decision: Recommendation,
) -> Outcome {
    let mut history = decision.history.clone();
    let mut conditions = decision.conditions.clone();
    let (from, to) = (scale.spec_replicas, decision.desired_replicas);
    let mut rescaled_at = None;
    if to != from {
        let target = &autoscaler.spec.scale_target_ref;
        match ctx
            .targets
            .write_replicas(&ctx.client, namespace, target, to)
            .await
        {
            Ok(()) => {
                history.record_rescale(&input.behavior, input.now, from, to);
                conditions.push(AutoscalerCondition::succeeded_rescale(to));
                rescaled_at = Some(input.now);
                ctx.decisions.record(from, to);
                info!(from, to, reason = decision.explanation, "rescaled");
                let note = format!(
                    "New size: {to} (was {from}); reason: {}",
                    decision.explanation
                );
                publish(
                    ctx,
                    autoscaler,
                    EventType::Normal,
                    "SuccessfulRescale",
                    note,
                )
                .await;
            }
            Err(error) => {
                warn!(from, to, %error, "rescale failed");
                let note = format!(
                    "New size: {to}; reason: {}; error: {error}",
                    decision.explanation
                );
                publish(ctx, autoscaler, EventType::Warning, "FailedRescale", note).await;
                conditions.push(AutoscalerCondition::failed_update_scale(&error));
            }
        }
    }
    Outcome {
        decision,
        history,
        conditions,
        rescaled_at,
    }
}

/// What a reconcile changes in the status; `None` keeps the previous value.
struct StatusUpdate {
    current_replicas: Option<i32>,
    desired_replicas: Option<i32>,
    last_scale_time: Option<Timestamp>,
    current_metrics: Option<Vec<crate::api::MetricStatus>>,
    conditions: Vec<AutoscalerCondition>,
}

/// Only `conditions` change: the target could not be read.
fn unchanged_except(conditions: Vec<AutoscalerCondition>) -> StatusUpdate {
    StatusUpdate {
        current_replicas: None,
        desired_replicas: None,
        last_scale_time: None,
        current_metrics: None,
        conditions,
    }
}

/// Writes the status when it changed; a change of metric values alone is written at most every
/// 15 s. Conditions that turn into a failure are also published as Warning Events.
async fn write_status(
    ctx: &Context,
    autoscaler: &Autoscaler,
    uid: &str,
    update: StatusUpdate,
) -> Result<(), Error> {
    let previous = autoscaler.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let generation = autoscaler.metadata.generation;
    let status = AutoscalerStatus {
        observed_generation: generation,
        current_replicas: update.current_replicas.unwrap_or(previous.current_replicas),
        desired_replicas: update.desired_replicas.unwrap_or(previous.desired_replicas),
        last_scale_time: update
            .last_scale_time
            .map(Time)
            .or_else(|| previous.last_scale_time.clone()),
        current_metrics: update
            .current_metrics
            .unwrap_or_else(|| previous.current_metrics.clone()),
        conditions: merge_conditions(&previous.conditions, &update.conditions, &now, generation),
    };
    for failure in new_failures(&previous.conditions, &status.conditions) {
        publish(
            ctx,
            autoscaler,
            EventType::Warning,
            &failure.reason,
            failure.message.clone(),
        )
        .await;
    }
    let metrics_only = AutoscalerStatus {
        current_metrics: previous.current_metrics.clone(),
        ..status.clone()
    } == previous;
    if status == previous
        || (metrics_only
            && ctx
                .memory
                .wrote_status_within(uid, METRICS_ONLY_WRITE_PERIOD))
    {
        return Ok(());
    }
    let namespace = autoscaler
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(autoscaler.name_any()))?;
    Api::<Autoscaler>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &autoscaler.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    ctx.memory.status_written(uid);
    Ok(())
}

/// Conditions that are False now with a reason they did not have before.
fn new_failures<'a>(previous: &[Condition], current: &'a [Condition]) -> Vec<&'a Condition> {
    current
        .iter()
        .filter(|c| c.status == "False" && c.type_ != "ScalingLimited")
        .filter(|c| {
            !previous
                .iter()
                .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}

async fn publish(
    ctx: &Context,
    autoscaler: &Autoscaler,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Autoscale".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&event, &autoscaler.object_ref(&()))
        .await
    {
        // An Event is a courtesy: failing to publish one must not fail the reconcile.
        warn!(%error, reason, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn only_new_failures_become_warning_events() {
        let before = [condition(
            "ScalingActive",
            "False",
            "FailedGetResourceMetric",
        )];
        let same = [condition(
            "ScalingActive",
            "False",
            "FailedGetResourceMetric",
        )];
        assert!(
            new_failures(&before, &same).is_empty(),
            "repeated failures are not re-announced"
        );
        let other = [condition(
            "ScalingActive",
            "False",
            "FailedGetConnectionsMetric",
        )];
        assert_eq!(new_failures(&before, &other).len(), 1);
        let limited = [condition("ScalingLimited", "False", "DesiredWithinRange")];
        assert!(
            new_failures(&[], &limited).is_empty(),
            "ScalingLimited=False is the good state"
        );
    }
}
