//! Gathers the algorithm's input: the target's pods, their usage, and the connection rates of
//! the Services the Autoscaler names.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::api::{AutoscalerSpec, MetricType};
use crate::autoscaler::quantity::milli_value;
use crate::autoscaler::{Missing, Observed, PodPhase, PodSample, Readiness};
use crate::metrics_source::pod_metrics::pod_usage;
use crate::metrics_source::{RateSnapshot, ServiceKey};

/// Everything the algorithm needs about the pods matched by `selector` in `namespace`.
pub async fn observe(
    client: &Client,
    namespace: &str,
    selector: &str,
    spec: &AutoscalerSpec,
    rates: Option<&RateSnapshot>,
    max_rate_age: Duration,
) -> Result<Observed, kube::Error> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?;
    let uses_resources = spec.metrics.iter().any(|m| m.type_ == MetricType::Resource);
    let pod_usage = if uses_resources {
        pod_usage(client, namespace, selector).await
    } else {
        Err(Missing("no resource metric asks for pod usage".to_owned()))
    };
    let services = spec
        .metrics
        .iter()
        .filter_map(|m| m.connections.as_ref())
        .map(|c| c.service.as_str());
    Ok(Observed {
        pods: pods.iter().map(pod_sample).collect(),
        pod_usage,
        connections: connection_rates(rates, namespace, services, Timestamp::now(), max_rate_age),
    })
}

/// The facts about a pod that the replica calculation uses.
fn pod_sample(pod: &Pod) -> PodSample {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| {
            let last_transition = c.last_transition_time.as_ref()?.0;
            Some(Readiness {
                ready: c.status == "True",
                last_transition,
            })
        });
    PodSample {
        name: pod.name_any(),
        phase: match status.and_then(|s| s.phase.as_deref()) {
            Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Unknown,
        },
        deleting: pod.metadata.deletion_timestamp.is_some(),
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        ready,
        cpu_request_milli: summed_requests(pod, "cpu"),
        memory_request_milli: summed_requests(pod, "memory"),
    }
}

/// The sum of the containers' requests for `resource`; `None` if any container lacks one
/// (HPA cannot compute a utilization for such a pod).
fn summed_requests(pod: &Pod, resource: &str) -> Option<i64> {
    let containers = &pod.spec.as_ref()?.containers;
    containers.iter().try_fold(0_i64, |total, container| {
        let request = container
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get(resource)?;
        Some(total.saturating_add(milli_value(request).ok()?))
    })
}

/// The rate of each named Service from the latest scrape, or why it is missing.
fn connection_rates<'a>(
    snapshot: Option<&RateSnapshot>,
    namespace: &str,
    services: impl Iterator<Item = &'a str>,
    now: Timestamp,
    max_age: Duration,
) -> BTreeMap<String, Result<f64, Missing>> {
    services
        .map(|service| {
            (
                service.to_owned(),
                service_rate(snapshot, namespace, service, now, max_age),
            )
        })
        .collect()
}

fn service_rate(
    snapshot: Option<&RateSnapshot>,
    namespace: &str,
    service: &str,
    now: Timestamp,
    max_age: Duration,
) -> Result<f64, Missing> {
    let snapshot = snapshot
        .ok_or_else(|| Missing("the ferry-proxies have not been scraped yet".to_owned()))?;
    let age = now.duration_since(snapshot.taken_at).as_secs_f64();
    if age > max_age.as_secs_f64() {
        return Err(Missing(format!(
            "the last scrape of the ferry-proxies finished {age:.0}s ago"
        )));
    }
    let rates = snapshot.rates.as_ref().map_err(Clone::clone)?;
    let key = ServiceKey {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
    };
    rates.get(&key).copied().ok_or_else(|| {
        Missing(format!(
            "no ferry-proxy counts connections for Service {namespace}/{service}; does it exist?"
        ))
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;

    use super::*;

    fn snapshot(
        age_seconds: i64,
        rates: Result<BTreeMap<ServiceKey, f64>, Missing>,
    ) -> RateSnapshot {
        RateSnapshot {
            taken_at: Timestamp::UNIX_EPOCH - SignedDuration::from_secs(age_seconds),
            rates,
        }
    }

    fn rate_of(snapshot: Option<&RateSnapshot>, service: &str) -> Result<f64, Missing> {
        service_rate(
            snapshot,
            "default",
            service,
            Timestamp::UNIX_EPOCH,
            Duration::from_secs(6),
        )
    }

    #[test]
    fn rates_come_from_a_fresh_complete_scrape_only() {
        let web = ServiceKey {
            namespace: "default".to_owned(),
            service: "web".to_owned(),
        };
        let fresh = snapshot(1, Ok(BTreeMap::from([(web.clone(), 12.5)])));
        assert_eq!(rate_of(Some(&fresh), "web"), Ok(12.5));
        assert!(rate_of(Some(&fresh), "api").is_err_and(|m| m.0.contains("default/api")));
        assert!(rate_of(None, "web").is_err());
        let stale = snapshot(30, Ok(BTreeMap::from([(web, 12.5)])));
        assert!(rate_of(Some(&stale), "web").is_err_and(|m| m.0.contains("30s ago")));
        let partial = snapshot(1, Err(Missing("proxy node2 unreachable".to_owned())));
        assert_eq!(
            rate_of(Some(&partial), "web"),
            Err(Missing("proxy node2 unreachable".to_owned()))
        );
    }
}
