//! The Autoscaler against the local cluster (`e2e/cluster/up`, then `source e2e/cluster/env`):
//! run with `cargo test -p ferry-operator --test autoscaler_cluster -- --ignored`.
//!
//! Each test works in a namespace of its own and deletes it afterwards. The Autoscaler
//! controller runs inside the test process unless `FERRY_E2E_OPERATOR_DEPLOYED=1` says the
//! operator already runs in the cluster. Needs: Ferry's CRDs applied, the App controller
//! running, metrics-server for the CPU test, ferry-proxy with its connection counters for the
//! connection test, and the e2e web image (`ferry.dev/e2e/web:v1`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_operator::api::Autoscaler;
use ferry_operator::controllers::autoscaler::{AutoscalerArgs, DecisionMetrics, run};
use ferry_operator::metrics::Metrics;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

const WEB_IMAGE: &str = "ferry.dev/e2e/web:v1";

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    autoscaler: AutoscalerArgs,
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_target_without_a_scale_subresource_is_reported() {
    in_namespace("fas-noscale", |client, ns| async move {
        let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
        let config_map = serde_json::from_value(json!({ "metadata": { "name": "settings" } }))
            .expect("ConfigMap");
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create ConfigMap");
        create_autoscaler(
            &client,
            &ns,
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": "settings" }),
            cpu(50),
            None,
        )
        .await;
        let condition =
            wait_for_condition(&client, &ns, "AbleToScale", Duration::from_secs(60), |c| {
                c["status"] == "False" && c["reason"] == "FailedGetScale"
            })
            .await;
        let message = condition["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("ConfigMap settings has no scale subresource"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster with metrics-server"]
async fn a_cpu_burning_app_scales_up_then_back_down() {
    in_namespace("fas-cpu", |client, ns| async move {
        create_web_app(&client, &ns, "burner", "100m").await;
        let quick_scale_down = json!({ "scaleDown": { "stabilizationWindowSeconds": 20 } });
        create_autoscaler(
            &client,
            &ns,
            app_ref("burner"),
            cpu(50),
            Some(quick_scale_down),
        )
        .await;
        wait_for_ready_pods(&client, &ns, "burner", 1, Duration::from_secs(120)).await;
        let load = burn_cpu(client.clone(), ns.clone(), "burner");
        let scaled_up = wait_for_replicas(&client, &ns, |r| r >= 2, Duration::from_secs(180));
        tokio::select! {
            replicas = scaled_up => assert!(replicas >= 2),
            () = load => panic!("the load stopped before the App scaled up"),
        }
        // The load task was dropped by select!: the pods go idle and the short window passes.
        let replicas = wait_for_replicas(&client, &ns, |r| r == 1, Duration::from_secs(300)).await;
        assert_eq!(replicas, 1);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster with ferry-proxy"]
async fn connection_load_scales_an_app_up() {
    in_namespace("fas-conn", |client, ns| async move {
        create_web_app(&client, &ns, "web", "10m").await;
        create_service(&client, &ns, "web").await;
        let metric = json!({ "type": "Connections", "connections": { "service": "web", "targetPerReplica": "1" } });
        create_autoscaler(&client, &ns, app_ref("web"), metric, None).await;
        wait_for_ready_pods(&client, &ns, "web", 1, Duration::from_secs(120)).await;
        create_web_app(&client, &ns, "client", "10m").await;
        wait_for_ready_pods(&client, &ns, "client", 1, Duration::from_secs(120)).await;
        let url = format!("http://web.{ns}.svc:80/");
        let load = connect_repeatedly(client.clone(), ns.clone(), "client", url);
        tokio::select! {
            replicas = wait_for_replicas(&client, &ns, |r| r >= 2, Duration::from_secs(120)) => assert!(replicas >= 2),
            () = load => panic!("the load stopped before the App scaled up"),
        }
    })
    .await;
}

/// Runs `test` in a fresh namespace (with the controller, unless deployed), then deletes it.
async fn in_namespace<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = Client::try_default()
        .await
        .expect("a kubeconfig (source e2e/cluster/env)");
    let name = format!("{prefix}-{}", std::process::id());
    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).expect("Namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    let controller = start_controller(client.clone());
    let outcome = std::panic::AssertUnwindSafe(test(client.clone(), name.clone()))
        .catch_unwind()
        .await;
    if let Some(controller) = controller {
        controller.abort();
    }
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn start_controller(client: Client) -> Option<tokio::task::JoinHandle<()>> {
    if std::env::var("FERRY_E2E_OPERATOR_DEPLOYED").is_ok_and(|v| v == "1") {
        return None;
    }
    let args = Flags::parse_from(["test", "--autoscaler-proxy-discovery", "nodes"]).autoscaler;
    let reporter = Reporter {
        controller: "ferry-autoscaler-test".to_owned(),
        instance: None,
    };
    let settings = args.into_settings(reporter).expect("valid settings");
    let decisions = DecisionMetrics::register(&mut Registry::default());
    Some(tokio::spawn(run(
        client,
        Arc::new(Metrics::new()),
        decisions,
        settings,
        futures::future::pending(),
    )))
}

fn cpu(percent: i32) -> Value {
    json!({ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": percent } } })
}

fn app_ref(name: &str) -> Value {
    json!({ "apiVersion": "ferry.dev/v1alpha1", "kind": "App", "name": name })
}

async fn create_autoscaler(
    client: &Client,
    ns: &str,
    target: Value,
    metric: Value,
    behavior: Option<Value>,
) {
    let mut spec = json!({ "scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 4, "metrics": [metric] });
    if let Some(behavior) = behavior {
        spec["behavior"] = behavior;
    }
    let autoscaler: Autoscaler =
        serde_json::from_value(json!({ "metadata": { "name": "scaler" }, "spec": spec }))
            .expect("Autoscaler");
    Api::<Autoscaler>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &autoscaler)
        .await
        .expect("create Autoscaler");
}

async fn create_web_app(client: &Client, ns: &str, name: &str, cpu_request: &str) {
    let app = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "App",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "web",
                    "image": WEB_IMAGE,
                    "ports": [{ "containerPort": 8080 }],
                    "resources": { "requests": { "cpu": cpu_request } },
                    "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 } },
                }] },
            },
        },
    });
    let object: DynamicObject = serde_json::from_value(app).expect("App");
    apps(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("create App");
}

async fn create_service(client: &Client, ns: &str, app: &str) {
    let service = serde_json::from_value(json!({
        "metadata": { "name": app },
        "spec": { "selector": { "app": app }, "ports": [{ "port": 80, "targetPort": 8080 }] },
    }))
    .expect("Service");
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service)
        .await
        .expect("create Service");
}

fn apps(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "ferry.dev".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "ferry.dev/v1alpha1".to_owned(),
        kind: "App".to_owned(),
        plural: "apps".to_owned(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Polls the Autoscaler's status until `accept` takes the App's replicas.
async fn wait_for_replicas(
    client: &Client,
    ns: &str,
    accept: impl Fn(i64) -> bool,
    timeout: Duration,
) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let autoscaler = Api::<Autoscaler>::namespaced(client.clone(), ns)
            .get("scaler")
            .await
            .expect("Autoscaler");
        let target = &autoscaler.spec.scale_target_ref.name;
        let app = apps(client, ns).get(target).await.expect("App");
        let replicas = app.data["spec"]["replicas"].as_i64().unwrap_or(0);
        if accept(replicas) {
            return replicas;
        }
        assert!(
            Instant::now() < deadline,
            "replicas stayed {replicas}; status: {:?}",
            autoscaler.status
        );
        sleep(Duration::from_secs(2)).await;
    }
}

async fn wait_for_condition(
    client: &Client,
    ns: &str,
    type_: &str,
    timeout: Duration,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let autoscaler = Api::<Autoscaler>::namespaced(client.clone(), ns)
            .get("scaler")
            .await
            .expect("Autoscaler");
        let status = serde_json::to_value(&autoscaler.status).expect("status serializes");
        let found = status["conditions"]
            .as_array()
            .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_).cloned());
        if let Some(condition) = found.filter(|c| accept(c)) {
            return condition;
        }
        assert!(
            Instant::now() < deadline,
            "no matching {type_} condition; status: {status}"
        );
        sleep(Duration::from_secs(1)).await;
    }
}

async fn wait_for_ready_pods(
    client: &Client,
    ns: &str,
    app: &str,
    count: usize,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = ready_pods(client, ns, app).await;
        if pods.len() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app} has {} ready pods, wanted {count}",
            pods.len()
        );
        sleep(Duration::from_secs(2)).await;
    }
}

async fn ready_pods(client: &Client, ns: &str, app: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods");
    pods.into_iter()
        .filter(|pod| {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|pod| pod.name_any())
        .collect()
}

/// Keeps every ready pod of `app` burning a core until the future is dropped.
async fn burn_cpu(client: Client, ns: String, app: &str) {
    loop {
        let burns = ready_pods(&client, &ns, app).await.into_iter().map(|pod| {
            exec(
                client.clone(),
                ns.clone(),
                pod,
                vec!["/web", "get", "http://localhost:8080/burn?ms=10000", "15s"],
            )
        });
        futures::future::join_all(burns).await;
    }
}

/// Opens new connections to `url` from the pods of `app` until the future is dropped.
async fn connect_repeatedly(client: Client, ns: String, app: &str, url: String) {
    loop {
        let clients = ready_pods(&client, &ns, app).await;
        let requests = clients
            .into_iter()
            .flat_map(|pod| std::iter::repeat_n(pod, 8))
            .map(|pod| {
                exec(
                    client.clone(),
                    ns.clone(),
                    pod,
                    vec!["/web", "get", url.as_str(), "2s"],
                )
            });
        futures::future::join_all(requests).await;
    }
}

async fn exec(client: Client, ns: String, pod: String, command: Vec<&str>) {
    let pods = Api::<Pod>::namespaced(client, &ns);
    let params = kube::api::AttachParams::default().stdout(true).stderr(true);
    if let Ok(process) = pods.exec(&pod, command, &params).await {
        let _ = process.join().await;
    }
}
