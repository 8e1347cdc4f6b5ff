//! Properties of the diff over random kernel states and desired dataplanes:
//! applying the ops reaches the desired state (plus exactly the draining real servers, plus
//! what Ferry does not own), a second diff is empty, the phases come in order, and one
//! endpoint change costs at most two real-server ops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::fixtures::*;
use crate::diff::{GracefulState, Op, apply, diff};
use crate::model::types::{
    KernelRealServer, KernelState, KernelVirtualServer, Protocol, RealServerKey, Scheduler,
    VirtualServer, VirtualServerKey, VirtualServerParams,
};
use crate::model::{Desired, FrontendKind};

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

fn params() -> impl Strategy<Value = VirtualServerParams> {
    let scheduler = prop_oneof![
        Just(Scheduler::RoundRobin),
        Just(Scheduler::WeightedLeastConnection)
    ];
    let persistence = prop_oneof![Just(None), Just(Some(Duration::from_secs(10_800)))];
    (scheduler, persistence).prop_map(|(scheduler, persistence)| VirtualServerParams {
        scheduler,
        persistence,
    })
}

/// Small pools so states collide: four ClusterIPs, two NodePorts, a foreign address.
fn cluster_ip_key() -> impl Strategy<Value = VirtualServerKey> {
    (protocol(), 1u8..5, prop_oneof![Just(53u16), Just(80)]).prop_map(|(protocol, host, port)| {
        VirtualServerKey {
            protocol,
            address: IpAddr::V4(Ipv4Addr::new(10, 96, 0, host)),
            port,
        }
    })
}

fn node_port_key() -> impl Strategy<Value = VirtualServerKey> {
    (protocol(), 30080u16..30082).prop_map(|(protocol, port)| VirtualServerKey {
        protocol,
        address: NODE_ADDRESS.parse().expect("address"),
        port,
    })
}

fn foreign_key() -> impl Strategy<Value = VirtualServerKey> {
    (protocol(), 1u8..3).prop_map(|(protocol, host)| VirtualServerKey {
        protocol,
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)),
        port: 80,
    })
}

fn real_server() -> impl Strategy<Value = RealServerKey> {
    (1u8..6).prop_map(|host| RealServerKey {
        address: IpAddr::V4(Ipv4Addr::new(10, 244, 1, host)),
        port: 8080,
    })
}

fn desired_dataplane() -> impl Strategy<Value = Desired> {
    let backends = || proptest::collection::btree_set(real_server(), 0..4);
    let cluster_ip = (cluster_ip_key(), params(), backends())
        .prop_map(|(k, p, b)| (k, FrontendKind::ClusterIp, p, b));
    let node_port = (node_port_key(), params(), backends())
        .prop_map(|(k, p, b)| (k, FrontendKind::NodePort, p, b));
    let entries = proptest::collection::vec(prop_oneof![cluster_ip, node_port], 0..6);
    entries.prop_map(|entries| {
        let unique: BTreeMap<_, _> = entries
            .into_iter()
            .map(|(k, kind, p, b)| (k, (kind, p, b)))
            .collect();
        desired_of(unique.into_iter().map(|(key, (kind, params, backends))| {
            let server = VirtualServer {
                params,
                real_servers: backends.into_iter().map(|rs| (rs, 1)).collect(),
            };
            (key, frontend(key, kind, server))
        }))
    })
}

fn kernel_state() -> impl Strategy<Value = KernelState> {
    // Rarely, settings someone else made: foreign params, another forwarding method.
    let counters = (0u32..2, 0u32..3, 0u32..3, proptest::bool::weighted(0.9)).prop_map(
        |(weight, active, inactive, masquerade)| KernelRealServer {
            weight,
            active_connections: active,
            inactive_connections: inactive,
            masquerade,
        },
    );
    let server = (
        proptest::option::weighted(0.9, params()),
        proptest::collection::btree_map(real_server(), counters, 0..4),
    )
        .prop_map(|(params, real_servers)| KernelVirtualServer {
            params,
            real_servers,
        });
    let key = prop_oneof![cluster_ip_key(), node_port_key(), foreign_key()];
    let bound = proptest::collection::btree_set(
        (1u8..5).prop_map(|host| IpAddr::V4(Ipv4Addr::new(10, 96, 0, host))),
        0..4,
    );
    (proptest::collection::btree_map(key, server, 0..6), bound).prop_map(
        |(virtual_servers, bound_addresses)| KernelState {
            virtual_servers,
            bound_addresses,
        },
    )
}

/// A reference point far enough from the clock's origin to subtract drain ages from.
fn now() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Some of the kernel's weight-0 real servers were already draining, for up to a minute.
fn graceful_state(state: &KernelState, ages: &[Option<u64>], now: Instant) -> GracefulState {
    let draining = state.virtual_servers.iter().flat_map(|(key, server)| {
        server
            .real_servers
            .iter()
            .filter(|(_, c)| c.weight == 0)
            .map(move |(rs, _)| (*key, *rs))
    });
    let mut graceful = GracefulState::default();
    for ((key, rs), age) in draining.zip(ages) {
        if let Some(age) = age {
            graceful.insert(key, rs, now - Duration::from_secs(*age));
        }
    }
    graceful
}

/// What a test compares: keys, params and weights (counters belong to the kernel).
type Shape =
    BTreeMap<VirtualServerKey, (Option<VirtualServerParams>, BTreeMap<RealServerKey, u32>)>;

fn shape(state: &KernelState) -> Shape {
    state
        .virtual_servers
        .iter()
        .map(|(key, server)| {
            let weights = server
                .real_servers
                .iter()
                .map(|(rs, c)| (*rs, c.weight))
                .collect();
            (*key, (server.params.clone(), weights))
        })
        .collect()
}

/// The real servers that must still be draining after the diff: removed, TCP or SCTP, with
/// connections, within their grace period.
fn expected_draining(
    current: &KernelState,
    desired: &Desired,
    graceful: &GracefulState,
    now: Instant,
) -> BTreeSet<(VirtualServerKey, RealServerKey)> {
    let grace = config().grace_period;
    let mut draining = BTreeSet::new();
    for (key, frontend) in desired.virtual_servers() {
        let Some(existing) = current.virtual_servers.get(key) else {
            continue;
        };
        for (rs, counters) in &existing.real_servers {
            let removed = !frontend.server.real_servers.contains_key(rs);
            let started = graceful.started(key, rs).unwrap_or(now);
            let in_grace = now.saturating_duration_since(started) < grace;
            if removed && key.protocol != Protocol::Udp && counters.has_connections() && in_grace {
                draining.insert((*key, *rs));
            }
        }
    }
    draining
}

fn expected_shape(
    current: &KernelState,
    desired: &Desired,
    draining: &BTreeSet<(VirtualServerKey, RealServerKey)>,
) -> Shape {
    let desired_addresses = desired.bound_addresses();
    let ferry_addresses: BTreeSet<_> = current.bound_addresses.union(&desired_addresses).collect();
    let mut want: Shape = desired
        .virtual_servers()
        .iter()
        .map(|(key, f)| {
            (
                *key,
                (Some(f.server.params.clone()), f.server.real_servers.clone()),
            )
        })
        .collect();
    for (key, rs) in draining {
        want.get_mut(key)
            .expect("draining only in desired servers")
            .1
            .insert(*rs, 0);
    }
    for (key, server) in shape(current) {
        if !want.contains_key(&key)
            && !config()
                .ownership
                .owns(&key, ferry_addresses.contains(&key.address))
        {
            want.insert(key, server);
        }
    }
    want
}

/// The phase of an op; phases must not go backwards.
fn phase(op: &Op) -> u8 {
    match op {
        Op::AddVirtualServer { .. }
        | Op::UpdateVirtualServer { .. }
        | Op::AddRealServer { .. }
        | Op::UpdateRealServer { .. }
        | Op::DeleteRealServer { .. } => 0,
        Op::BindAddress { .. } => 1,
        Op::DeleteVirtualServer { .. } => 2,
        Op::UnbindAddress { .. } => 3,
        Op::DeleteConntrackToBackend { .. } | Op::DeleteConntrackToFrontend { .. } => 4,
    }
}

proptest! {
    #[test]
    fn applying_the_diff_reaches_the_desired_state(
        current in kernel_state(),
        desired in desired_dataplane(),
        ages in proptest::collection::vec(proptest::option::of(0u64..60), 32),
    ) {
        let now = now();
        let graceful = graceful_state(&current, &ages, now);
        let result = diff(&current, &desired, &graceful, now, &config());

        let phases: Vec<u8> = result.ops.iter().map(phase).collect();
        prop_assert!(phases.is_sorted(), "phases out of order: {:?}", render(&result.ops));

        let mut state = current.clone();
        apply(&mut state, &result.ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let draining = expected_draining(&current, &desired, &graceful, now);
        prop_assert_eq!(shape(&state), expected_shape(&current, &desired, &draining));
        prop_assert_eq!(&state.bound_addresses, &desired.bound_addresses());
        let tracked: BTreeSet<_> = result.graceful.iter().map(|(k, rs, _)| (*k, *rs)).collect();
        prop_assert_eq!(&tracked, &draining);

        let again = diff(&state, &desired, &result.graceful, now, &config());
        prop_assert_eq!(render(&again.ops), Vec::<String>::new());
        prop_assert_eq!(&again.graceful, &result.graceful);

        let expired = diff(&state, &desired, &again.graceful, now + config().grace_period, &config());
        let deleted: BTreeSet<_> = expired.ops.iter().map(|op| match op {
            Op::DeleteRealServer { key, real_server } => Ok((*key, *real_server)),
            other => Err(format!("{other:?}")),
        }).collect::<Result<_, _>>().map_err(TestCaseError::fail)?;
        prop_assert_eq!(deleted, draining);
        prop_assert!(expired.graceful.is_empty());
    }

    #[test]
    fn one_endpoint_change_costs_at_most_two_real_server_ops(
        desired in desired_dataplane(),
        pick in any::<prop::sample::Index>(),
        removed in any::<prop::sample::Index>(),
        added in real_server(),
    ) {
        prop_assume!(!desired.virtual_servers().is_empty());
        let mut state = KernelState::default();
        let setup = diff(&state, &desired, &GracefulState::default(), now(), &config());
        apply(&mut state, &setup.ops).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let (key, frontend) = *pick.get(&desired.virtual_servers().iter().collect::<Vec<_>>());
        let mut changed = frontend.clone();
        let backends: Vec<RealServerKey> = changed.server.real_servers.keys().copied().collect();
        if !backends.is_empty() {
            changed.server.real_servers.remove(removed.get(&backends));
        }
        changed.server.real_servers.insert(added, 1);
        let mut next = desired.clone();
        next.replace_service(&changed.service.service.clone(), Some(crate::model::ServiceDataplane {
            frontends: vec![(*key, changed)],
            ..Default::default()
        }));

        let ops = diff(&state, &next, &setup.graceful, now(), &config()).ops;
        let real_server_ops = ops.iter().filter(|op| op.is_real_server_op()).count();
        prop_assert!(real_server_ops <= 2, "{:?}", render(&ops));
        let others: Vec<_> = ops.iter().filter(|op| !op.is_real_server_op() && phase(op) != 4).collect();
        prop_assert!(others.is_empty(), "{:?}", render(&ops));
    }
}
