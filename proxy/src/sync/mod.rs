//! The one sync loop: the only writer to the kernel.
//!
//! A sync drains the change tracker, updates the desired state (all of it for a full sync or
//! a Node change, the changed Services otherwise), hands it to the mode's dataplane, and
//! records the outcome: metrics, `/healthz`, the health check servers. [`run`] decides when
//! (see [`schedule`]); `--once` calls [`Syncer::sync`] directly.

pub mod schedule;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{RwLock, watch};
use tokio::time::Instant;
use tracing::{Instrument, error, field, info, info_span, warn};

pub use schedule::{Outcome, Periods, Schedule, SyncKind};

use crate::announce::{self, Targets};
use crate::dataplane::{Dataplane, DataplaneError, Reading, SyncReport};
use crate::health::Health;
use crate::healthcheck::HealthCheckServers;
use crate::metrics::Metrics;
use crate::model::{self, Desired, ModelConfig, NodeContext, NodeInfo};
use crate::watch::SharedTracker;

/// The desired state, shared with the metrics scrape (connection counters are labelled by the
/// Service each frontend belongs to).
pub type SharedDesired = Arc<RwLock<Desired>>;

/// Everything a sync reads and records besides the dataplane.
pub struct SyncContext {
    pub tracker: Arc<SharedTracker>,
    pub desired: SharedDesired,
    pub model: ModelConfig,
    /// Used until the Node is seen (or when it is not in a `--from-file` list).
    pub node_name: String,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub health_checks: HealthCheckServers,
    /// Where the LoadBalancer IPs to announce go after each successful sync (l2 mode only);
    /// `None` in the channel until the first one.
    pub announce_targets: Option<watch::Sender<Option<Targets>>>,
}

pub struct Syncer<D> {
    dataplane: D,
    context: SyncContext,
    /// The node context the desired state was built with; `None` before the first build.
    node: Option<NodeContext>,
    /// Trigger times of changes not yet programmed successfully.
    triggers: Vec<SystemTime>,
}

impl<D: Dataplane> Syncer<D> {
    pub fn new(dataplane: D, context: SyncContext) -> Self {
        Self {
            dataplane,
            context,
            node: None,
            triggers: Vec::new(),
        }
    }

    /// Resolves once the sources have listed everything (see [`SharedTracker::listed`]).
    pub fn listed(&self) -> impl Future<Output = ()> + Send + 'static {
        let tracker = self.context.tracker.clone();
        async move { tracker.listed().await }
    }

    /// One sync. Errors are logged and counted here; the caller only schedules.
    pub async fn sync(&mut self, kind: SyncKind) -> Result<SyncReport, DataplaneError> {
        let span = info_span!(
            "sync",
            kind = kind.as_str(),
            services = field::Empty,
            ops = field::Empty,
            draining = field::Empty,
            took_ms = field::Empty,
        );
        self.sync_in(kind).instrument(span).await
    }

    async fn sync_in(&mut self, kind: SyncKind) -> Result<SyncReport, DataplaneError> {
        let span = tracing::Span::current();
        let started = Instant::now();
        let rebuilt = self.update_desired(kind).await;
        span.record("services", rebuilt);
        let reading = match kind {
            SyncKind::Full => Reading::Kernel,
            SyncKind::Partial => Reading::Remembered,
        };
        let shared = self.context.desired.clone();
        let desired = shared.read().await;
        let result = self.dataplane.sync(&desired, reading).await;
        let took = started.elapsed();
        let millis = took.as_secs_f64() * 1e3;
        span.record("took_ms", field::display(format_args!("{millis:.1}")));
        self.context.metrics.observe_sync(kind.as_str(), took);
        match &result {
            Ok(report) => {
                span.record("ops", report.ops);
                span.record("draining", report.draining);
                self.succeeded(&desired).await;
                if report.ops > 0 || kind == SyncKind::Full {
                    info!("synced");
                }
            }
            Err(failure) => {
                error!(error = %failure, "sync failed; a full sync follows");
                let metrics = &self.context.metrics;
                metrics.count_sync_error(failure.metric_label());
                self.context.health.record_failure(failure.to_string());
            }
        }
        result
    }

    /// Brings the desired state up to date with the tracker; returns how many Services were
    /// rebuilt.
    async fn update_desired(&mut self, kind: SyncKind) -> usize {
        let mut desired = self.context.desired.write().await;
        let node_name = &self.context.node_name;
        let model = &self.context.model;
        let node = &mut self.node;
        let triggers = &mut self.triggers;
        self.context.tracker.with_tracker(|tracker| {
            let changes = tracker.drain();
            triggers.extend(changes.triggers);
            let info = tracker.node().cloned().unwrap_or_else(|| {
                if node.is_none() {
                    warn!(node = %node_name, "this Node is unknown: no NodePort is served");
                }
                NodeInfo {
                    name: node_name.clone(),
                    addresses: Vec::new(),
                }
            });
            let context = NodeContext::new(&info, model);
            if kind == SyncKind::Full || node.as_ref() != Some(&context) {
                *desired = model::desired(tracker.snapshot(), &context);
                *node = Some(context);
                return tracker.snapshot().services().count();
            }
            for service in &changes.services {
                desired.update_service(tracker.snapshot(), service, &context);
            }
            changes.services.len()
        })
    }

    async fn succeeded(&mut self, desired: &Desired) {
        let context = &mut self.context;
        context.health.record_success();
        let now = SystemTime::now();
        for trigger in self.triggers.drain(..) {
            // A trigger time ahead of this clock (skew) measures nothing.
            if let Ok(latency) = now.duration_since(trigger) {
                context.metrics.observe_network_programming(latency);
            }
        }
        let (services, endpoints) = programmed(desired);
        context.metrics.set_programmed(services, endpoints);
        context.health_checks.update(desired.health_checks()).await;
        if let Some(sender) = &context.announce_targets {
            let targets = context
                .tracker
                .with_tracker(|t| announce::targets(t.snapshot()));
            sender.send_if_modified(|published| {
                let changed = published.as_ref() != Some(&targets);
                *published = Some(targets);
                changed
            });
        }
    }
}

/// Services with a frontend, and endpoints summed over frontends.
fn programmed(desired: &Desired) -> (usize, usize) {
    let frontends = desired.virtual_servers().values();
    let services: BTreeSet<_> = frontends.clone().map(|f| &f.service.service).collect();
    let endpoints = frontends.map(|f| f.server.real_servers.len()).sum();
    (services.len(), endpoints)
}

/// Syncs until `shutdown` resolves: once everything is listed, a full sync, then as the
/// [`Schedule`] says.
pub async fn run<D: Dataplane>(
    mut syncer: Syncer<D>,
    periods: Periods,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    tokio::select! {
        () = syncer.listed() => {}
        () = &mut shutdown => return,
    }
    let mut schedule = Schedule::new(Instant::now(), periods);
    loop {
        if let Some(kind) = schedule.due(Instant::now()) {
            let started = Instant::now();
            let outcome = match syncer.sync(kind).await {
                Ok(report) => Outcome::Succeeded {
                    draining: report.draining > 0,
                },
                Err(_) => Outcome::Failed,
            };
            schedule.finished(kind, started, Instant::now(), outcome);
            continue;
        }
        let tracker = syncer.context.tracker.clone();
        tokio::select! {
            () = tracker.changed() => schedule.note_changes(),
            () = tokio::time::sleep_until(schedule.next_wakeup()) => {}
            () = &mut shutdown => return,
        }
    }
}
