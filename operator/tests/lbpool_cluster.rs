//! LoadBalancerPools against the local cluster (`e2e/cluster/up`, then `source
//! e2e/cluster/env`): `cargo test -p ferry-operator --test lbpool_cluster -- --ignored`.
//!
//! Each test gets a namespace and pools of its own: the pools select only that namespace,
//! carry the label `ferry.dev/e2e=lbpool` (leftovers of an aborted run are deleted at the next
//! start) and hand out 203.0.113.0/24 (TEST-NET-3), which nothing in the cluster routes. The
//! controller runs inside the test process unless `FERRY_E2E_OPERATOR_DEPLOYED=1` says the
//! operator already runs in the cluster; the allocation spans the whole cluster, so the tests
//! take turns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_operator::api::{LOAD_BALANCER_CLASS, LoadBalancerPool, LoadBalancerPoolStatus};
use ferry_operator::controllers::lbpool::{Settings, run};
use ferry_operator::metrics::Metrics;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Instant, sleep};

const POOL_LABEL: &str = "ferry.dev/e2e";
const NAMESPACE_LABEL: &str = "ferry.dev/e2e-lbpool";
const SETTLE: Duration = Duration::from_secs(30);

static TURN: Mutex<()> = Mutex::const_new(());

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_service_gets_an_address_and_deleting_it_frees_the_address() {
    with_case("lbpool-free", async |case: &Case| {
        let pool = case.create_pool("free", &["203.0.113.0/30"]).await;
        case.create_service("first", json!({})).await;
        let first = case.wait_for_ingress("first", |ips| !ips.is_empty()).await;
        assert_eq!(first, ["203.0.113.0"]);
        let service = case.services().get("first").await.expect("the Service");
        let ingress = &service
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress);
        assert_eq!(
            ingress.as_ref().and_then(|i| i[0].ip_mode.as_deref()),
            Some("VIP")
        );
        case.wait_for_event("first", "IPAllocated").await;
        case.wait_for_pool(&pool, |s| s.allocated == 1 && s.available == 3)
            .await;

        case.services()
            .delete("first", &DeleteParams::default())
            .await
            .expect("delete the Service");
        case.wait_for_pool(&pool, |s| s.allocated == 0).await;
        case.create_service("second", json!({})).await;
        let second = case.wait_for_ingress("second", |ips| !ips.is_empty()).await;
        assert_eq!(second, first, "the freed address is reused");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn of_two_services_asking_for_one_address_one_wins_and_both_hear_of_it() {
    with_case("lbpool-conflict", async |case: &Case| {
        case.create_pool("conflict", &["203.0.113.8/29"]).await;
        let wanted = json!({ "ferry.dev/loadbalancer-ips": "203.0.113.12" });
        case.create_service("holder", wanted.clone()).await;
        case.wait_for_ingress("holder", |ips| ips == ["203.0.113.12"])
            .await;
        case.create_service("latecomer", wanted).await;

        let failed = case.wait_for_event("latecomer", "AllocationFailed").await;
        assert!(
            failed.contains("203.0.113.12") && failed.contains("holder"),
            "{failed}"
        );
        let conflict = case.wait_for_event("holder", "AddressConflict").await;
        assert!(conflict.contains("latecomer"), "{conflict}");
        // Settled: the latecomer stays pending, the holder keeps its address.
        sleep(Duration::from_secs(2)).await;
        assert!(case.ingress("latecomer").await.is_empty());
        assert_eq!(case.ingress("holder").await, ["203.0.113.12"]);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn changing_the_type_releases_the_address() {
    with_case("lbpool-type", async |case: &Case| {
        let pool = case.create_pool("type", &["203.0.113.32/30"]).await;
        case.create_service("web", json!({})).await;
        case.wait_for_ingress("web", |ips| !ips.is_empty()).await;
        case.wait_for_pool(&pool, |s| s.allocated == 1).await;
        let to_cluster_ip = json!({ "spec": { "type": "ClusterIP" } });
        case.services()
            .patch("web", &PatchParams::default(), &Patch::Merge(to_cluster_ip))
            .await
            .expect("change the type");
        case.wait_for_ingress("web", |ips| ips.is_empty()).await;
        case.wait_for_pool(&pool, |s| s.allocated == 0).await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn an_overlapping_pool_is_marked_invalid() {
    with_case("lbpool-overlap", async |case: &Case| {
        let older = case.create_pool("older", &["203.0.113.16/28"]).await;
        // Creation timestamps have second precision: make the age difference certain.
        sleep(Duration::from_millis(1100)).await;
        let newer = case
            .create_pool("newer", &["203.0.113.24-203.0.113.40"])
            .await;
        let status = case
            .wait_for_pool(&newer, |s| valid(s).is_some_and(|c| c["status"] == "False"))
            .await;
        let condition = valid(&status).expect("a Valid condition");
        assert_eq!(condition["reason"], "Overlap");
        let message = condition["message"].as_str().unwrap_or_default();
        assert!(message.contains(&older), "{message}");
        case.wait_for_pool(&older, |s| valid(s).is_some_and(|c| c["status"] == "True"))
            .await;
    })
    .await;
}

fn valid(status: &LoadBalancerPoolStatus) -> Option<Value> {
    let condition = status.conditions.iter().find(|c| c.type_ == "Valid")?;
    serde_json::to_value(condition).ok()
}

/// One test's namespace, pools and controller.
struct Case {
    client: Client,
    namespace: String,
}

/// Runs `test` in a fresh namespace with the controller (unless deployed), then deletes the
/// namespace and the test's pools, whatever the outcome.
async fn with_case(prefix: &str, test: impl AsyncFnOnce(&Case)) {
    let turn: MutexGuard<'static, ()> = TURN.lock().await;
    // RUST_LOG=ferry_operator=debug shows the controller's decisions under --nocapture.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let client = Client::try_default()
        .await
        .expect("a kubeconfig (source e2e/cluster/env)");
    install_crd(&client).await;
    delete_test_pools(&client).await;
    let namespace = format!("{prefix}-{}", std::process::id());
    let object = serde_json::from_value(json!({
        "metadata": { "name": namespace, "labels": { NAMESPACE_LABEL: namespace } },
    }))
    .expect("a Namespace");
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create the namespace");
    let controller = start_controller(client.clone());
    let case = Case {
        client: client.clone(),
        namespace: namespace.clone(),
    };
    let outcome = std::panic::AssertUnwindSafe(test(&case))
        .catch_unwind()
        .await;
    if let Some(controller) = controller {
        controller.abort();
    }
    delete_test_pools(&client).await;
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    drop(turn);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn start_controller(client: Client) -> Option<tokio::task::JoinHandle<()>> {
    if std::env::var("FERRY_E2E_OPERATOR_DEPLOYED").is_ok_and(|v| v == "1") {
        return None;
    }
    let settings = Settings {
        reporter: Reporter {
            controller: "ferry-lbpool-test".into(),
            instance: None,
        },
    };
    let metrics = Arc::new(Metrics::new());
    Some(tokio::spawn(run(
        client,
        metrics,
        settings,
        futures::future::pending(),
    )))
}

impl Case {
    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pools(&self) -> Api<LoadBalancerPool> {
        Api::all(self.client.clone())
    }

    /// A pool for this test's namespace only; returns its name.
    async fn create_pool(&self, name: &str, addresses: &[&str]) -> String {
        let name = format!("{}-{name}", self.namespace);
        let pool = serde_json::from_value(json!({
            "apiVersion": "ferry.dev/v1alpha1",
            "kind": "LoadBalancerPool",
            "metadata": { "name": name, "labels": { POOL_LABEL: "lbpool" } },
            "spec": {
                "addresses": addresses,
                "namespaceSelector": { "matchLabels": { NAMESPACE_LABEL: self.namespace } },
            },
        }))
        .expect("a LoadBalancerPool");
        self.pools()
            .create(&PostParams::default(), &pool)
            .await
            .expect("create the pool");
        name
    }

    async fn create_service(&self, name: &str, annotations: Value) {
        let service = serde_json::from_value(json!({
            "metadata": { "name": name, "annotations": annotations },
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": LOAD_BALANCER_CLASS,
                "selector": { "app": name },
                "ports": [{ "port": 80, "targetPort": 8080 }],
            },
        }))
        .expect("a Service");
        self.services()
            .create(&PostParams::default(), &service)
            .await
            .expect("create the Service");
    }

    async fn ingress(&self, name: &str) -> Vec<String> {
        let service = self.services().get(name).await.expect("the Service");
        let ingress = service
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress);
        ingress.into_iter().flatten().filter_map(|i| i.ip).collect()
    }

    async fn wait_for_ingress(&self, name: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(&format!("the ingress of {name}"), || async {
            let ips = self.ingress(name).await;
            if done(&ips) {
                Ok(ips)
            } else {
                Err(format!("{ips:?}"))
            }
        })
        .await
    }

    /// The note of the first Event with `reason` about Service `name`.
    async fn wait_for_event(&self, name: &str, reason: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        eventually(&format!("a {reason} Event on {name}"), || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let seen: Vec<String> = list
                .items
                .iter()
                .map(|e| format!("{:?} {:?}", e.reason, e.note))
                .collect();
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                })
                .map(|e| e.note.unwrap_or_default())
                .ok_or_else(|| format!("{seen:#?}"))
        })
        .await
    }

    async fn wait_for_pool(
        &self,
        name: &str,
        done: impl Fn(&LoadBalancerPoolStatus) -> bool,
    ) -> LoadBalancerPoolStatus {
        eventually(&format!("the status of pool {name}"), || async {
            let pool = self.pools().get(name).await.map_err(|e| e.to_string())?;
            let status = pool.status.unwrap_or_default();
            if done(&status) {
                Ok(status)
            } else {
                Err(format!("{status:#?}"))
            }
        })
        .await
    }
}

/// Retries `attempt` every 250 ms until it succeeds or `SETTLE` passes.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {SETTLE:?} waiting for {what}; last state:\n{state}")
            }
            Err(_) => sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Deletes every pool these tests made, including those an aborted run left behind.
async fn delete_test_pools(client: &Client) {
    let pools = Api::<LoadBalancerPool>::all(client.clone());
    let ours = ListParams::default().labels(&format!("{POOL_LABEL}=lbpool"));
    let _ = pools
        .delete_collection(&DeleteParams::default(), &ours)
        .await;
}

/// Applies the LoadBalancerPool CRD as the Rust types define it, and waits until it is served.
async fn install_crd(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = LoadBalancerPool::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("ferry-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the LoadBalancerPool CRD");
    eventually("the LoadBalancerPool CRD to be established", || async {
        let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            Ok(())
        } else {
            Err(format!("{conditions:?}"))
        }
    })
    .await;
}
