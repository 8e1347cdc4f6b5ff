//! Properties of the allocator over random pools and Services.
//!
//! The address universe is small so that pools overlap, run out and Services collide often:
//! IPv4 192.0.2.248-192.0.3.8 (it crosses a .255/.0 boundary, for avoidBuggyIPs) and IPv6
//! 2001:db8::-2001:db8::10. Services hold, request and share addresses at random.

mod lbpool_support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ferry_operator::api::{LOAD_BALANCER_CLASS, LoadBalancerPool};
use ferry_operator::lbpool::{
    ADDRESSES_ANNOTATION, AddressRange, Assignments, Outcome, POOL_ANNOTATION, PoolProblem,
    SHARING_ANNOTATION, ServiceKey, allocate,
};
use k8s_openapi::api::core::v1::Service;
use lbpool_support::*;
use proptest::prelude::*;

const UNIVERSE: u8 = 17;

fn v4(offset: u8) -> String {
    let base = u32::from(Ipv4Addr::new(192, 0, 2, 248));
    Ipv4Addr::from(base + u32::from(offset)).to_string()
}

fn v6(offset: u8) -> String {
    format!("2001:db8::{offset:x}")
}

fn range_text() -> impl Strategy<Value = String> {
    (any::<bool>(), 0..UNIVERSE, 0..6u8).prop_map(|(ipv6, start, length)| {
        let end = (start + length).min(UNIVERSE - 1);
        let address = if ipv6 { v6 } else { v4 };
        format!("{}-{}", address(start), address(end))
    })
}

fn pools() -> impl Strategy<Value = Vec<LoadBalancerPool>> {
    let one = (
        prop::collection::vec(range_text(), 1..3),
        0..4i64,
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.3),
    );
    prop::collection::vec(one, 0..4).prop_map(|pools| {
        pools
            .into_iter()
            .enumerate()
            .map(|(index, (ranges, age, avoid, auto, default))| {
                let ranges: Vec<&str> = ranges.iter().map(String::as_str).collect();
                let mut pool = pool(&format!("pool-{index}"), &ranges).created(age);
                pool.spec.avoid_buggy_ips = avoid;
                pool.spec.auto_assign = auto;
                pool.spec.default = default;
                pool
            })
            .collect()
    })
}

fn address_text() -> impl Strategy<Value = String> {
    (prop::bool::weighted(0.2), 0..UNIVERSE)
        .prop_map(|(ipv6, offset)| if ipv6 { v6(offset) } else { v4(offset) })
}

fn service_strategy() -> impl Strategy<Value = Service> {
    let shape = (
        0..6i64,
        prop::sample::select(vec![
            "LoadBalancer",
            "LoadBalancer",
            "LoadBalancer",
            "ClusterIP",
        ]),
        prop::sample::select(vec![
            Some(LOAD_BALANCER_CLASS),
            Some(LOAD_BALANCER_CLASS),
            None,
            Some("example.com/lb"),
        ]),
        prop::sample::select(vec![
            ("SingleStack", vec!["IPv4"]),
            ("SingleStack", vec!["IPv4"]),
            ("SingleStack", vec!["IPv6"]),
            ("PreferDualStack", vec!["IPv4", "IPv6"]),
            ("RequireDualStack", vec!["IPv6", "IPv4"]),
        ]),
    );
    let asks = (
        prop::option::weighted(0.3, 0..UNIVERSE),
        prop::option::weighted(0.2, 0..4usize),
        prop::option::weighted(0.4, prop::sample::select(vec!["a", "b"])),
        prop::sample::subsequence(vec![("TCP", 80), ("TCP", 443), ("UDP", 53)], 1..=2),
        prop::option::weighted(0.2, prop::sample::select(vec!["web", "api"])),
        prop::collection::vec(address_text(), 0..3),
    );
    (shape, asks).prop_map(
        |((age, type_, class, (policy, families)), (request, pool, key, ports, local, held))| {
            let mut service = service("placeholder")
                .created(age)
                .of_type(type_)
                .families(policy, &families)
                .ports(&ports);
            service.spec.get_or_insert_default().load_balancer_class = class.map(str::to_owned);
            if let Some(offset) = request {
                service = service.requesting(&v4(offset));
            }
            if let Some(pool) = pool {
                service = service.asking_for_pool(&format!("pool-{pool}"));
            }
            if let Some(key) = key {
                service = service.sharing(key);
            }
            if let Some(app) = local {
                service = service.local_traffic(app);
            }
            let held: Vec<&str> = held.iter().map(String::as_str).collect();
            service.holding(&held)
        },
    )
}

fn services() -> impl Strategy<Value = Vec<Service>> {
    prop::collection::vec(service_strategy(), 0..10).prop_map(|services| {
        services
            .into_iter()
            .enumerate()
            .map(|(index, mut service)| {
                service.metadata.name = Some(format!("svc-{index}"));
                service
            })
            .collect()
    })
}

fn annotation<'a>(service: &'a Service, name: &str) -> Option<&'a str> {
    service
        .metadata
        .annotations
        .as_ref()?
        .get(name)
        .map(String::as_str)
}

/// Whether two Services may list one address, by the documented rule.
fn may_share(a: &Service, b: &Service) -> bool {
    let key = annotation(a, SHARING_ANNOTATION);
    let backends = |s: &Service| {
        let spec = s.spec.as_ref()?;
        (spec.external_traffic_policy.as_deref() == Some("Local")).then(|| spec.selector.clone())
    };
    let ports = |s: &Service| -> BTreeSet<(Option<String>, i32)> {
        let ports = s.spec.as_ref().and_then(|spec| spec.ports.clone());
        ports
            .into_iter()
            .flatten()
            .map(|p| (p.protocol, p.port))
            .collect()
    };
    key.is_some()
        && key == annotation(b, SHARING_ANNOTATION)
        && backends(a) == backends(b)
        && ports(a).is_disjoint(&ports(b))
}

fn listed(service: &Service) -> Vec<IpAddr> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone());
    ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip?.parse().ok())
        .collect()
}

fn granted(assignments: &Assignments, service: &Service) -> Vec<IpAddr> {
    let key = ServiceKey::of(service).expect("a namespaced Service");
    assignments
        .services
        .get(&key)
        .map(|outcome| outcome.addresses().collect())
        .unwrap_or_default()
}

fn ranges(pool: &LoadBalancerPool) -> Vec<AddressRange> {
    pool.spec
        .addresses
        .iter()
        .map(|text| AddressRange::parse(text).expect("generated ranges parse"))
        .collect()
}

fn is_buggy(address: IpAddr) -> bool {
    matches!(address, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No address goes to two Services that may not share it — neither in the result, nor
    /// while the statuses are rewritten one by one: a newly given address is never listed by
    /// a Service that may not share it, before or after.
    #[test]
    fn no_address_is_listed_twice_unless_shared(pools in pools(), services in services()) {
        let assignments = allocate(&pools, &services, [].iter());
        for a in &services {
            let before = listed(a);
            for address in granted(&assignments, a) {
                for b in services.iter().filter(|b| b.metadata.name != a.metadata.name) {
                    let b_lists = granted(&assignments, b).contains(&address)
                        || (!before.contains(&address) && listed(b).contains(&address));
                    prop_assert!(
                        !b_lists || may_share(a, b),
                        "{address} goes to {:?} while {:?} lists it\n{assignments:#?}",
                        a.metadata.name, b.metadata.name
                    );
                }
            }
        }
    }

    /// A Service asking for an address that no one lists or asks for, which a valid pool
    /// offers and lets it use, gets it.
    #[test]
    fn requested_addresses_are_honoured_when_free(pools in pools(), services in services()) {
        let assignments = allocate(&pools, &services, [].iter());
        let any_default = pools.iter().any(|p| p.spec.default);
        for service in &services {
            let Some(wanted) = annotation(service, ADDRESSES_ANNOTATION) else { continue };
            let address: IpAddr = wanted.parse().expect("one generated address");
            let spec = service.spec.as_ref().expect("a spec");
            let ours = spec.load_balancer_class.as_deref() == Some(LOAD_BALANCER_CLASS);
            let served = spec.type_.as_deref() == Some("LoadBalancer")
                && (ours || (spec.load_balancer_class.is_none() && any_default));
            let readable = spec.ip_families.iter().flatten().any(|f| f == "IPv4");
            let contested = services.iter().filter(|s| s.metadata.name != service.metadata.name).any(|s| {
                listed(s).contains(&address) || annotation(s, ADDRESSES_ANNOTATION) == Some(wanted)
            });
            let offering = pools.iter().find(|p| {
                assignments.pools[p.metadata.name.as_deref().unwrap_or_default()].problem.is_none()
                    && ranges(p).iter().any(|r| r.contains(address))
                    && !(p.spec.avoid_buggy_ips && is_buggy(address))
            });
            let admitted = offering.is_some_and(|p| {
                (ours || p.spec.default)
                    && annotation(service, POOL_ANNOTATION).is_none_or(|name| Some(name) == p.metadata.name.as_deref())
            });
            if served && readable && !contested && admitted {
                prop_assert!(
                    granted(&assignments, service).contains(&address),
                    "{:?} did not get {address}\n{assignments:#?}", service.metadata.name
                );
            }
        }
    }

    /// The same objects in any order give the same assignments.
    #[test]
    fn results_do_not_depend_on_input_order(
        (pools, shuffled_pools) in pools().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        (services, shuffled_services) in services().prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle())),
    ) {
        prop_assert_eq!(
            allocate(&pools, &services, [].iter()),
            allocate(&shuffled_pools, &shuffled_services, [].iter())
        );
    }

    /// Writing the assignments into the statuses and allocating again settles within a few
    /// rounds (a release takes one), and the settled statuses share only what may be shared.
    #[test]
    fn statuses_settle(pools in pools(), mut services in services()) {
        let assignments = settle(&pools, &mut services, &[], 5);
        for (i, a) in services.iter().enumerate() {
            for b in &services[i + 1..] {
                let common: Vec<IpAddr> = granted(&assignments, a)
                    .into_iter()
                    .filter(|address| granted(&assignments, b).contains(address))
                    .collect();
                prop_assert!(common.is_empty() || may_share(a, b), "{common:?} shared by {a:?} and {b:?}");
            }
        }
    }

    /// A pool that avoids buggy addresses never gives out one ending in .0 or .255.
    #[test]
    fn avoided_addresses_are_never_given(pools in pools(), services in services()) {
        let assignments = allocate(&pools, &services, [].iter());
        for outcome in assignments.services.values() {
            let Outcome::Served { addresses, .. } = outcome else { continue };
            for assigned in addresses {
                let pool = pools.iter().find(|p| p.metadata.name.as_deref() == Some(&assigned.pool)).expect("a known pool");
                prop_assert!(!(pool.spec.avoid_buggy_ips && is_buggy(assigned.address)), "{assigned:?}");
            }
        }
    }

    /// Valid pools never overlap; a pool marked as overlapping names an older valid pool it
    /// really overlaps.
    #[test]
    fn overlapping_pools_are_detected(pools in pools()) {
        let reports = allocate(&pools, [].iter(), [].iter()).pools;
        let named = |name: &str| pools.iter().find(|p| p.metadata.name.as_deref() == Some(name)).expect("a pool");
        let age = |p: &LoadBalancerPool| (p.metadata.creation_timestamp.clone(), p.metadata.name.clone());
        let overlap = |a: &LoadBalancerPool, b: &LoadBalancerPool| {
            ranges(a).iter().any(|x| ranges(b).iter().any(|y| x.overlaps(y)))
        };
        let valid: Vec<&LoadBalancerPool> = pools.iter().filter(|p| reports[p.metadata.name.as_deref().unwrap_or_default()].problem.is_none()).collect();
        for (i, a) in valid.iter().enumerate() {
            for b in &valid[i + 1..] {
                prop_assert!(!overlap(a, b), "{:?} and {:?} are both valid", a.metadata.name, b.metadata.name);
            }
        }
        for (name, report) in &reports {
            if let Some(PoolProblem::Overlap { other, .. }) = &report.problem {
                let (mine, theirs) = (named(name), named(other));
                prop_assert!(reports[other].problem.is_none());
                prop_assert!(age(theirs) < age(mine));
                prop_assert!(overlap(mine, theirs));
            }
        }
    }

    /// A full pool: when one Service goes, the next one gets exactly its address.
    #[test]
    fn freed_addresses_are_reused(size in 1..8u8, gone in 0..8u8) {
        let gone = usize::from(gone % size);
        let pools = [pool("p", &[&format!("{}-{}", v4(0), v4(size - 1))])];
        let mut services: Vec<Service> = (0..size)
            .map(|i| service(&format!("svc-{i}")).created(i64::from(i)))
            .collect();
        let full = settle(&pools, &mut services, &[], 3);
        prop_assert_eq!(full.pools["p"].available(), 0);
        let freed = granted(&full, &services[gone]);
        services.remove(gone);
        services.push(service("newcomer").created(100));
        let after = settle(&pools, &mut services, &[], 3);
        prop_assert_eq!(addresses(&after, "newcomer"), freed.iter().map(ToString::to_string).collect::<Vec<_>>());
        for service in &services[..services.len() - 1] {
            prop_assert_eq!(granted(&after, service), granted(&full, service), "the others stay put");
        }
    }
}
