//! Pod CPU and memory usage from the resource metrics API (`metrics.k8s.io/v1beta1`
//! PodMetrics, served by metrics-server). The API is optional in a cluster: when it is not
//! served, usage is reported as missing with a message that says so.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use tracing::debug;

use crate::autoscaler::quantity::milli_value;
use crate::autoscaler::{Missing, PodUsage};

/// The body of a PodMetrics object besides its metadata.
#[derive(Debug, Deserialize)]
struct PodMetricsBody {
    timestamp: Time,
    window: String,
    containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Deserialize)]
struct ContainerMetrics {
    usage: BTreeMap<String, Quantity>,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".to_owned(),
        version: "v1beta1".to_owned(),
        api_version: "metrics.k8s.io/v1beta1".to_owned(),
        kind: "PodMetrics".to_owned(),
        plural: "pods".to_owned(),
    }
}

/// Usage of the pods in `namespace` matched by `selector` (a label selector string, as in a
/// scale's status), by pod name.
pub async fn pod_usage(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<BTreeMap<String, PodUsage>, Missing> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &pod_metrics_resource());
    let list = api.list(&ListParams::default().labels(selector)).await.map_err(|error| match error {
        kube::Error::Api(status) if status.code == 404 => Missing(
            "the resource metrics API (metrics.k8s.io/v1beta1) is not served; is metrics-server installed?".to_owned(),
        ),
        error => Missing(format!("listing PodMetrics failed: {error}")),
    })?;
    let mut usage = BTreeMap::new();
    for object in list {
        let name = object.name_any();
        match read_usage(object.data) {
            Ok(pod_usage) => {
                usage.insert(name, pod_usage);
            }
            // One unreadable sample makes that pod "missing", which the algorithm handles.
            Err(problem) => debug!(pod = name, problem, "skipping unreadable PodMetrics"),
        }
    }
    Ok(usage)
}

fn read_usage(data: serde_json::Value) -> Result<PodUsage, String> {
    let body: PodMetricsBody = serde_json::from_value(data).map_err(|e| e.to_string())?;
    let window = parse_go_duration(&body.window)
        .ok_or_else(|| format!("window {:?} is not a duration", body.window))?;
    let sum = |resource: &str| -> Result<i64, String> {
        body.containers.iter().try_fold(0_i64, |total, container| {
            let milli = container
                .usage
                .get(resource)
                .map(milli_value)
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok(total.saturating_add(milli.unwrap_or(0)))
        })
    };
    Ok(PodUsage {
        cpu_milli: sum("cpu")?,
        memory_milli: sum("memory")?,
        timestamp: body.timestamp.0,
        window,
    })
}

/// Reads a Go duration as metrics-server writes it (`15s`, `1m0.5s`, `250ms`).
fn parse_go_duration(text: &str) -> Option<SignedDuration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = text;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        // Longest unit first so that "ms" is not read as "m".
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| after.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        seconds += value * scale;
        rest = &after[unit.len()..];
    }
    SignedDuration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_go_durations() {
        let cases = [
            ("15s", 15_000),
            ("1m0.5s", 60_500),
            ("250ms", 250),
            ("1h", 3_600_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_go_duration(text),
                Some(SignedDuration::from_millis(millis)),
                "{text}"
            );
        }
        for text in ["", "15", "s", "1x"] {
            assert_eq!(parse_go_duration(text), None, "{text}");
        }
    }

    #[test]
    fn sums_container_usage() {
        let data = json!({
            "timestamp": "2025-06-15T10:00:00Z",
            "window": "10.5s",
            "containers": [
                { "name": "app", "usage": { "cpu": "250m", "memory": "64Mi" } },
                { "name": "sidecar", "usage": { "cpu": "1500000n", "memory": "1Mi" } },
            ],
        });
        let usage = read_usage(data).expect("readable");
        assert_eq!(usage.cpu_milli, 252);
        assert_eq!(usage.memory_milli, 65 * 1024 * 1024 * 1000);
        assert_eq!(usage.window, SignedDuration::from_millis(10_500));
    }
}
