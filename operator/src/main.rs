//! ferry-operator: wires configuration, logging, the HTTP endpoints, leader election and the
//! controllers together. The controllers run only while this replica holds the Lease; losing
//! it ends the process (a fresh start is the only safe way back to standby).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ferry_operator::config::{Config, ControllerName, LogFormat};
use ferry_operator::controllers::{app, autoscaler, lbpool};
use ferry_operator::http::{self, Health};
use ferry_operator::leader::Elector;
use ferry_operator::metrics::Metrics;
use kube::runtime::events::Reporter;
use tokio::sync::watch;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot reach the leader Lease: {0}")]
    Lease(#[source] kube::Error),
    #[error("lost the leader Lease")]
    LeaseLost,
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

/// The validated settings of every controller.
struct Controllers {
    app: app::Settings,
    autoscaler: autoscaler::Settings,
    lbpool: lbpool::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let controllers = match settings(&config) {
        Ok(controllers) => controllers,
        Err(problem) => {
            eprintln!("ferry-operator: {problem}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match run(config, controllers).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "ferry-operator stops");
            ExitCode::FAILURE
        }
    }
}

fn settings(config: &Config) -> Result<Controllers, String> {
    config.validate()?;
    let reporter = Reporter {
        controller: app::FIELD_MANAGER.into(),
        instance: Some(config.identity()),
    };
    let autoscaler = config
        .autoscaler
        .clone()
        .into_settings(reporter.clone())
        .map_err(|e| e.to_string())?;
    let lbpool = lbpool::Settings {
        reporter: reporter.clone(),
    };
    let app = app::Settings {
        concurrency: config.app_concurrency,
        namespace: config.watch_namespace.clone(),
        reporter,
    };
    Ok(Controllers {
        app,
        autoscaler,
        lbpool,
    })
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: Config, controllers: Controllers) -> Result<(), MainError> {
    let client = kube::Client::try_default()
        .await
        .map_err(MainError::Client)?;
    let mut metrics = Metrics::new();
    let decisions = autoscaler::DecisionMetrics::register(metrics.registry());
    let metrics = Arc::new(metrics);
    let health = Arc::new(Health::default());
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(forward_signals(stop));

    let router = http::router(health.clone(), metrics.clone());
    let server = tokio::spawn(http::serve(
        config.metrics_bind_address,
        router,
        stopped(stopping.clone()),
    ));

    let running = {
        let (client, metrics, stopping) = (client.clone(), metrics.clone(), stopping.clone());
        let (run_app, run_autoscaler, run_lbpool) = (
            config.runs(ControllerName::App),
            config.runs(ControllerName::Autoscaler),
            config.runs(ControllerName::Lbpool),
        );
        async move {
            let app = async {
                if run_app {
                    let shutdown = stopped(stopping.clone());
                    app::run(client.clone(), metrics.clone(), controllers.app, shutdown).await;
                }
            };
            let autoscaler = async {
                if run_autoscaler {
                    let shutdown = stopped(stopping.clone());
                    let settings = controllers.autoscaler;
                    autoscaler::run(
                        client.clone(),
                        metrics.clone(),
                        decisions,
                        settings,
                        shutdown,
                    )
                    .await;
                }
            };
            let lbpool = async {
                if run_lbpool {
                    let shutdown = stopped(stopping.clone());
                    lbpool::run(
                        client.clone(),
                        metrics.clone(),
                        controllers.lbpool,
                        shutdown,
                    )
                    .await;
                }
            };
            tokio::join!(app, autoscaler, lbpool);
            info!("controllers stopped");
        }
    };

    if !config.leader_elect {
        health.set_ready();
        running.await;
        return finish(server).await;
    }
    let elector = Elector::new(client, config.lease());
    tokio::select! {
        acquired = elector.acquire(|| health.set_ready()) => acquired.map_err(MainError::Lease)?,
        () = stopped(stopping) => return finish(server).await,
    }
    metrics.set_leader(true);
    tokio::select! {
        () = running => {
            if let Err(error) = elector.release().await {
                error!(%error, "cannot release the lease; standbys take over when it expires");
            }
            metrics.set_leader(false);
            finish(server).await
        }
        () = elector.hold() => {
            metrics.set_leader(false);
            Err(MainError::LeaseLost)
        }
    }
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), MainError> {
    match server.await {
        Ok(result) => Ok(result?),
        // The server task panicked or was cancelled: nothing left to shut down.
        Err(_) => Ok(()),
    }
}

/// Turns SIGTERM or Ctrl-C into the stop signal every part waits on.
async fn forward_signals(stop: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
    }
    let _ = stop.send(true);
}

/// Resolves once the stop signal is given.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it signalled.
    let _ = stopping.wait_for(|stop| *stop).await;
}
