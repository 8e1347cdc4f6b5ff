//! Scrapes every ferry-proxy's metrics endpoint on a fixed interval and publishes the
//! resulting connection rates on a watch channel, so reconciles read the latest rates
//! without waiting on the network.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, debug, info_span};

use super::connection_rates::{ProxySample, RateSnapshot, RateTracker, Round};
use super::prometheus_text::{ParseError, connection_counters};
use crate::autoscaler::Missing;

/// A metrics page larger than this is not a ferry-proxy's.
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Where the proxies' metrics endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEndpoints {
    /// Pods matching a label selector in a namespace, at their pod IPs (the proxy runs on the
    /// host network, so that is the node's address).
    Pods { namespace: String, selector: String },
    /// Every node's InternalIP.
    Nodes,
}

/// How the proxies are scraped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeSettings {
    pub endpoints: ProxyEndpoints,
    pub port: u16,
    pub interval: Duration,
    /// Per request; a proxy slower than this counts as unreachable for the round.
    pub timeout: Duration,
}

/// Why one proxy could not be read.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("has no address yet")]
    NoAddress,
    #[error("GET {0} timed out")]
    Timeout(String),
    #[error("GET {0}: {1}")]
    Request(String, hyper_util::client::legacy::Error),
    #[error("GET {0} answered {1}")]
    Status(String, hyper::StatusCode),
    #[error("reading {0}: {1}")]
    Body(String, Box<dyn std::error::Error + Send + Sync>),
    #[error("{0} is not a Prometheus text page: {1}")]
    Parse(String, ParseError),
}

type Http = HttpClient<HttpConnector, Empty<Bytes>>;

/// Starts scraping; the task ends when every receiver is dropped. Before the first round the
/// channel holds `None`.
pub fn spawn(client: Client, settings: ScrapeSettings) -> watch::Receiver<Option<RateSnapshot>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(scrape_forever(client, settings, sender));
    receiver
}

async fn scrape_forever(
    client: Client,
    settings: ScrapeSettings,
    sender: watch::Sender<Option<RateSnapshot>>,
) {
    let http: Http = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut tracker = RateTracker::default();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while !sender.is_closed() {
        ticker.tick().await;
        let round = scrape_round(&client, &http, &settings)
            .instrument(info_span!("scrape_proxies"))
            .await;
        let snapshot = tracker.observe(round, Timestamp::now());
        if let Err(missing) = &snapshot.rates {
            debug!(
                reason = missing.0,
                "connection rates unavailable this round"
            );
        }
        sender.send_replace(Some(snapshot));
    }
}

async fn scrape_round(
    client: &Client,
    http: &Http,
    settings: &ScrapeSettings,
) -> Result<Round, Missing> {
    let endpoints = discover(client, &settings.endpoints).await?;
    let scrapes = endpoints.into_iter().map(|(proxy, address)| async move {
        let sample = match address {
            Some(host) => scrape(http, &metrics_url(&host, settings.port), settings.timeout).await,
            None => Err(ScrapeError::NoAddress),
        };
        (proxy, sample.map_err(|error| error.to_string()))
    });
    Ok(futures::future::join_all(scrapes)
        .await
        .into_iter()
        .collect())
}

/// The proxies by name, each with its address if it has one.
async fn discover(
    client: &Client,
    endpoints: &ProxyEndpoints,
) -> Result<BTreeMap<String, Option<String>>, Missing> {
    match endpoints {
        ProxyEndpoints::Pods {
            namespace,
            selector,
        } => {
            let pods = Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|error| {
                    Missing(format!(
                        "listing ferry-proxy pods ({selector} in {namespace}) failed: {error}"
                    ))
                })?;
            Ok(pods
                .into_iter()
                .filter(|pod| pod.metadata.deletion_timestamp.is_none())
                .map(|pod| (pod.name_any(), pod.status.and_then(|s| s.pod_ip)))
                .collect())
        }
        ProxyEndpoints::Nodes => {
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|error| Missing(format!("listing nodes failed: {error}")))?;
            Ok(nodes
                .into_iter()
                .map(|node| (node.name_any(), internal_ip(&node)))
                .collect())
        }
    }
}

fn internal_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

fn metrics_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("http://[{host}]:{port}/metrics")
    } else {
        format!("http://{host}:{port}/metrics")
    }
}

async fn scrape(http: &Http, url: &str, timeout: Duration) -> Result<ProxySample, ScrapeError> {
    let fetch = async {
        let uri = url.parse().map_err(|_| ScrapeError::NoAddress)?;
        let response = http
            .get(uri)
            .await
            .map_err(|e| ScrapeError::Request(url.to_owned(), e))?;
        if !response.status().is_success() {
            return Err(ScrapeError::Status(url.to_owned(), response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Body(url.to_owned(), e))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    let page = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ScrapeError::Timeout(url.to_owned()))??;
    let counters = connection_counters(&page).map_err(|e| ScrapeError::Parse(url.to_owned(), e))?;
    Ok(ProxySample {
        at: Timestamp::now(),
        counters,
    })
}
