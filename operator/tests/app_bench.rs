//! Benchmarks against the local cluster; they print figures and assert nothing about speed:
//!
//! ```sh
//! cargo build --release -p ferry-operator --bins
//! cargo test --release -p ferry-operator --test app_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - pod creation: an App and a Deployment of 1,000 replicas each, pods pinned to a node that
//!   does not exist (they stay Pending: only creation is measured), time until all exist;
//! - memory: the operator's resident set size while it watches 10,000 Apps of 0 replicas.

// The harness serves the cluster tests too; the benchmarks use only part of it.
#[allow(dead_code)]
#[path = "app_cluster/harness.rs"]
mod harness;

use std::time::Duration;

use futures::{StreamExt, stream};
use harness::{Harness, WEB_V1, eventually, web_app};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

const REPLICAS: i32 = 1000;
const APPS: usize = 10_000;

/// Pending forever: no node has this label.
fn nowhere() -> serde_json::Value {
    json!({ "template": { "spec": { "nodeSelector": { "ferry.dev/bench": "nowhere" } } } })
}

async fn pods_with(h: &Harness, selector: &str) -> usize {
    let params = ListParams::default().labels(selector).match_any();
    let pods = h
        .api::<Pod>()
        .list_metadata(&params)
        .await
        .expect("list pods");
    pods.items.len()
}

async fn time_until_pods(h: &Harness, selector: &str, started: Instant) -> Duration {
    eventually(
        &format!("{REPLICAS} pods {selector}"),
        Duration::from_secs(600),
        || async {
            let count = pods_with(h, selector).await;
            if count >= REPLICAS as usize {
                Ok(started.elapsed())
            } else {
                Err(format!("{count} pods"))
            }
        },
    )
    .await
}

#[tokio::test]
#[ignore = "benchmark on the local cluster"]
async fn pod_creation_app_versus_deployment() {
    let h = Harness::start("bench-create").await;
    let started = Instant::now();
    h.create(web_app("bench-app", REPLICAS, WEB_V1, nowhere()))
        .await;
    let app = time_until_pods(&h, "app=bench-app", started).await;

    let mut deployment = web_app("bench-deploy", REPLICAS, WEB_V1, nowhere());
    deployment["apiVersion"] = json!("apps/v1");
    deployment["kind"] = json!("Deployment");
    deployment["spec"]["selector"] = json!({ "matchLabels": { "app": "bench-deploy" } });
    let deployment: Deployment = serde_json::from_value(deployment).expect("Deployment");
    let started = Instant::now();
    h.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");
    let native = time_until_pods(&h, "app=bench-deploy", started).await;

    println!(
        "BENCH pod creation, {REPLICAS} replicas: App {:.1}s, Deployment {:.1}s, App/Deployment {:.2}",
        app.as_secs_f64(),
        native.as_secs_f64(),
        app.as_secs_f64() / native.as_secs_f64()
    );
    h.finish().await;
}

#[tokio::test]
#[ignore = "benchmark on the local cluster"]
async fn operator_memory_with_ten_thousand_apps() {
    let h = Harness::start("bench-memory").await;
    let pid = h
        .operator_pid()
        .expect("a local operator (not FERRY_E2E_OPERATOR_DEPLOYED)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid);

    let started = Instant::now();
    stream::iter(0..APPS)
        .for_each_concurrent(64, |i| {
            let h = &h;
            async move {
                let name = format!("idle-{i}");
                h.create(web_app(&name, 0, WEB_V1, json!({}))).await;
            }
        })
        .await;
    let created = started.elapsed();
    eventually(
        &format!("{APPS} Apps reconciled"),
        Duration::from_secs(900),
        || async {
            let apps = h
                .apps()
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let reconciled = apps
                .items
                .iter()
                .filter(|a| {
                    a.status
                        .as_ref()
                        .is_some_and(|s| s.observed_generation.is_some())
                })
                .count();
            if reconciled == APPS {
                Ok(())
            } else {
                Err(format!("{reconciled} of {APPS} reconciled"))
            }
        },
    )
    .await;
    let reconciled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let watching = rss_kib(pid);
    println!(
        "BENCH operator RSS: {:.1} MiB idle, {:.1} MiB watching {APPS} Apps (created in {:.0}s, all reconciled after {:.0}s)",
        idle as f64 / 1024.0,
        watching as f64 / 1024.0,
        created.as_secs_f64(),
        reconciled.as_secs_f64()
    );
    h.finish().await;
}

/// Resident set size of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
