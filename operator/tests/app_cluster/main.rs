//! The App controller against the local cluster (`e2e/cluster/up`, then
//! `source e2e/cluster/env`):
//!
//! ```sh
//! cargo build -p ferry-operator --bins
//! cargo test -p ferry-operator --test app_cluster -- --ignored --test-threads 4
//! ```
//!
//! Each test runs in a namespace of its own, with an operator that manages only that
//! namespace (see `harness.rs`), and deletes the namespace when it passes. The workload is the
//! e2e web image (`ferry.dev/e2e/web:v1` and `:v2`, HTTP on 8080).

// Shared with the benchmarks (app_bench.rs), which use parts these tests do not.
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use ferry_operator::api::App;
use harness::{Harness, WEB_V1, WEB_V2, eventually, image_of, is_ready, revision_of, web_app};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

fn condition(app: &App, type_: &str) -> Option<(String, String, String)> {
    let status = app.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn events_about(h: &Harness, name: &str, reason: &str) -> Vec<Event> {
    let events = h
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list events");
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn an_app_runs_its_replicas_and_replaces_a_deleted_pod() {
    let h = Harness::start("heal").await;
    h.create(web_app("web", 3, WEB_V1, json!({}))).await;
    let app = h.wait_rolled_out("web", READY).await;
    let pods = h.live_pods("web").await;
    assert_eq!(pods.len(), 3, "operator log: {:?}", h.operator_log());
    for pod in &pods {
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("App", app.uid().unwrap().as_str(), Some(true))
        );
    }

    let victim = pods[0].name_any();
    h.api::<Pod>()
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a pod");
    eventually("a replacement pod", READY, || async {
        let pods = h.live_pods("web").await;
        let replaced = pods.len() == 3
            && pods.iter().all(|p| p.name_any() != victim)
            && pods.iter().all(is_ready);
        if replaced {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
            ))
        }
    })
    .await;
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn the_scale_subresource_scales_the_app() {
    let h = Harness::start("scale").await;
    h.create(web_app("web", 1, WEB_V1, json!({}))).await;
    h.wait_rolled_out("web", READY).await;
    let scale = json!({ "spec": { "replicas": 4 } });
    h.apps()
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("patch /scale");
    h.wait_rolled_out("web", READY).await;
    let scale = h.apps().get_scale("web").await.expect("get /scale");
    let status = scale.status.expect("scale status");
    assert_eq!(
        (status.replicas, status.selector.as_deref()),
        (4, Some("app=web"))
    );
    assert_eq!(h.live_pods("web").await.len(), 4);

    h.apps()
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "replicas": 2 } })),
        )
        .await
        .expect("patch /scale");
    h.wait_rolled_out("web", READY).await;
    assert_eq!(h.live_pods("web").await.len(), 2);
    h.finish().await;
}

/// Samples the pods throughout a rollout from v1 to v2 with maxSurge 1, maxUnavailable 1:
/// never more than 5 pods, never fewer than 3 ready.
#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_rollout_stays_within_surge_and_unavailable() {
    let h = Harness::start("rollout").await;
    let strategy =
        json!({ "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 1 } } });
    h.create(web_app("web", 4, WEB_V1, strategy)).await;
    h.wait_rolled_out("web", READY).await;

    h.set_image("web", WEB_V2).await;
    let deadline = tokio::time::Instant::now() + READY;
    let mut samples = 0;
    loop {
        let pods = h.live_pods("web").await;
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        assert!(pods.len() <= 5, "{} pods exceed 4 + 1 surge", pods.len());
        assert!(ready >= 3, "only {ready} pods ready, at least 3 required");
        samples += 1;
        let done = pods.len() == 4 && pods.iter().all(|p| image_of(p) == WEB_V2 && is_ready(p));
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish; operator log: {:?}",
            h.operator_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(samples > 3, "the rollout was too quick to sample");
    let app = h.wait_rolled_out("web", READY).await;
    let status = app.status.clone().unwrap_or_default();
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(
        condition(&app, "Progressing").map(|c| c.1),
        Some("NewRevisionAvailable".into())
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn rollout_undo_returns_to_the_previous_template() {
    let h = Harness::start("undo").await;
    h.create(web_app("web", 2, WEB_V1, json!({}))).await;
    h.wait_rolled_out("web", READY).await;
    h.set_image("web", WEB_V2).await;
    h.wait_rolled_out("web", READY).await;
    assert!(
        h.live_pods("web")
            .await
            .iter()
            .all(|p| image_of(p) == WEB_V2)
    );

    let plugin = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-ferry"))
            .args(args)
            .args(["-n", &h.namespace])
            .output()
            .expect("run kubectl-ferry");
        assert!(
            output.status.success(),
            "kubectl ferry {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let history = plugin(&["rollout", "history", "app/web"]);
    assert_eq!(history.lines().count(), 3, "{history}");
    let undone = plugin(&["rollout", "undo", "app/web"]);
    assert!(undone.contains("rolled back to revision 1"), "{undone}");
    let status = plugin(&["rollout", "status", "app/web", "--timeout-seconds", "90"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let pods = h.live_pods("web").await;
    assert!(
        pods.len() == 2 && pods.iter().all(|p| image_of(p) == WEB_V1),
        "{:?}",
        pods.iter().map(image_of).collect::<Vec<_>>()
    );
    // The old template is the newest revision again.
    let history = plugin(&["rollout", "history", "app/web"]);
    assert!(
        history.lines().last().is_some_and(|l| l.starts_with('3')),
        "{history}"
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_paused_app_holds_its_rollout_until_resumed() {
    let h = Harness::start("pause").await;
    h.create(web_app("web", 2, WEB_V1, json!({}))).await;
    h.wait_rolled_out("web", READY).await;
    h.patch("web", json!({ "spec": { "paused": true } })).await;
    h.set_image("web", WEB_V2).await;
    let app = h
        .wait_for_app("web", READY, |app| {
            condition(app, "Progressing").is_some_and(|c| c.1 == "RolloutPaused")
        })
        .await;
    assert_eq!(app.status.unwrap().updated_replicas, 0);
    // A pod lost while paused comes back from the last completed template.
    let victim = h.live_pods("web").await[0].name_any();
    h.api::<Pod>()
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a pod");
    eventually("a v1 replacement", READY, || async {
        let pods = h.live_pods("web").await;
        let replaced = pods.len() == 2 && pods.iter().all(|p| p.name_any() != victim);
        if replaced {
            Ok(pods)
        } else {
            Err(format!("{} pods", pods.len()))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let images: Vec<String> = h.live_pods("web").await.iter().map(image_of).collect();
    assert_eq!(
        images,
        [WEB_V1, WEB_V1],
        "a paused App started new-template pods"
    );

    h.patch("web", json!({ "spec": { "paused": false } })).await;
    h.wait_rolled_out("web", READY).await;
    assert!(
        h.live_pods("web")
            .await
            .iter()
            .all(|p| image_of(p) == WEB_V2)
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn an_image_that_never_arrives_exceeds_the_progress_deadline() {
    let h = Harness::start("deadline").await;
    let extra = json!({ "progressDeadlineSeconds": 15, "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } } });
    h.create(web_app("web", 2, WEB_V1, extra)).await;
    h.wait_rolled_out("web", READY).await;
    h.set_image("web", "ferry.dev/e2e/missing:v1").await;
    let app = h
        .wait_for_app("web", Duration::from_secs(60), |app| {
            condition(app, "Progressing")
                .is_some_and(|c| c.0 == "False" && c.1 == "ProgressDeadlineExceeded")
        })
        .await;
    let (_, _, message) = condition(&app, "Progressing").unwrap();
    assert!(
        message.contains("Image") || message.contains("image"),
        "the message should name the image problem: {message}"
    );
    assert_eq!(
        app.status.unwrap().available_replicas,
        2,
        "the old pods keep serving"
    );
    assert!(
        !events_about(&h, "web", "ProgressDeadlineExceeded")
            .await
            .is_empty()
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_rollout_survives_an_operator_restart() {
    let mut h = Harness::start("restart").await;
    let strategy = json!({ "minReadySeconds": 2, "strategy": { "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } } });
    h.create(web_app("web", 5, WEB_V1, strategy)).await;
    h.wait_rolled_out("web", READY).await;
    h.set_image("web", WEB_V2).await;
    h.wait_for_app("web", READY, |app| {
        app.status.as_ref().is_some_and(|s| s.updated_replicas >= 2)
    })
    .await;
    h.kill_and_restart_operator().await;

    let app = h.wait_rolled_out("web", Duration::from_secs(180)).await;
    let pods = h
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    let live: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 5, "exactly replicas pods");
    let update = app
        .status
        .as_ref()
        .and_then(|s| s.update_revision.clone())
        .unwrap_or_default();
    for pod in &live {
        assert!(
            update.ends_with(&revision_of(pod)),
            "pod {} is of an old revision",
            pod.name_any()
        );
        assert_eq!(
            pod.owner_references().len(),
            1,
            "pod {} is not owned by the App",
            pod.name_any()
        );
    }
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn the_service_block_makes_a_service_with_endpoints() {
    let h = Harness::start("service").await;
    let service = json!({ "service": { "type": "ClusterIP", "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] } });
    let app = h.create(web_app("web", 2, WEB_V1, service)).await;
    h.wait_rolled_out("web", READY).await;
    let service = eventually("the Service", READY, || async {
        h.api::<Service>()
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no Service yet".to_owned())
    })
    .await;
    assert_eq!(service.owner_references()[0].uid, app.uid().unwrap());
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    assert_eq!(selector.get("app").map(String::as_str), Some("web"));
    eventually("2 ready endpoints", READY, || async {
        let slices = h
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .map_err(|e| e.to_string())?;
        let ready = slices
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(format!("{ready} ready endpoints"))
        }
    })
    .await;

    h.patch("web", json!({ "spec": { "service": null } })).await;
    eventually("the Service to go", READY, || async {
        match h
            .api::<Service>()
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
        {
            Some(service) if service.metadata.deletion_timestamp.is_none() => {
                Err("still there".to_owned())
            }
            _ => Ok(()),
        }
    })
    .await;
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn bad_templates_are_reported_and_touch_nothing() {
    let h = Harness::start("bad").await;
    let never = json!({ "template": { "spec": { "restartPolicy": "Never" } } });
    h.create(web_app("never", 2, WEB_V1, never)).await;
    let app = h
        .wait_for_app("never", READY, |app| {
            condition(app, "ReplicaFailure").is_some_and(|c| c.1 == "InvalidSpec")
        })
        .await;
    assert!(
        condition(&app, "ReplicaFailure")
            .unwrap()
            .2
            .contains("restartPolicy")
    );
    assert!(!events_about(&h, "never", "InvalidSpec").await.is_empty());

    // The API server refuses the pod: an invalid container name.
    let refused = json!({ "template": { "spec": { "containers": [{ "name": "Not_A_DNS_Label", "image": WEB_V1 }] } } });
    h.create(web_app("refused", 2, WEB_V1, refused)).await;
    let app = h
        .wait_for_app("refused", READY, |app| {
            condition(app, "ReplicaFailure").is_some_and(|c| c.1 == "FailedCreate")
        })
        .await;
    assert!(
        condition(&app, "ReplicaFailure")
            .unwrap()
            .2
            .contains("Not_A_DNS_Label")
    );
    assert!(!events_about(&h, "refused", "FailedCreate").await.is_empty());

    let pods = h
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .expect("list pods");
    assert!(
        pods.items.is_empty(),
        "no pods were made: {:?}",
        pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn the_api_server_rejects_invalid_apps_naming_the_field() {
    let h = Harness::start("reject").await;
    let cases = [
        (web_app("negative", -1, WEB_V1, json!({})), "spec.replicas"),
        (
            web_app(
                "stuck",
                2,
                WEB_V1,
                json!({ "strategy": { "rollingUpdate": { "maxSurge": "0%", "maxUnavailable": 0 } } }),
            ),
            "maxSurge and maxUnavailable cannot both be 0",
        ),
    ];
    for (object, fragment) in cases {
        let app: App = serde_json::from_value(object).expect("App");
        let error = h
            .apps()
            .create(&PostParams::default(), &app)
            .await
            .expect_err("rejected");
        assert!(error.to_string().contains(fragment), "{error}");
    }
    h.finish().await;
}
