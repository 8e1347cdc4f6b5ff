//! Fixtures for the sync loop tests: API objects that read like the cluster, and a harness
//! that runs the real loop (watch intake → tracker → sync → dataplane) against the in-memory
//! kernel fakes, on Tokio's paused clock so periods pass instantly and deterministically.
//!
//! Address plan: Services 10.96.0.0/12, pods 10.244.0.0/16 (this node's 10.244.1.0/24), this
//! node 192.168.50.10, LoadBalancer IPs 203.0.113.0/24, clients 192.168.60.0/24.

#![allow(dead_code)] // Each test crate uses a different part of the fixtures.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ferry_proxy::announce::Targets;
use ferry_proxy::conntrack::FakeConntrack;
use ferry_proxy::dataplane::{Dataplane, IpvsDataplane, IpvsEdges, NftablesDataplane};
use ferry_proxy::health::Health;
use ferry_proxy::healthcheck::HealthCheckServers;
use ferry_proxy::ipvs::FakeIpvs;
use ferry_proxy::link::FakeLink;
use ferry_proxy::metrics::Metrics;
use ferry_proxy::model::ModelConfig;
use ferry_proxy::model::types::{Protocol, RealServerKey, VirtualServerKey};
use ferry_proxy::nft::fake::FakeDataplane;
use ferry_proxy::nft::{Batch, NftDataplane, NftError, TableSnapshot};
use ferry_proxy::sync::{self, Periods, SharedDesired, SyncContext, Syncer};
use ferry_proxy::watch::{IntakeSettings, SharedTracker};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const NODE: &str = "node-a";
pub const NODE_IP: &str = "192.168.50.10";
pub const MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);
pub const SYNC_PERIOD: Duration = Duration::from_secs(30);
pub const GRACE_PERIOD: Duration = Duration::from_secs(30);

#[track_caller]
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

pub fn vs(protocol: Protocol, address: &str, port: u16) -> VirtualServerKey {
    VirtualServerKey {
        protocol,
        address: ip(address),
        port,
    }
}

pub fn rs(address: &str, port: u16) -> RealServerKey {
    RealServerKey {
        address: ip(address),
        port,
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn protocol_name(protocol: Protocol) -> String {
    protocol.to_string()
}

/// A ClusterIP Service with one named port; `build` changes the spec.
pub fn service(
    name: &str,
    cluster_ip: &str,
    port: (Protocol, u16),
    build: impl FnOnce(&mut ServiceSpec),
) -> Service {
    let mut spec = ServiceSpec {
        cluster_ip: Some(cluster_ip.into()),
        cluster_ips: Some(vec![cluster_ip.into()]),
        ports: Some(vec![ServicePort {
            name: Some("p".into()),
            protocol: Some(protocol_name(port.0)),
            port: i32::from(port.1),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    };
    build(&mut spec);
    Service {
        metadata: meta("default", name),
        spec: Some(spec),
        status: None,
    }
}

/// The only slice of Service `service`, with ready endpoints on this node listening on
/// `port`.
pub fn slice(service: &str, port: (Protocol, u16), addresses: &[&str]) -> EndpointSlice {
    let mut metadata = meta("default", &format!("{service}-1"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        service.to_owned(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("p".into()),
            protocol: Some(protocol_name(port.0)),
            port: Some(i32::from(port.1)),
            ..EndpointPort::default()
        }]),
        endpoints: addresses
            .iter()
            .map(|address| Endpoint {
                addresses: vec![(*address).into()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(NODE.into()),
                ..Endpoint::default()
            })
            .collect(),
    }
}

/// The slice with its `last-change-trigger-time` set to `at` (RFC 3339).
pub fn triggered(mut slice: EndpointSlice, at: &str) -> EndpointSlice {
    slice.metadata.annotations = Some(BTreeMap::from([(
        "endpoints.kubernetes.io/last-change-trigger-time".to_owned(),
        at.to_owned(),
    )]));
    slice
}

pub fn node() -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(NODE.into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: NODE_IP.into(),
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// An nftables fake the test keeps a handle on while the loop owns the dataplane.
#[derive(Clone, Default)]
pub struct SharedNft(Arc<Mutex<FakeDataplane>>);

impl SharedNft {
    pub fn lock(&self) -> MutexGuard<'_, FakeDataplane> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Someone else's `nft delete table inet ferry`.
    pub fn delete_table(&self) {
        self.lock()
            .apply(&Batch::remove_table())
            .expect("table removal");
    }

    pub fn has_table(&self) -> bool {
        self.lock().table().is_some()
    }

    pub fn batches(&self) -> usize {
        self.lock().applied.len()
    }
}

impl NftDataplane for SharedNft {
    fn apply(&mut self, batch: &Batch) -> Result<(), NftError> {
        self.lock().apply(batch)
    }

    fn read_table(&mut self) -> Result<Option<TableSnapshot>, NftError> {
        self.lock().read_table()
    }
}

/// The kernel fakes, shared with the running loop.
#[derive(Clone, Default)]
pub struct Kernel {
    pub ipvs: Arc<FakeIpvs>,
    pub link: Arc<FakeLink>,
    pub conntrack: Arc<FakeConntrack>,
    pub nft: SharedNft,
}

/// The loop under test, with the cluster's side of it.
pub struct Proxy {
    pub kernel: Kernel,
    pub tracker: Arc<SharedTracker>,
    pub metrics: Arc<Metrics>,
    pub desired: SharedDesired,
    /// The LoadBalancer IPs the loop publishes for the l2 announcer.
    pub announce_targets: watch::Receiver<Option<Targets>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub fn model_config() -> ModelConfig {
    ModelConfig {
        node_port_addresses: None,
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("test CIDR")],
        masquerade_all: false,
    }
}

impl Proxy {
    /// The IPVS-mode loop over `kernel`, as a proxy process starting on it.
    pub fn ipvs(kernel: Kernel) -> Self {
        let metrics = Arc::new(Metrics::new());
        let edges = IpvsEdges {
            ipvs: kernel.ipvs.clone(),
            link: kernel.link.clone(),
            conntrack: kernel.conntrack.clone(),
            nft: kernel.nft.clone(),
        };
        let cidrs = model_config().cluster_cidrs;
        let dataplane = IpvsDataplane::new(edges, GRACE_PERIOD, cidrs, metrics.clone());
        Self::start(kernel, dataplane, metrics)
    }

    /// The nftables-mode loop over `kernel`.
    pub fn nftables(kernel: Kernel) -> Self {
        let metrics = Arc::new(Metrics::new());
        let cidrs = model_config().cluster_cidrs;
        let dataplane = NftablesDataplane::new(
            kernel.nft.clone(),
            kernel.conntrack.clone(),
            cidrs,
            metrics.clone(),
        );
        Self::start(kernel, dataplane, metrics)
    }

    fn start<D: Dataplane + 'static>(kernel: Kernel, dataplane: D, metrics: Arc<Metrics>) -> Self {
        let settings = IntakeSettings {
            node_name: NODE.into(),
            default_scheduler: Default::default(),
        };
        let tracker = SharedTracker::new(settings, metrics.clone());
        let health = Arc::new(Health::new(SYNC_PERIOD));
        let desired = SharedDesired::default();
        let (announce_sender, announce_targets) = watch::channel(None);
        let context = SyncContext {
            tracker: tracker.clone(),
            desired: desired.clone(),
            model: model_config(),
            node_name: NODE.into(),
            metrics: metrics.clone(),
            health: health.clone(),
            health_checks: HealthCheckServers::new(ip("127.0.0.1"), health),
            announce_targets: Some(announce_sender),
        };
        let periods = Periods {
            min_sync_period: MIN_SYNC_PERIOD,
            sync_period: SYNC_PERIOD,
        };
        let (stop, stopped) = oneshot::channel();
        let syncer = Syncer::new(dataplane, context);
        let task = tokio::spawn(sync::run(syncer, periods, async {
            let _ = stopped.await;
        }));
        Self {
            kernel,
            tracker,
            metrics,
            desired,
            announce_targets,
            stop: Some(stop),
            task,
        }
    }

    /// The first list of every kind, as the watchers deliver it.
    pub fn list(&self, services: Vec<Service>, slices: Vec<EndpointSlice>) {
        relist(services, |e| self.tracker.apply_service(e));
        relist(slices, |e| self.tracker.apply_slice(e));
        relist(vec![node()], |e| self.tracker.apply_node(e));
    }

    pub fn apply_service(&self, service: Service) {
        self.tracker.apply_service(Event::Apply(service));
    }

    pub fn apply_slice(&self, slice: EndpointSlice) {
        self.tracker.apply_slice(Event::Apply(slice));
    }

    pub fn delete_slice(&self, slice: EndpointSlice) {
        self.tracker.apply_slice(Event::Delete(slice));
    }

    /// Stops the loop, as SIGTERM would, and waits for it; the kernel stays as it is.
    pub async fn stop(mut self) -> Kernel {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("sync loop");
        self.kernel.clone()
    }

    /// A metric's value in the exposition, 0 when the series does not exist.
    #[track_caller]
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.encode().expect("metrics encode");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Kernel operations applied so far, of every kind.
    pub fn ops_applied(&self) -> f64 {
        let text = self.metrics.encode().expect("metrics encode");
        text.lines()
            .filter(|line| line.starts_with("ferry_proxy_ops_applied_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Syncs of `kind` (full, partial) that have run.
    pub fn syncs(&self, kind: &str) -> f64 {
        self.metric(&format!(
            "ferry_proxy_sync_duration_seconds_count{{kind=\"{kind}\"}}"
        ))
    }
}

pub fn relist<K>(objects: Vec<K>, apply: impl Fn(Event<K>)) {
    apply(Event::Init);
    for object in objects {
        apply(Event::InitApply(object));
    }
    apply(Event::InitDone);
}

/// Lets the loop run for `duration` of the paused clock.
pub async fn wait(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Time enough for a change to be synced (past the minimum sync period).
pub async fn settle() {
    wait(MIN_SYNC_PERIOD + Duration::from_millis(100)).await;
}
