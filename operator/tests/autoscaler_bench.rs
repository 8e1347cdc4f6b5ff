//! Benchmarks of the Autoscaler on the local cluster (with metrics-server and ferry-proxy in
//! nftables mode); they print figures and assert nothing about speed:
//!
//! ```sh
//! cargo test --release -p ferry-operator --test autoscaler_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each measures the time from a load step to the scale decision (the target's desired
//! replicas changing), once the autoscaler has read the idle metric, so that first reads are
//! not counted:
//! - CPU: the pod of a one-replica App starts burning a core; at the same moment, so does the
//!   pod of a Deployment of the same pods with a HorizontalPodAutoscaler of the same target
//!   (kube-controller-manager's, for comparison);
//! - connections: a client starts opening connections to a Service of a one-replica App.
//!
//! `FERRY_BENCH_ROUNDS` (default 3) repeats each; the CPU rounds start the step at evenly
//! spread moments of the controllers' 15-second sync period.

// The harness serves the cluster tests too; the benchmarks use only part of it.
#[allow(dead_code)]
#[path = "autoscaler_cluster/harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::time::{Instant, sleep};

/// How often the benchmark looks at the targets' replicas: its resolution.
const POLL: Duration = Duration::from_millis(200);
const DECISION_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the Autoscaler and kube-controller-manager's HPA controller evaluate CPU.
const RESOURCE_SYNC_PERIOD: Duration = Duration::from_secs(15);

fn rounds() -> usize {
    std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test]
#[ignore = "needs the local cluster with metrics-server"]
async fn cpu_load_step_to_scale_decision_autoscaler_versus_hpa() {
    for round in 1..=rounds() {
        in_namespace(&format!("fbench-cpu{round}"), |client, ns| async move {
            create_web_app(&client, &ns, "app-burner", "100m").await;
            create_autoscaler(&client, &ns, app_ref("app-burner"), cpu(50), None).await;
            create_deployment(&client, &ns, "deploy-burner", "100m").await;
            create_hpa(&client, &ns, "deploy-burner").await;
            wait_for_ready_pods(&client, &ns, "app-burner", 1, Duration::from_secs(120)).await;
            wait_for_ready_pods(&client, &ns, "deploy-burner", 1, Duration::from_secs(120)).await;
            wait_until_metrics_read(&client, &ns).await;
            // Both controllers just read the idle value and sync every 15 s: a step right now
            // would always wait one whole period. The rounds spread the step over the period.
            sleep(RESOURCE_SYNC_PERIOD.mul_f64((round - 1) as f64 / rounds() as f64)).await;

            let started = Instant::now();
            let load = futures::future::join(
                burn_cpu(client.clone(), ns.clone(), "app-burner"),
                burn_cpu(client.clone(), ns.clone(), "deploy-burner"),
            );
            let decisions = futures::future::join(
                time_until_scaled(|| app_replicas(&client, &ns, "app-burner"), started),
                time_until_scaled(|| deployment_replicas(&client, &ns, "deploy-burner"), started),
            );
            tokio::select! {
                (ferry, hpa) = decisions => println!(
                    "CPU round {round}: load step -> scale decision: Ferry Autoscaler {}, HorizontalPodAutoscaler {}",
                    seconds(ferry),
                    seconds(hpa),
                ),
                _ = load => panic!("the load stopped"),
            }
        })
        .await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster with ferry-proxy"]
async fn connection_load_step_to_scale_decision() {
    for round in 1..=rounds() {
        in_namespace(&format!("fbench-conn{round}"), |client, ns| async move {
            create_web_app(&client, &ns, "web", "10m").await;
            create_service(&client, &ns, "web").await;
            let metric = json!({ "type": "Connections", "connections": { "service": "web", "targetPerReplica": "1" } });
            create_autoscaler(&client, &ns, app_ref("web"), metric, None).await;
            create_web_app(&client, &ns, "client", "10m").await;
            wait_for_ready_pods(&client, &ns, "web", 1, Duration::from_secs(120)).await;
            wait_for_ready_pods(&client, &ns, "client", 1, Duration::from_secs(120)).await;
            wait_for_condition(&client, &ns, "ScalingActive", Duration::from_secs(60), |c| {
                c["status"] == "True"
            })
            .await;

            let started = Instant::now();
            let url = format!("http://web.{ns}.svc:80/");
            let load = connect_repeatedly(client.clone(), ns.clone(), "client", url);
            tokio::select! {
                taken = time_until_scaled(|| app_replicas(&client, &ns, "web"), started) => println!(
                    "connections round {round}: load step -> scale decision: Ferry Autoscaler {}",
                    seconds(taken),
                ),
                () = load => panic!("the load stopped"),
            }
        })
        .await;
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// Both autoscalers report a current CPU value: the step starts from a known idle reading.
async fn wait_until_metrics_read(client: &Client, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ferry = autoscalers(client, ns)
            .get("scaler")
            .await
            .expect("Autoscaler");
        let ferry_read = ferry.data["status"]["currentMetrics"]
            .as_array()
            .is_some_and(|m| !m.is_empty());
        let hpa = hpas(client, ns).get("deploy-burner").await.expect("HPA");
        let hpa_read = hpa
            .status
            .as_ref()
            .and_then(|s| s.current_metrics.as_ref())
            .is_some_and(|m| !m.is_empty());
        if ferry_read && hpa_read {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no CPU reading yet: Autoscaler {}, HPA {:?}",
            ferry.data["status"],
            hpa.status
        );
        sleep(Duration::from_secs(1)).await;
    }
}

/// Time from `started` until the target's desired replicas leave 1.
async fn time_until_scaled<F, Fut>(replicas: F, started: Instant) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = i64>,
{
    loop {
        if replicas().await > 1 {
            return started.elapsed();
        }
        assert!(started.elapsed() < DECISION_TIMEOUT, "no scale decision");
        sleep(POLL).await;
    }
}

async fn app_replicas(client: &Client, ns: &str, name: &str) -> i64 {
    let app = apps(client, ns).get(name).await.expect("App");
    app.data["spec"]["replicas"].as_i64().unwrap_or(0)
}

async fn deployment_replicas(client: &Client, ns: &str, name: &str) -> i64 {
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("Deployment");
    deployment
        .spec
        .and_then(|s| s.replicas)
        .map_or(0, i64::from)
}

async fn create_deployment(client: &Client, ns: &str, name: &str, cpu_request: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": web_pod_template(name, cpu_request),
        },
    }))
    .expect("Deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");
}

/// The HorizontalPodAutoscaler twin of `create_autoscaler(.., cpu(50), None)`: 1 to 4
/// replicas at 50% CPU, default behavior.
async fn create_hpa(client: &Client, ns: &str, deployment: &str) {
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": deployment },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment },
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [cpu(50)],
        },
    }))
    .expect("HorizontalPodAutoscaler");
    hpas(client, ns)
        .create(&PostParams::default(), &hpa)
        .await
        .expect("create HorizontalPodAutoscaler");
}

fn hpas(client: &Client, ns: &str) -> Api<HorizontalPodAutoscaler> {
    Api::namespaced(client.clone(), ns)
}
