//! The Autoscaler against the local cluster (`e2e/cluster/up`, then `source e2e/cluster/env`):
//! run with `cargo test -p ferry-operator --test autoscaler_cluster -- --ignored`.
//!
//! Each test works in a namespace of its own and deletes it afterwards. The Autoscaler
//! controller runs inside the test process unless `FERRY_E2E_OPERATOR_DEPLOYED=1` says the
//! operator already runs in the cluster. Needs: Ferry's CRDs applied, the App controller
//! running, metrics-server for the CPU test, ferry-proxy with its connection counters for the
//! connection test, and the e2e web image (`ferry.dev/e2e/web:v1`).

mod harness;

use std::time::Duration;

use harness::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

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
        let message = failed_get_scale_message(&client, &ns).await;
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

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn bad_autoscalers_are_rejected_by_the_schema() {
    in_namespace("fas-bad", |client, ns| async move {
        let autoscalers = autoscalers(&client, &ns);
        let cases = [
            (
                json!({ "scaleTargetRef": app_ref("web"), "minReplicas": 3, "maxReplicas": 2, "metrics": [cpu(50)] }),
                "spec.minReplicas must be less than or equal to spec.maxReplicas",
            ),
            (
                json!({ "scaleTargetRef": app_ref("web"), "maxReplicas": 2, "metrics": [{ "type": "Requests" }] }),
                "spec.metrics[0].type: Unsupported value: \"Requests\"",
            ),
            (
                json!({ "scaleTargetRef": app_ref("web"), "maxReplicas": 2, "metrics": [{ "type": "Resource", "resource": { "name": "gpu", "target": { "type": "Utilization", "averageUtilization": 50 } } }] }),
                "spec.metrics[0].resource.name: Unsupported value: \"gpu\"",
            ),
            (
                json!({ "scaleTargetRef": app_ref("web"), "maxReplicas": 2, "metrics": [] }),
                "spec.metrics: Invalid value",
            ),
        ];
        for (spec, expected) in cases {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "ferry.dev/v1alpha1",
                "kind": "Autoscaler",
                "metadata": { "name": "scaler" },
                "spec": spec,
            }))
            .expect("Autoscaler");
            let error = autoscalers
                .create(&PostParams::default(), &object)
                .await
                .expect_err("the API server must reject it");
            let message = match error {
                kube::Error::Api(status) => {
                    assert_eq!(status.code, 422, "{status:?}");
                    status.message
                }
                other => panic!("not a validation error: {other}"),
            };
            assert!(message.contains(expected), "{message}");
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn a_missing_target_is_reported_not_scaled() {
    in_namespace("fas-ghost", |client, ns| async move {
        create_autoscaler(&client, &ns, app_ref("ghost"), cpu(50), None).await;
        let message = failed_get_scale_message(&client, &ns).await;
        assert!(message.contains("App ghost does not exist"), "{message}");
        let error = apps(&client, &ns)
            .get("ghost")
            .await
            .expect_err("the Autoscaler creates nothing");
        assert!(
            matches!(error, kube::Error::Api(ref s) if s.code == 404),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster"]
async fn an_unknown_target_kind_is_reported() {
    in_namespace("fas-kind", |client, ns| async move {
        let target = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "name": "w" });
        create_autoscaler(&client, &ns, target, cpu(50), None).await;
        let message = failed_get_scale_message(&client, &ns).await;
        assert!(
            message.contains("kind Widget in example.com/v1 is not served by the API server"),
            "{message}"
        );
    })
    .await;
}

/// Waits until the Autoscaler reports `AbleToScale=False` with reason `FailedGetScale`, and
/// returns the condition's message.
async fn failed_get_scale_message(client: &kube::Client, ns: &str) -> String {
    let condition = wait_for_condition(client, ns, "AbleToScale", Duration::from_secs(60), |c| {
        c["status"] == "False" && c["reason"] == "FailedGetScale"
    })
    .await;
    condition["message"].as_str().unwrap_or_default().to_owned()
}
