//! What the Autoscaler cluster tests and benchmarks share: a namespace per test with the
//! controller (unless the operator is deployed), Apps of the e2e web image, and load.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_operator::api::Autoscaler;
use ferry_operator::controllers::autoscaler::{AutoscalerArgs, DecisionMetrics, run};
use ferry_operator::metrics::Metrics;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

pub const WEB_IMAGE: &str = "ferry.dev/e2e/web:v1";

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    autoscaler: AutoscalerArgs,
}

/// Runs `test` in a fresh namespace (with the controller, unless deployed), then deletes it.
pub async fn in_namespace<F, Fut>(prefix: &str, test: F)
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

pub fn cpu(percent: i32) -> Value {
    json!({ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": percent } } })
}

pub fn app_ref(name: &str) -> Value {
    json!({ "apiVersion": "ferry.dev/v1alpha1", "kind": "App", "name": name })
}

pub async fn create_autoscaler(
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

pub async fn create_web_app(client: &Client, ns: &str, name: &str, cpu_request: &str) {
    let app = json!({
        "apiVersion": "ferry.dev/v1alpha1",
        "kind": "App",
        "metadata": { "name": name },
        "spec": { "replicas": 1, "template": web_pod_template(name, cpu_request) },
    });
    let object: DynamicObject = serde_json::from_value(app).expect("App");
    apps(client, ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("create App");
}

/// Pods of the web image labelled `app: <name>`, ready once they serve HTTP.
pub fn web_pod_template(name: &str, cpu_request: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": name } },
        "spec": { "containers": [{
            "name": "web",
            "image": WEB_IMAGE,
            "imagePullPolicy": "Never",
            "ports": [{ "containerPort": 8080 }],
            "resources": { "requests": { "cpu": cpu_request } },
            "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 2 },
        }] },
    })
}

pub async fn create_service(client: &Client, ns: &str, app: &str) {
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

pub fn autoscalers(client: &Client, ns: &str) -> Api<DynamicObject> {
    ferry_api(client, ns, "Autoscaler", "autoscalers")
}

pub fn apps(client: &Client, ns: &str) -> Api<DynamicObject> {
    ferry_api(client, ns, "App", "apps")
}

/// A `ferry.dev/v1alpha1` kind as untyped objects, to send what the Rust types cannot express.
fn ferry_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "ferry.dev".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "ferry.dev/v1alpha1".to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Polls the Autoscaler's status until `accept` takes the App's replicas.
pub async fn wait_for_replicas(
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

pub async fn wait_for_condition(
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

pub async fn wait_for_ready_pods(
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

pub async fn ready_pods(client: &Client, ns: &str, app: &str) -> Vec<String> {
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
pub async fn burn_cpu(client: Client, ns: String, app: &str) {
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
pub async fn connect_repeatedly(client: Client, ns: String, app: &str, url: String) {
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

pub async fn exec(client: Client, ns: String, pod: String, command: Vec<&str>) {
    let pods = Api::<Pod>::namespaced(client, &ns);
    let params = kube::api::AttachParams::default().stdout(true).stderr(true);
    if let Ok(process) = pods.exec(&pod, command, &params).await {
        let _ = process.join().await;
    }
}
