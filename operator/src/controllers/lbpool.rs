//! The LoadBalancerPool controllers: give `type: LoadBalancer` Services addresses from the
//! pools and keep the pools' status.
//!
//! The allocation is global (any Service's change can free or claim an address another one
//! waits for), so every change to a Service, a pool or a namespace re-runs every reconcile;
//! they share one computation per change (see `inventory`). Services are reconciled one at a
//! time, and each status write is awaited in the cache before the next decision, so every
//! decision sees every earlier write.

mod inventory;
mod notices;
mod pools;
mod services;

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use tracing::debug;

use self::inventory::Inventory;
use self::notices::Published;
use crate::metrics::Metrics;

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Who publishes the Events.
    pub reporter: Reporter,
}

/// What every reconcile shares.
struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    inventory: Arc<Inventory>,
    published: Published,
}

/// Runs both controllers until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (inventory, watches) = Inventory::watch(&client);
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), settings.reporter),
        client,
        metrics,
        inventory: inventory.clone(),
        published: Published::default(),
    });
    let shutdown = shutdown.shared();
    let services = Controller::for_stream(watches.services, inventory.services.clone())
        .reconcile_all_on(inventory.changes())
        .with_config(Config::default().concurrency(1))
        .graceful_shutdown_on(shutdown.clone())
        .run(services::reconcile, services::error_policy, context.clone())
        .for_each(|result| log_outcome("lbpool-service", result.err()));
    let pools = Controller::for_stream(watches.pools, inventory.pools.clone())
        .reconcile_all_on(inventory.changes())
        .graceful_shutdown_on(shutdown.clone())
        .run(pools::reconcile, pools::error_policy, context)
        .for_each(|result| log_outcome("lbpool", result.err()));
    // Namespace labels only feed the allocation: polling the watch keeps the cache current.
    let namespaces = watches
        .namespaces
        .take_until(shutdown)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(services, pools, namespaces);
}

fn log_outcome(
    controller: &str,
    error: Option<impl std::fmt::Display>,
) -> futures::future::Ready<()> {
    if let Some(error) = error {
        debug!(controller, %error, "controller event");
    }
    futures::future::ready(())
}
