//! The proxy's own HTTP endpoints: `/healthz` and `/livez` on healthzBindAddress, `/metrics`
//! on metricsBindAddress.
//!
//! `/healthz` fails when syncs stall: a full sync runs every syncPeriod, so a proxy whose last
//! successful sync is more than two periods old is stuck (kube-proxy uses the same bound). The
//! kubelet then restarts it, which is safe: the kernel state is adopted, not rebuilt.
//! `/livez` answers as long as the process serves HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::{Metrics, ScrapeHook};

/// How many sync periods may pass without a successful sync before `/healthz` fails.
const STALL_PERIODS: u32 = 2;

/// Whether syncs keep succeeding.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    stall_after: Duration,
    state: Mutex<SyncRecord>,
}

#[derive(Debug, Default)]
struct SyncRecord {
    last_success: Option<Instant>,
    last_error: Option<String>,
}

/// What `/healthz` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    pub healthy: bool,
    /// Seconds since the last successful sync, or since start before the first one.
    pub seconds_since_last_sync: f64,
    pub synced_once: bool,
    pub last_error: Option<String>,
}

impl Health {
    pub fn new(sync_period: Duration) -> Self {
        Self {
            started: Instant::now(),
            stall_after: sync_period * STALL_PERIODS,
            state: Mutex::default(),
        }
    }

    pub fn record_success(&self) {
        let mut state = self.lock();
        state.last_success = Some(Instant::now());
        state.last_error = None;
    }

    pub fn record_failure(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    pub fn status(&self) -> HealthStatus {
        let state = self.lock();
        // Before the first sync the start counts as one: the initial list may take a while.
        let since = Instant::now() - state.last_success.unwrap_or(self.started);
        HealthStatus {
            healthy: since <= self.stall_after,
            seconds_since_last_sync: since.as_secs_f64(),
            synced_once: state.last_success.is_some(),
            last_error: state.last_error.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncRecord> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `/healthz` and `/livez`.
pub fn health_router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok" }))
        .with_state(health)
}

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<Metrics>,
    hook: Option<Arc<dyn ScrapeHook>>,
}

/// `/metrics`; `hook` refreshes on-demand values first.
pub fn metrics_router(metrics: Arc<Metrics>, hook: Option<Arc<dyn ScrapeHook>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(MetricsState { metrics, hook })
}

/// Binds `address` now (a taken port fails the start, not a later request), then serves in
/// a task until `shutdown` resolves.
pub async fn spawn_server(
    address: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    Ok(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }))
}

async fn healthz(State(health): State<Arc<Health>>) -> Response {
    let status = health.status();
    let code = if status.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_string(&status) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => code.into_response(),
    }
}

async fn metrics_text(State(state): State<MetricsState>) -> Response {
    if let Some(hook) = &state.hook {
        hook.before_scrape().await;
    }
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn healthz_fails_when_syncs_stall_and_recovers() {
        let health = Health::new(Duration::from_secs(30));
        assert!(health.status().healthy, "grace period at start");
        assert!(!health.status().synced_once);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!health.status().healthy, "no sync for two periods");
        health.record_failure("ipvs: permission denied".into());
        assert_eq!(
            health.status().last_error.as_deref(),
            Some("ipvs: permission denied")
        );
        health.record_success();
        let status = health.status();
        assert!(status.healthy && status.synced_once && status.last_error.is_none());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(health.status().healthy);
    }
}
