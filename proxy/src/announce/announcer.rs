//! The announcer task: watches Nodes and the proxies' Leases, elects on every change (and as
//! heartbeats expire), publishes this node's addresses to the responder and the metrics, and
//! announces takeovers.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::election::{Targets, elect};
use super::lease::{self, Heartbeat, LEASE_LABEL};
use super::link::{self, Link};
use super::peers::{EXCLUDE_LABEL, NodeStatus, Ownership, Peers};
use crate::metrics::Metrics;
use crate::model::NodeAddressKind;
use crate::model::input::node_info;

/// How often heartbeat expiries are checked (and a missing responder reopened) without events.
const TICK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Settings {
    pub node_name: String,
    /// Where the Leases live (the proxy's own namespace).
    pub namespace: String,
    /// The interface to answer on; `None` for the one holding the node's InternalIP.
    pub interface: Option<String>,
    pub lease_duration: Duration,
}

/// Runs until `stopping` resolves; then releases this node's Lease before returning.
pub async fn run(
    client: Client,
    settings: L2Settings,
    targets: watch::Receiver<Option<Targets>>,
    metrics: Arc<Metrics>,
    stopping: impl Future<Output = ()> + Send + 'static,
) {
    let heartbeat = Heartbeat::new(
        client.clone(),
        &settings.namespace,
        &settings.node_name,
        settings.lease_duration,
    );
    let (stop, stopped) = watch::channel(false);
    let mut synced = targets.clone();
    let (answering, mut can_answer) = watch::channel(false);
    let beating = tokio::spawn(heartbeat.run(
        // A candidate only once it serves what it would announce and can answer for it:
        // otherwise a restarting proxy would win its addresses back before its first sync or
        // before its socket is open, and leave them unanswered meanwhile.
        async move {
            let _ = synced.wait_for(Option::is_some).await;
            let _ = can_answer.wait_for(|open| *open).await;
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default());
    let leases = watcher(
        Api::<Lease>::namespaced(client, &settings.namespace),
        watcher::Config::default().labels(LEASE_LABEL),
    );
    let mut announcer = Announcer::new(settings, metrics, answering);
    announcer.watch(nodes, leases, targets, stopping).await;
    // Silent first, then released: peers take over only once this node stopped answering.
    announcer.silence();
    let _ = stop.send(true);
    if let Err(error) = beating.await {
        error!(%error, "the heartbeat task failed");
    }
}

struct Announcer {
    settings: L2Settings,
    metrics: Arc<Metrics>,
    peers: Peers,
    ownership: Ownership,
    targets: Targets,
    /// Re-lists in progress: the names seen so far.
    relisting_nodes: Option<BTreeSet<String>>,
    relisting_leases: Option<BTreeSet<String>>,
    nodes_listed: bool,
    leases_listed: bool,
    /// What the last election ran on, to skip identical ones.
    last_inputs: Option<(BTreeSet<String>, Targets)>,
    node_addresses: Vec<IpAddr>,
    announced: watch::Sender<BTreeSet<IpAddr>>,
    link: Option<Link>,
    link_problem: Option<String>,
    /// Whether the responder's socket is open (the heartbeat waits for it).
    answering: watch::Sender<bool>,
}

impl Announcer {
    fn new(settings: L2Settings, metrics: Arc<Metrics>, answering: watch::Sender<bool>) -> Self {
        Self {
            settings,
            metrics,
            peers: Peers::default(),
            ownership: Ownership::default(),
            targets: Targets::new(),
            relisting_nodes: None,
            relisting_leases: None,
            nodes_listed: false,
            leases_listed: false,
            last_inputs: None,
            node_addresses: Vec::new(),
            announced: watch::Sender::new(BTreeSet::new()),
            link: None,
            link_problem: None,
            answering,
        }
    }

    async fn watch(
        &mut self,
        nodes: impl Stream<Item = watcher::Result<Event<Node>>> + Send,
        leases: impl Stream<Item = watcher::Result<Event<Lease>>> + Send,
        mut targets: watch::Receiver<Option<Targets>>,
        stopping: impl Future<Output = ()>,
    ) {
        let nodes = nodes.default_backoff();
        let leases = leases.default_backoff();
        futures::pin_mut!(nodes, leases, stopping);
        let mut ticks = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                Some(event) = nodes.next() => match event {
                    Ok(event) => self.node_event(event),
                    Err(error) => warn!(%error, "Node watch failed; retrying"),
                },
                Some(event) = leases.next() => match event {
                    Ok(event) => self.lease_event(event),
                    Err(error) => warn!(%error, "Lease watch failed; retrying"),
                },
                changed = targets.changed() => match changed {
                    Ok(()) => self.targets = targets.borrow_and_update().clone().unwrap_or_default(),
                    // The sync loop is gone: the proxy is stopping.
                    Err(_) => return,
                },
                _ = ticks.tick() => {}
                () = &mut stopping => return,
            }
            self.keep_link();
            self.elect(Instant::now());
        }
    }

    fn node_event(&mut self, event: Event<Node>) {
        match event {
            Event::Init => self.relisting_nodes = Some(BTreeSet::new()),
            Event::InitApply(node) => {
                if let (Some(seen), Some(name)) = (&mut self.relisting_nodes, &node.metadata.name) {
                    seen.insert(name.clone());
                }
                self.apply_node(&node);
            }
            Event::InitDone => {
                if let Some(seen) = self.relisting_nodes.take() {
                    self.peers.retain_nodes(&seen);
                }
                self.nodes_listed = true;
            }
            Event::Apply(node) => self.apply_node(&node),
            Event::Delete(node) => {
                if let Some(name) = &node.metadata.name {
                    self.peers.remove_node(name);
                }
            }
        }
    }

    fn apply_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        if name == self.settings.node_name
            && let Ok(info) = node_info(node)
        {
            let internal = info.value.addresses.iter();
            let internal = internal.filter(|a| a.kind == NodeAddressKind::InternalIp);
            self.node_addresses = internal.map(|a| a.address).collect();
        }
        self.peers.set_node(name, node_status(node));
    }

    fn lease_event(&mut self, event: Event<Lease>) {
        let now = Instant::now();
        match event {
            Event::Init => self.relisting_leases = Some(BTreeSet::new()),
            Event::InitApply(lease) => {
                if let Some(beat) = lease::beat_of(&lease) {
                    if let Some(seen) = &mut self.relisting_leases {
                        seen.insert(beat.node.clone());
                    }
                    self.peers
                        .saw_heartbeat(beat.node, beat.renewed, beat.valid_for, now);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relisting_leases.take() {
                    self.peers.retain_heartbeats(&seen);
                }
                self.leases_listed = true;
            }
            Event::Apply(lease) => {
                if let Some(beat) = lease::beat_of(&lease) {
                    self.peers
                        .saw_heartbeat(beat.node, beat.renewed, beat.valid_for, now);
                }
            }
            Event::Delete(lease) => {
                if let Some(beat) = lease::beat_of(&lease) {
                    self.peers.remove_heartbeat(&beat.node);
                }
            }
        }
    }

    /// Elects, once both lists are complete (before, this node would see itself alone and
    /// claim every address), and only when the inputs changed. A proxy that does not see its
    /// own renewals has lost the API server, not its peers: it keeps what it announces rather
    /// than expire everyone (every node would fall silent during a control-plane outage).
    fn elect(&mut self, now: Instant) {
        if !self.nodes_listed || !self.leases_listed {
            return;
        }
        if !self.peers.heartbeat_live(&self.settings.node_name, now) {
            return;
        }
        let candidates = self.peers.candidates(now);
        let inputs = (candidates, self.targets.clone());
        if self.last_inputs.as_ref() == Some(&inputs) {
            return;
        }
        let winners = elect(&inputs.1, &inputs.0);
        self.last_inputs = Some(inputs);
        let node = &self.settings.node_name;
        let change = self.ownership.update(node, winners);
        if change.started.is_empty() && change.stopped.is_empty() {
            return;
        }
        let mine = self.ownership.of(node);
        info!(started = ?change.started, stopped = ?change.stopped, announced = mine.len(), "L2 announcements changed");
        self.announced.send_replace(mine.clone());
        self.metrics.set_l2_announced(&mine);
        self.metrics.count_l2_failovers(change.taken_over.len());
        if let Some(link) = &self.link {
            link.announce_takeovers(&change.started, &self.announced);
        }
    }

    /// Opens the interface once it is known, and again if the responder stopped.
    fn keep_link(&mut self) {
        if self
            .link
            .as_ref()
            .is_some_and(|link| link.responder.is_finished())
        {
            self.link = None;
        }
        if self.link.is_some() {
            return;
        }
        let configured = self.settings.interface.as_deref();
        if configured.is_none() && self.node_addresses.is_empty() {
            return;
        }
        match link::open(configured, &self.node_addresses, self.announced.subscribe()) {
            Ok(link) => {
                info!(
                    interface = link.interface.name,
                    index = link.interface.index,
                    "answering ARP and NDP"
                );
                let mine: Vec<IpAddr> = self.announced.borrow().iter().copied().collect();
                link.announce_takeovers(&mine, &self.announced);
                self.link = Some(link);
                self.answering.send_replace(true);
                self.link_problem = None;
            }
            Err(problem) => {
                if self.link_problem.as_ref() != Some(&problem) {
                    error!(%problem, "cannot answer for LoadBalancer IPs; retrying");
                    self.link_problem = Some(problem);
                }
            }
        }
    }

    /// Stops answering: peers may take over from here.
    fn silence(&mut self) {
        self.announced.send_replace(BTreeSet::new());
        self.metrics.set_l2_announced(&BTreeSet::new());
        if let Some(link) = self.link.take() {
            link.responder.abort();
        }
    }
}

/// Whether a Node may announce: Ready, and not excluded from load balancers.
pub fn node_status(node: &Node) -> NodeStatus {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let ready = conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let labels = node.metadata.labels.as_ref();
    NodeStatus {
        ready,
        excluded: labels.is_some_and(|l| l.contains_key(EXCLUDE_LABEL)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus as ApiNodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use k8s_openapi::jiff::Timestamp;

    use super::super::election::Eligible;

    use super::*;

    fn node(ready: &str, labels: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-a".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|l| ((*l).to_owned(), String::new()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(ApiNodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                ..ApiNodeStatus::default()
            }),
        }
    }

    #[test]
    fn a_node_is_eligible_when_ready_and_not_excluded() {
        let eligible = NodeStatus {
            ready: true,
            excluded: false,
        };
        assert_eq!(node_status(&node("True", &[])), eligible);
        assert!(!node_status(&node("Unknown", &[])).ready);
        assert!(node_status(&node("True", &[EXCLUDE_LABEL])).excluded);
        assert!(!node_status(&Node::default()).ready);
    }

    fn announcer() -> Announcer {
        let settings = L2Settings {
            node_name: "node-a".into(),
            namespace: "kube-system".into(),
            interface: None,
            lease_duration: Duration::from_secs(6),
        };
        let (answering, _) = watch::channel(false);
        let mut announcer = Announcer::new(settings, Arc::new(Metrics::new()), answering);
        announcer.targets = Targets::from([("192.0.2.1".parse().unwrap(), Eligible::AnyNode)]);
        announcer.node_event(Event::Apply(node("True", &[])));
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some("node-a".into()),
                lease_duration_seconds: Some(6),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        announcer.lease_event(Event::Apply(lease));
        announcer
    }

    #[test]
    fn an_announcer_that_stops_seeing_its_own_renewals_keeps_its_addresses() {
        let mut announcer = announcer();
        announcer.node_event(Event::InitDone);
        announcer.lease_event(Event::InitDone);
        announcer.elect(Instant::now());
        let expected: BTreeSet<IpAddr> = ["192.0.2.1".parse().unwrap()].into();
        assert_eq!(*announcer.announced.borrow(), expected);
        // No renewal seen for longer than the Lease lasts: the API server is out of reach.
        announcer.elect(Instant::now() + Duration::from_secs(60));
        assert_eq!(*announcer.announced.borrow(), expected);
    }

    #[test]
    fn no_election_before_both_lists_are_complete() {
        let mut announcer = announcer();
        announcer.elect(Instant::now());
        assert!(
            announcer.announced.borrow().is_empty(),
            "nothing before the lists"
        );
        announcer.node_event(Event::InitDone);
        announcer.lease_event(Event::InitDone);
        announcer.elect(Instant::now());
        let expected: BTreeSet<IpAddr> = ["192.0.2.1".parse().unwrap()].into();
        assert_eq!(*announcer.announced.borrow(), expected);
        announcer.silence();
        assert!(announcer.announced.borrow().is_empty());
    }
}
