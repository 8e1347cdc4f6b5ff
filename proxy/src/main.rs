//! ferry-proxy: wires the configuration, logging, the kernel edges of the chosen mode, the
//! cluster source, the sync loop and the HTTP endpoints together.
//!
//! Shutdown (SIGTERM, Ctrl-C) leaves the kernel state in place: the next process adopts it,
//! so established connections survive a restart. Only `cleanupOnExit` (set by the chart's
//! uninstall hook) or `ferry-proxy cleanup` removes it.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use ferry_proxy::announce::{self, L2Settings, Targets};
use ferry_proxy::config::{Announcement, Command, Config, LogFormat, Mode, Source};
use ferry_proxy::conntrack::{ConntrackError, NetlinkConntrack};
use ferry_proxy::dataplane::{
    self, CleanupError, ConnectionStats, Dataplane, IpvsDataplane, IpvsEdges, NftCounters,
    NftablesDataplane, NodeSysctl,
};
use ferry_proxy::health::{self, Health};
use ferry_proxy::healthcheck::HealthCheckServers;
use ferry_proxy::ipvs::{IpvsError, NetlinkIpvs};
use ferry_proxy::link::{Link, LinkError, NetlinkLink};
use ferry_proxy::metrics::{Metrics, ScrapeHook};
use ferry_proxy::nft::{NetlinkDataplane, NftError};
use ferry_proxy::sync::{self, Periods, SharedDesired, SyncContext, SyncKind, Syncer};
use ferry_proxy::sysctl::SysctlError;
use ferry_proxy::watch::{self, IntakeSettings, SharedTracker};
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("conntrack: {0}")]
    Conntrack(#[from] ConntrackError),
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    #[error("{0}")]
    Sysctl(#[from] SysctlError),
    #[error("{0}")]
    Cleanup(#[from] CleanupError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    #[error("the sync failed")]
    SyncFailed,
    #[error(
        "loadBalancerAnnouncement l2 needs the API server (not --from-file): peers meet through Leases"
    )]
    AnnounceNeedsApiServer,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("ferry-proxy: {problem}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let result = match config.command {
        Command::Cleanup => cleanup(&config).await,
        Command::Run => run(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "ferry-proxy stops");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person watching: log files and collectors get plain text.
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// IPVS, or `None` on a kernel without it.
async fn ipvs_if_available() -> Result<Option<NetlinkIpvs>, MainError> {
    match NetlinkIpvs::connect().await {
        Ok(ipvs) => Ok(Some(ipvs)),
        Err(IpvsError::Unavailable) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

async fn cleanup(config: &Config) -> Result<(), MainError> {
    let ipvs = ipvs_if_available().await?;
    let link = NetlinkLink::connect()?;
    let mut nft = NetlinkDataplane::open()?;
    let loopback = config.loopback_node_ports();
    dataplane::cleanup(ipvs.as_ref(), &link, &mut nft, loopback).await?;
    Ok(())
}

async fn run(config: Config) -> Result<(), MainError> {
    info!(mode = ?config.mode, node = %config.node_name, "ferry-proxy starts");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(config.sync_period));
    let settings = IntakeSettings {
        node_name: config.node_name.clone(),
        default_scheduler: config.ipvs.scheduler,
    };
    let tracker = SharedTracker::new(settings, metrics.clone());
    let (stop, stopping) = signal::channel(false);
    tokio::spawn(forward_signals(stop));
    let client = start_source(&config, tracker.clone(), metrics.clone()).await?;
    let (announce_targets, announcer) =
        start_announcer(&config, client, metrics.clone(), &stopping)?;

    let sysctl = NodeSysctl::new(&config.sysctl_root);
    let loopback = config.loopback_node_ports();
    let desired = SharedDesired::default();
    let context = SyncContext {
        tracker,
        desired: desired.clone(),
        model: config.model.clone(),
        node_name: config.node_name.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        health_checks: HealthCheckServers::new(Ipv4Addr::UNSPECIFIED.into(), health.clone()),
        announce_targets,
    };
    let conntrack = Arc::new(NetlinkConntrack::connect()?);
    let nft = NetlinkDataplane::open()?;
    match config.mode {
        Mode::Ipvs => {
            let ipvs = Arc::new(NetlinkIpvs::connect().await?);
            let link = Arc::new(NetlinkLink::connect()?);
            link.ensure_link().await?;
            // After IPVS is connected: its net.ipv4.vs.* keys exist only then.
            dataplane::apply_sysctls(&sysctl, config.mode, config.ipvs.strict_arp, loopback)?;
            let stats = ConnectionStats::new(ipvs.clone(), desired, metrics.clone());
            let edges = IpvsEdges {
                ipvs,
                link,
                conntrack,
                nft,
            };
            let grace = config.ipvs.graceful_termination;
            let cidrs = config.model.cluster_cidrs.clone();
            let dataplane = IpvsDataplane::new(edges, grace, cidrs, metrics.clone());
            let hook: Arc<dyn ScrapeHook> = Arc::new(stats);
            serve(&config, dataplane, context, Some(hook), stopping).await?;
        }
        Mode::Nftables => {
            remove_ipvs_leftovers(loopback).await?;
            dataplane::apply_sysctls(&sysctl, config.mode, false, loopback)?;
            let cidrs = config.model.cluster_cidrs.clone();
            let counters = NftCounters::new(NetlinkDataplane::open()?);
            let stats = ConnectionStats::new(counters, desired, metrics.clone());
            let dataplane = NftablesDataplane::new(nft, conntrack, cidrs, metrics.clone());
            let hook: Arc<dyn ScrapeHook> = Arc::new(stats);
            serve(&config, dataplane, context, Some(hook), stopping).await?;
        }
    }
    if let Some(announcer) = announcer {
        // It releases this node's Lease, so the peers take over at once.
        if let Err(error) = announcer.await {
            error!(%error, "the announcer failed");
        }
    }
    if config.cleanup_on_exit {
        info!("cleanupOnExit: removing Ferry's kernel state");
        cleanup(&config).await?;
    }
    Ok(())
}

/// On a node that ran the IPVS mode (`ferry-ipvs0` exists), its virtual servers and
/// addresses would keep taking traffic next to the nftables table.
async fn remove_ipvs_leftovers(loopback: bool) -> Result<(), MainError> {
    let link = NetlinkLink::connect()?;
    if let Err(LinkError::LinkNotFound) = link.list_addresses().await {
        return Ok(());
    }
    info!("the node ran the IPVS mode: removing its virtual servers and ferry-ipvs0");
    let ipvs = ipvs_if_available().await?;
    dataplane::remove_ipvs_mode(ipvs.as_ref(), &link, loopback).await?;
    Ok(())
}

/// Starts watching; returns the API client, if the source is the API server.
async fn start_source(
    config: &Config,
    tracker: Arc<SharedTracker>,
    metrics: Arc<Metrics>,
) -> Result<Option<kube::Client>, MainError> {
    match &config.source {
        Source::File(path) => {
            tokio::spawn(watch::file::run(path.clone(), tracker, metrics));
            Ok(None)
        }
        Source::ApiServer => {
            let client = kube::Client::try_default()
                .await
                .map_err(MainError::Client)?;
            let node_name = config.node_name.clone();
            let watching = client.clone();
            tokio::spawn(async move { watch::api::run(watching, tracker, &node_name).await });
            Ok(Some(client))
        }
    }
}

type AnnouncerStart = (
    Option<signal::Sender<Option<Targets>>>,
    Option<JoinHandle<()>>,
);

/// In l2 mode, the announcer task and the channel the sync loop feeds it through.
fn start_announcer(
    config: &Config,
    client: Option<kube::Client>,
    metrics: Arc<Metrics>,
    stopping: &signal::Receiver<bool>,
) -> Result<AnnouncerStart, MainError> {
    if config.load_balancer_announcement != Announcement::L2 || config.once {
        return Ok((None, None));
    }
    let client = client.ok_or(MainError::AnnounceNeedsApiServer)?;
    let settings = L2Settings {
        node_name: config.node_name.clone(),
        namespace: config.l2.namespace.clone(),
        interface: config.l2.interface.clone(),
        lease_duration: config.l2.lease_duration,
    };
    info!(namespace = settings.namespace, interface = ?settings.interface, "announcing LoadBalancer IPs (l2)");
    let (targets, receiver) = signal::channel(None);
    let stopped = stopped(stopping.clone());
    let task = tokio::spawn(announce::run(client, settings, receiver, metrics, stopped));
    Ok((Some(targets), Some(task)))
}

/// Runs the HTTP endpoints and the sync loop (or one sync with `--once`) until shutdown.
async fn serve<D: Dataplane>(
    config: &Config,
    dataplane: D,
    context: SyncContext,
    hook: Option<Arc<dyn ScrapeHook>>,
    stopping: signal::Receiver<bool>,
) -> Result<(), MainError> {
    let metrics = health::metrics_router(context.metrics.clone(), hook);
    let healthz = health::health_router(context.health.clone());
    let servers = if config.metrics_bind_address == config.healthz_bind_address {
        let router = metrics.merge(healthz);
        vec![spawn_server(config.metrics_bind_address, router, &stopping).await?]
    } else {
        vec![
            spawn_server(config.metrics_bind_address, metrics, &stopping).await?,
            spawn_server(config.healthz_bind_address, healthz, &stopping).await?,
        ]
    };
    let mut syncer = Syncer::new(dataplane, context);
    let result = if config.once {
        syncer.listed().await;
        syncer
            .sync(SyncKind::Full)
            .await
            .map(drop)
            .map_err(|_| MainError::SyncFailed)
    } else {
        let periods = Periods {
            min_sync_period: config.min_sync_period,
            sync_period: config.sync_period,
        };
        sync::run(syncer, periods, stopped(stopping)).await;
        Ok(())
    };
    for server in servers {
        if config.once {
            server.abort();
        }
        if let Ok(Err(error)) = server.await {
            warn!(%error, "HTTP server failed");
        }
    }
    result
}

async fn spawn_server(
    address: SocketAddr,
    router: axum::Router,
    stopping: &signal::Receiver<bool>,
) -> Result<JoinHandle<std::io::Result<()>>, MainError> {
    let server = health::spawn_server(address, router, stopped(stopping.clone())).await?;
    info!(%address, "serving HTTP");
    Ok(server)
}

/// Turns SIGTERM or Ctrl-C into the stop signal every part waits on.
async fn forward_signals(stop: signal::Sender<bool>) {
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
        () = terminate => info!("SIGTERM: shutting down, leaving the kernel state in place"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down, leaving the kernel state in place"),
    }
    let _ = stop.send(true);
}

/// Resolves once the stop signal is given.
async fn stopped(mut stopping: signal::Receiver<bool>) {
    // An error means the sender is gone, which only happens after it signalled.
    let _ = stopping.wait_for(|stop| *stop).await;
}
