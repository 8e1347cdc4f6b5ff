//! Model + diff at 10,000 Services × 10 endpoints: a full build from nothing, a periodic
//! resync with nothing changed, and one endpoint change (partial and full rebuild).
//!
//! Every 10th Service is a NodePort and every 50th a LoadBalancer, half of the endpoints run
//! on this node. Run with `cargo bench -p ferry-proxy --bench model_diff`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_proxy::diff::{DiffConfig, GracefulState, apply, diff};
use ferry_proxy::model::types::{KernelState, Protocol, Scheduler};
use ferry_proxy::model::{
    Desired, Endpoint, EndpointConditions, EndpointSliceInfo, ModelConfig, NodeAddress,
    NodeAddressKind, NodeContext, NodeInfo, ServiceInfo, ServiceName, ServicePort, SliceName,
    SlicePort, Snapshot, TrafficPolicy, desired,
};

const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;
const THIS_NODE: &str = "node-a";

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

fn service(index: u32) -> ServiceInfo {
    let node_port = index
        .is_multiple_of(10)
        .then(|| 30000 + (index / 10) as u16 % 2768);
    let load_balancer_ips = if index.is_multiple_of(50) {
        vec![ip(u32::from(Ipv4Addr::new(172, 18, 0, 0)) + index)]
    } else {
        Vec::new()
    };
    ServiceInfo {
        name: ServiceName::new("bench", format!("svc-{index}")),
        cluster_ips: vec![ip(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + index)],
        external_ips: Vec::new(),
        load_balancer_ips,
        load_balancer_class: None,
        source_ranges: Vec::new(),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
        }],
        scheduler: Scheduler::RoundRobin,
        affinity_timeout: None,
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
    }
}

/// The slice of Service `index`; `generation` shifts one endpoint's address.
fn slice(index: u32, generation: u32) -> EndpointSliceInfo {
    let first_pod = u32::from(Ipv4Addr::new(10, 244, 0, 0)) + index * ENDPOINTS;
    let endpoints = (0..ENDPOINTS)
        .map(|i| {
            let shifted = if i == 0 {
                generation.wrapping_mul(1_000_000)
            } else {
                0
            };
            Endpoint {
                address: ip(first_pod.wrapping_add(i + shifted)),
                conditions: EndpointConditions::READY,
                node_name: Some(if i % 2 == 0 { THIS_NODE } else { "node-b" }.into()),
                zone: None,
            }
        })
        .collect();
    EndpointSliceInfo {
        name: SliceName {
            namespace: "bench".into(),
            name: format!("svc-{index}-abcde"),
        },
        service: ServiceName::new("bench", format!("svc-{index}")),
        ports: vec![SlicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
        endpoints,
    }
}

fn cluster() -> Snapshot {
    let mut snapshot = Snapshot::default();
    for index in 0..SERVICES {
        snapshot.upsert_service(service(index));
        snapshot.upsert_slice(slice(index, 0));
    }
    snapshot
}

fn node() -> NodeContext {
    let node = NodeInfo {
        name: THIS_NODE.into(),
        addresses: vec![NodeAddress {
            address: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            kind: NodeAddressKind::InternalIp,
        }],
    };
    let config = ModelConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("CIDR")],
        ..ModelConfig::default()
    };
    NodeContext::new(&node, &config)
}

/// The kernel after programming `desired` from nothing.
fn programmed(desired: &Desired, config: &DiffConfig) -> KernelState {
    let mut kernel = KernelState::default();
    let full = diff(
        &kernel,
        desired,
        &GracefulState::default(),
        Instant::now(),
        config,
    );
    apply(&mut kernel, &full.ops).expect("a diff from nothing applies");
    kernel
}

fn benchmarks(c: &mut Criterion) {
    let node = node();
    let config = DiffConfig::default();
    let snapshot = cluster();
    let full = desired(&snapshot, &node);
    let kernel = programmed(&full, &config);
    let empty = KernelState::default();
    let no_drains = GracefulState::default();
    println!(
        "{SERVICES} Services x {ENDPOINTS} endpoints: {} virtual servers, {} real servers, {} ops from empty",
        full.virtual_servers().len(),
        kernel
            .virtual_servers
            .values()
            .map(|vs| vs.real_servers.len())
            .sum::<usize>(),
        diff(&empty, &full, &no_drains, Instant::now(), &config)
            .ops
            .len(),
    );

    // One endpoint of a NodePort Service moves: its ClusterIP and NodePort frontends change.
    let changed_index = 10;
    let changed_name = ServiceName::new("bench", format!("svc-{changed_index}"));
    let mut changed_snapshot = snapshot.clone();
    changed_snapshot.upsert_slice(slice(changed_index, 1));
    let mut changed = full.clone();
    changed.update_service(&changed_snapshot, &changed_name, &node);
    let change_ops = diff(&kernel, &changed, &no_drains, Instant::now(), &config).ops;
    println!(
        "one endpoint change: {} ops ({} real-server ops over 2 frontends)",
        change_ops.len(),
        change_ops
            .iter()
            .filter(|op| op.is_real_server_op())
            .count(),
    );

    let mut group = c.benchmark_group("10k_services_x_10_endpoints");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("full model", |b| {
        b.iter(|| desired(black_box(&snapshot), &node))
    });
    group.bench_function("full model + diff from empty", |b| {
        b.iter(|| {
            let desired = desired(black_box(&snapshot), &node);
            diff(&empty, &desired, &no_drains, Instant::now(), &config)
        })
    });
    group.bench_function(
        "full model + diff, nothing changed (periodic resync)",
        |b| {
            b.iter(|| {
                let desired = desired(black_box(&snapshot), &node);
                diff(&kernel, &desired, &no_drains, Instant::now(), &config)
            })
        },
    );
    group.bench_function("one endpoint change: full model + diff", |b| {
        b.iter(|| {
            let desired = desired(black_box(&changed_snapshot), &node);
            diff(&kernel, &desired, &no_drains, Instant::now(), &config)
        })
    });
    group.bench_function("one endpoint change: partial model + diff", |b| {
        b.iter_custom(|iterations| {
            let mut working_snapshot = snapshot.clone();
            let mut working = full.clone();
            let mut measured = Duration::ZERO;
            for generation in 1..=iterations {
                let start = Instant::now();
                working_snapshot.upsert_slice(slice(changed_index, generation as u32));
                working.update_service(&working_snapshot, &changed_name, &node);
                black_box(diff(&kernel, &working, &no_drains, Instant::now(), &config));
                measured += start.elapsed();
            }
            measured
        })
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
