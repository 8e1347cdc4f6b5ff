//! The test harness: a namespace per test, an operator that manages only that namespace
//! (started from the built binary, so a test can kill and restart it), and polling helpers.
//!
//! With `FERRY_E2E_OPERATOR_DEPLOYED=1` the operator already running is used instead. Killing
//! and restarting it runs `FERRY_E2E_OPERATOR_RESTART` (a shell command) if set; else, when
//! `e2e/operator/start` recorded its pid, SIGKILLs that process and runs the script again;
//! else deletes its pods (selected by `FERRY_E2E_OPERATOR_SELECTOR` in
//! `FERRY_E2E_OPERATOR_NAMESPACE`) for their Deployment to replace.

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_operator::api::{App, REVISION_HASH_LABEL};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

pub const WEB_V1: &str = "ferry.dev/e2e/web:v1";
pub const WEB_V2: &str = "ferry.dev/e2e/web:v2";

pub struct Harness {
    pub client: Client,
    pub namespace: String,
    operator: Operator,
}

impl Harness {
    /// A fresh namespace `app-<test>-<suffix>`, the App CRD, and an operator for it.
    pub async fn start(test: &str) -> Harness {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG points at the local cluster");
        install_crd(&client).await;
        let namespace = format!("app-{test}-{}", suffix());
        let namespaces = Api::<Namespace>::all(client.clone());
        let object = serde_json::from_value(json!({ "metadata": { "name": namespace } }))
            .expect("namespace");
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .expect("create namespace");
        let operator = Operator::start(&namespace);
        Harness {
            client,
            namespace,
            operator,
        }
    }

    /// Deletes the namespace (and with it everything the test made).
    pub async fn finish(self) {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }

    pub fn apps(&self) -> Api<App> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Kills the operator without letting it finish anything, then starts it again.
    pub async fn kill_and_restart_operator(&mut self) {
        match &mut self.operator {
            Operator::Local { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
                self.operator = Operator::start(&self.namespace);
            }
            Operator::Deployed { .. } => restart_deployed(&self.client).await,
        }
    }

    pub async fn create(&self, app: Value) -> App {
        let app: App = serde_json::from_value(app).expect("App");
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .expect("create App")
    }

    pub async fn patch(&self, name: &str, patch: Value) {
        self.apps()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch App");
    }

    /// Changes the image of the App's container (a JSON patch: the rest of the container stays).
    pub async fn set_image(&self, name: &str, image: &str) {
        let operations = json!([
            { "op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image }
        ]);
        let patch = Patch::Json::<()>(serde_json::from_value(operations).expect("JSON patch"));
        self.apps()
            .patch(name, &PatchParams::default(), &patch)
            .await
            .expect("set the image");
    }

    /// Polls the App until `done` holds; fails with the last state seen after `timeout`.
    pub async fn wait_for_app(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&App) -> bool,
    ) -> App {
        let apps = self.apps();
        eventually(&format!("app {name}"), timeout, || async {
            let app = apps.get(name).await.expect("get App");
            if done(&app) {
                Ok(app)
            } else {
                Err(format!("{:#?}", app.status))
            }
        })
        .await
    }

    /// Waits until the App's rollout is complete: replicas pods, all updated and available.
    pub async fn wait_rolled_out(&self, name: &str, timeout: Duration) -> App {
        self.wait_for_app(name, timeout, |app| {
            let status = app.status.clone().unwrap_or_default();
            let desired = app.spec.replicas;
            status.observed_generation == app.metadata.generation
                && status.replicas == desired
                && status.updated_replicas == desired
                && status.available_replicas == desired
        })
        .await
    }

    /// The pods of App `name` that are not terminating.
    pub async fn live_pods(&self, name: &str) -> Vec<Pod> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .expect("list pods");
        pods.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// The process id of an operator this harness started.
    pub fn operator_pid(&self) -> Option<u32> {
        match &self.operator {
            Operator::Local { child, .. } => Some(child.id()),
            Operator::Deployed { .. } => None,
        }
    }

    /// Where the operator's log is, for a failing test to point at.
    pub fn operator_log(&self) -> &PathBuf {
        self.operator.log()
    }
}

/// An App named `name` of `replicas` pods of `image` with `app: <name>` labels, an HTTP
/// readiness probe, and `extra` merged into its spec.
pub fn web_app(name: &str, replicas: i32, image: &str, extra: Value) -> Value {
    let mut spec = json!({
        "replicas": replicas,
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "web",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{ "containerPort": 8080, "name": "http" }],
                    "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 }
                }]
            }
        }
    });
    merge(&mut spec, extra);
    json!({ "apiVersion": "ferry.dev/v1alpha1", "kind": "App", "metadata": { "name": name }, "spec": spec })
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

pub fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn revision_of(pod: &Pod) -> String {
    pod.labels()
        .get(REVISION_HASH_LABEL)
        .cloned()
        .unwrap_or_default()
}

/// Retries `attempt` every 250ms until it succeeds or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last state:\n{state}")
            }
            Err(_) => sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Applies the App CRD as the Rust types define it, and waits until it is served.
async fn install_crd(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = App::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("ferry-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the App CRD");
    eventually(
        "the App CRD to be established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                Ok(())
            } else {
                Err("not established".into())
            }
        },
    )
    .await;
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:05x}", (nanos ^ std::process::id()) & 0xfffff)
}

/// The operator under test.
enum Operator {
    /// Started by this test, managing only its namespace.
    Local { child: Child, log: PathBuf },
    /// Running in the cluster already.
    Deployed { log: PathBuf },
}

impl Operator {
    fn start(namespace: &str) -> Operator {
        if std::env::var("FERRY_E2E_OPERATOR_DEPLOYED").as_deref() == Ok("1") {
            return Operator::Deployed {
                log: PathBuf::from("(the deployed operator's pod logs)"),
            };
        }
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("operator-{namespace}-{}.log", suffix()));
        let output = File::create(&log).expect("operator log file");
        let errors = output.try_clone().expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry-operator"))
            .args([
                "--watch-namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--http-addr",
                "127.0.0.1:0",
                "--controllers",
                "app",
            ])
            // Short lease timings: a restarted operator takes over within seconds.
            .args([
                "--lease-duration-seconds",
                "4",
                "--renew-deadline-seconds",
                "3",
                "--retry-period-seconds",
                "1",
            ])
            .env("RUST_LOG", "info,ferry_operator=debug")
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(errors))
            .spawn()
            .expect("start ferry-operator");
        Operator::Local { child, log }
    }

    fn log(&self) -> &PathBuf {
        match self {
            Operator::Local { log, .. } | Operator::Deployed { log } => log,
        }
    }
}

/// Kills and restarts an operator this harness did not start (see the module doc).
async fn restart_deployed(client: &Client) {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let pid_file = repository.join("e2e/.work/pids/ferry-operator.pid");
    if let Ok(command) = std::env::var("FERRY_E2E_OPERATOR_RESTART") {
        run_shell(&command);
    } else if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        run_shell(&format!("kill -KILL {}", pid.trim()));
        let start = repository.join("e2e/operator/start");
        let binary = repository.join("target/release/ferry-operator");
        run_shell(&format!("{} {}", start.display(), binary.display()));
    } else {
        let namespace =
            std::env::var("FERRY_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "ferry-system".into());
        let selector = std::env::var("FERRY_E2E_OPERATOR_SELECTOR")
            .unwrap_or_else(|_| "app.kubernetes.io/name=ferry-operator".into());
        let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        pods.delete_collection(&params, &ListParams::default().labels(&selector))
            .await
            .expect("delete the operator pods");
    }
}

fn run_shell(command: &str) {
    let status = Command::new("bash")
        .args(["-c", command])
        .status()
        .expect("run bash");
    assert!(status.success(), "{command:?} failed: {status}");
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Operator::Local { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
