//! The allocator case by case: pools and Services in, what each status should list out.

mod lbpool_support;

use ferry_operator::lbpool::{
    Family, Outcome, PoolNames, PoolProblem, Problem, Refusal, ServiceKey, allocate,
};
use lbpool_support::*;

const NONE: [k8s_openapi::api::core::v1::Namespace; 0] = [];

#[test]
fn a_service_gets_the_lowest_free_address_of_the_oldest_pool() {
    let pools = [
        pool("young", &["192.0.2.0/30"]).created(5),
        pool("old", &["198.51.100.8/30"]).created(1),
    ];
    let services = [
        service("web"),
        service("api").created(1),
        service("held").holding(&["198.51.100.8"]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "held"), ["198.51.100.8"]);
    assert_eq!(addresses(&assignments, "web"), ["198.51.100.9"]);
    assert_eq!(addresses(&assignments, "api"), ["198.51.100.10"]);
    let Outcome::Served { addresses, problem } = outcome(&assignments, "web") else {
        panic!("web is served");
    };
    assert_eq!(addresses[0].pool, "old");
    assert_eq!(problem, &None);
}

#[test]
fn held_addresses_stay_put_when_lower_ones_free_up() {
    let pools = [pool("p", &["192.0.2.0/29"])];
    let services = [service("web").holding(&["192.0.2.5"])];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "web"), ["192.0.2.5"]);
}

#[test]
fn a_requested_address_is_given_when_free() {
    let pools = [pool("p", &["192.0.2.0/28"])];
    let services = [
        service("annotated").requesting("192.0.2.9"),
        service("legacy").legacy_ip("192.0.2.3"),
        service("both")
            .requesting("192.0.2.4")
            .legacy_ip("192.0.2.4"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "annotated"), ["192.0.2.9"]);
    assert_eq!(addresses(&assignments, "legacy"), ["192.0.2.3"]);
    assert_eq!(addresses(&assignments, "both"), ["192.0.2.4"]);
}

#[test]
fn a_requested_address_outside_every_usable_pool_is_refused() {
    let pools = [
        pool("p", &["192.0.2.0/28"]),
        pool("q", &["198.51.100.0/28"]),
    ];
    let services = [
        service("outside").requesting("203.0.113.1"),
        service("elsewhere")
            .asking_for_pool("p")
            .requesting("198.51.100.1"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    for (name, address) in [("outside", "203.0.113.1"), ("elsewhere", "198.51.100.1")] {
        assert_eq!(addresses(&assignments, name), Vec::<String>::new());
        assert_eq!(
            problem(&assignments, name),
            Some(Problem::NotInAnyPool {
                address: ip(address)
            })
        );
    }
}

#[test]
fn the_holder_keeps_a_requested_address_and_both_hear_of_the_conflict() {
    let pools = [pool("p", &["192.0.2.0/28"])];
    let services = [
        // Older, but only asking: holding the address beats age.
        service("newcomer").created(0).requesting("192.0.2.7"),
        service("holder").created(9).holding(&["192.0.2.7"]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "holder"), ["192.0.2.7"]);
    assert_eq!(addresses(&assignments, "newcomer"), Vec::<String>::new());
    assert_eq!(
        problem(&assignments, "newcomer"),
        Some(Problem::Taken {
            address: ip("192.0.2.7"),
            holder: key("holder"),
        })
    );
    let kept: Vec<_> = assignments.conflicts_kept_by(&key("holder")).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].claimant, key("newcomer"));
}

#[test]
fn of_two_services_asking_for_one_address_the_older_gets_it() {
    let pools = [pool("p", &["192.0.2.0/28"])];
    let services = [
        service("b").created(3).requesting("192.0.2.7"),
        service("a").created(3).requesting("192.0.2.7"),
        service("c").created(1).requesting("192.0.2.7"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "c"), ["192.0.2.7"]);
    for loser in ["a", "b"] {
        assert_eq!(
            problem(&assignments, loser),
            Some(Problem::Taken {
                address: ip("192.0.2.7"),
                holder: key("c"),
            })
        );
    }
}

#[test]
fn when_two_statuses_list_one_address_the_older_service_keeps_it() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let services = [
        service("young").created(5).holding(&["192.0.2.1"]),
        service("old").created(1).holding(&["192.0.2.1"]),
        service("pinned")
            .created(7)
            .requesting("192.0.2.1")
            .holding(&["192.0.2.1"]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "old"), ["192.0.2.1"]);
    assert_eq!(
        addresses(&assignments, "young"),
        ["192.0.2.0"],
        "an automatic address moves; the old one stays listed by the winner"
    );
    assert_eq!(addresses(&assignments, "pinned"), Vec::<String>::new());
    let losers: Vec<&ServiceKey> = assignments.conflicts.iter().map(|c| &c.claimant).collect();
    assert_eq!(losers, [&key("pinned"), &key("young")]);
}

#[test]
fn services_with_one_sharing_key_and_distinct_ports_share_an_address() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let services = [
        service("dns-udp").sharing("dns").ports(&[("UDP", 53)]),
        service("dns-tcp")
            .created(1)
            .sharing("dns")
            .ports(&[("TCP", 53)]),
        service("dns-udp-again")
            .created(2)
            .sharing("dns")
            .ports(&[("UDP", 53)]),
        service("web").created(3).ports(&[("TCP", 53)]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "dns-udp"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "dns-tcp"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "dns-udp-again"), ["192.0.2.1"]);
    assert_eq!(addresses(&assignments, "web"), ["192.0.2.2"]);
    assert_eq!(
        assignments.pools["p"].allocated, 3,
        "a shared address counts once"
    );
    assert_eq!(assignments.pools["p"].available(), 1);
}

#[test]
fn a_requested_shared_address_is_refused_when_ports_clash() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let services = [
        service("first").sharing("edge").holding(&["192.0.2.2"]),
        service("second").sharing("edge").requesting("192.0.2.2"),
        service("third")
            .sharing("edge")
            .ports(&[("TCP", 443)])
            .requesting("192.0.2.2"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert!(matches!(
        problem(&assignments, "second"),
        Some(Problem::Taken { holder, .. }) if holder == key("first")
    ));
    assert_eq!(addresses(&assignments, "third"), ["192.0.2.2"]);
}

#[test]
fn local_traffic_services_share_only_with_the_same_endpoints() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let services = [
        service("a").sharing("k").local_traffic("web"),
        service("b")
            .created(1)
            .sharing("k")
            .local_traffic("web")
            .ports(&[("TCP", 443)]),
        service("c")
            .created(2)
            .sharing("k")
            .local_traffic("api")
            .ports(&[("TCP", 8080)]),
        service("d").created(3).sharing("k").ports(&[("TCP", 9090)]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "a"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "b"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "c"), ["192.0.2.1"]);
    assert_eq!(addresses(&assignments, "d"), ["192.0.2.2"]);
}

#[test]
fn named_manual_and_unknown_pools() {
    let pools = [
        pool("auto", &["192.0.2.0/30"]),
        pool("reserved", &["198.51.100.0/30"]).manual(),
    ];
    let services = [
        service("any"),
        service("named").asking_for_pool("reserved"),
        service("picked").requesting("198.51.100.3"),
        service("typo").asking_for_pool("reserve"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "any"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "named"), ["198.51.100.0"]);
    assert_eq!(addresses(&assignments, "picked"), ["198.51.100.3"]);
    assert_eq!(
        problem(&assignments, "typo"),
        Some(Problem::PoolUnusable {
            pool: "reserve".into(),
            why: Refusal::NotFound,
        })
    );
}

#[test]
fn only_default_pools_serve_services_without_a_class() {
    let services = [
        service("unclassed").unclassed(),
        service("foreign").class("example.com/lb"),
    ];
    let plain = [pool("plain", &["192.0.2.0/30"])];
    let assignments = allocate(&plain, &services, NONE.iter());
    assert!(
        assignments.services.is_empty(),
        "without a default pool Ferry serves neither: {assignments:#?}"
    );

    let with_default = [
        pool("plain", &["192.0.2.0/30"]),
        pool("default", &["198.51.100.0/30"]).default_pool(),
    ];
    let assignments = allocate(&with_default, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "unclassed"), ["198.51.100.0"]);
    assert!(!assignments.services.contains_key(&key("foreign")));

    let named = [service("unclassed").unclassed().asking_for_pool("plain")];
    let assignments = allocate(&with_default, &named, NONE.iter());
    assert_eq!(
        problem(&assignments, "unclassed"),
        Some(Problem::PoolUnusable {
            pool: "plain".into(),
            why: Refusal::NotDefault,
        })
    );
}

#[test]
fn selectors_restrict_a_pool_to_some_services_and_namespaces() {
    let pools = [
        pool("public", &["192.0.2.0/30"]).for_services("exposure", "public"),
        pool("team", &["198.51.100.0/30"]).for_namespaces("team", "shop"),
    ];
    let namespaces = [
        namespace("shop", ("team", "shop")),
        namespace("lab", ("team", "lab")),
    ];
    let services = [
        service("public")
            .labelled("exposure", "public")
            .asking_for_pool("public"),
        service("internal").asking_for_pool("public"),
        service("ours").asking_for_pool("team"),
        service("theirs")
            .in_namespace("lab")
            .asking_for_pool("team"),
    ];
    let assignments = allocate(&pools, &services, &namespaces);
    assert_eq!(addresses(&assignments, "public"), ["192.0.2.0"]);
    assert_eq!(addresses(&assignments, "ours"), ["198.51.100.0"]);
    assert_eq!(
        problem(&assignments, "internal"),
        Some(Problem::PoolUnusable {
            pool: "public".into(),
            why: Refusal::ServiceSelector,
        })
    );
    let theirs = &assignments.services[&ServiceKey::new("lab", "theirs")];
    assert_eq!(
        theirs.problem(),
        Some(&Problem::PoolUnusable {
            pool: "team".into(),
            why: Refusal::NamespaceSelector,
        })
    );
}

#[test]
fn an_address_given_up_goes_to_its_next_owner_once_the_release_is_written() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let mut services = [
        service("former")
            .of_type("ClusterIP")
            .holding(&["192.0.2.1"]),
        service("next").created(1).requesting("192.0.2.1"),
        service("auto").created(2).holding(&[]),
    ];
    let first = allocate(&pools, &services, NONE.iter());
    assert_eq!(outcome(&first, "former"), &Outcome::Released);
    assert_eq!(
        problem(&first, "next"),
        Some(Problem::Releasing {
            address: ip("192.0.2.1"),
            holder: key("former"),
        })
    );
    assert_eq!(
        addresses(&first, "auto"),
        ["192.0.2.0"],
        "skips the address being released"
    );
    assert!(first.conflicts.is_empty());

    let settled = settle(&pools, &mut services, &[], 4);
    assert_eq!(addresses(&settled, "next"), ["192.0.2.1"]);
    assert!(
        !settled.services.contains_key(&key("former")),
        "released for good"
    );
}

#[test]
fn addresses_of_a_deleted_pool_are_replaced() {
    let remaining = [pool("new", &["198.51.100.0/30"])];
    let services = [service("web").holding(&["192.0.2.1"])];
    let assignments = allocate(&remaining, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "web"), ["198.51.100.0"]);

    let assignments = allocate(&[], &services, NONE.iter());
    assert_eq!(addresses(&assignments, "web"), Vec::<String>::new());
    assert_eq!(
        problem(&assignments, "web"),
        Some(Problem::NoPool { family: Family::V4 })
    );
}

#[test]
fn dual_stack_services_get_one_address_per_family() {
    let pools = [
        pool("v4", &["192.0.2.0/30"]),
        pool("v6", &["2001:db8::/126"]),
    ];
    let services = [
        service("required").families("RequireDualStack", &["IPv6", "IPv4"]),
        service("preferred")
            .created(1)
            .families("PreferDualStack", &["IPv4", "IPv6"])
            .asking_for_pool("v4"),
        service("v6-only")
            .created(2)
            .families("SingleStack", &["IPv6"]),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(
        addresses(&assignments, "required"),
        ["2001:db8::", "192.0.2.0"]
    );
    assert_eq!(
        addresses(&assignments, "preferred"),
        ["192.0.2.1"],
        "the second family is optional"
    );
    assert_eq!(problem(&assignments, "preferred"), None);
    assert_eq!(addresses(&assignments, "v6-only"), ["2001:db8::1"]);

    let only_v4 = [pool("v4", &["192.0.2.0/30"])];
    let assignments = allocate(&only_v4, &services[..1], NONE.iter());
    assert_eq!(addresses(&assignments, "required"), ["192.0.2.0"]);
    assert_eq!(
        problem(&assignments, "required"),
        Some(Problem::NoPool { family: Family::V6 })
    );
}

#[test]
fn avoided_addresses_are_never_given() {
    let pools = [pool("p", &["192.0.2.255-192.0.3.1"]).avoiding_buggy_ips()];
    let services = [
        service("first"),
        service("second").created(1),
        service("zero").requesting("192.0.3.0"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "first"), ["192.0.3.1"]);
    assert_eq!(
        problem(&assignments, "second"),
        Some(Problem::Exhausted {
            family: Family::V4,
            pools: PoolNames(vec!["p".into()]),
        })
    );
    assert_eq!(
        problem(&assignments, "second").map(|p| p.to_string()),
        Some("no free IPv4 address in pool p".into())
    );
    assert_eq!(
        problem(&assignments, "zero"),
        Some(Problem::NotInAnyPool {
            address: ip("192.0.3.0")
        })
    );
}

#[test]
fn an_overlapping_pool_is_reported_and_serves_nothing() {
    let pools = [
        pool("first", &["192.0.2.0/29"]).created(0),
        pool("second", &["192.0.2.4-192.0.2.10"]).created(1),
    ];
    let services = [service("web").asking_for_pool("second")];
    let assignments = allocate(&pools, &services, NONE.iter());
    let report = &assignments.pools["second"];
    assert!(matches!(
        &report.problem,
        Some(PoolProblem::Overlap { other, .. }) if other == "first"
    ));
    assert_eq!(
        report.problem.as_ref().map(ToString::to_string),
        Some("192.0.2.4-192.0.2.10 overlaps 192.0.2.0-192.0.2.7 of the older pool first".into())
    );
    assert_eq!(assignments.pools["first"].problem, None);
    assert_eq!(
        problem(&assignments, "web"),
        Some(Problem::PoolUnusable {
            pool: "second".into(),
            why: Refusal::Invalid,
        })
    );
}

#[test]
fn an_unreadable_request_keeps_what_the_service_holds() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let services = [service("web")
        .requesting("192.0.2.x")
        .holding(&["192.0.2.2"])];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "web"), ["192.0.2.2"]);
    assert!(matches!(
        problem(&assignments, "web"),
        Some(Problem::UnreadableRequest(message)) if message.contains("192.0.2.x")
    ));
}

#[test]
fn a_changed_request_moves_the_service() {
    let pools = [pool("p", &["192.0.2.0/30"])];
    let mut services = [service("web")
        .requesting("192.0.2.3")
        .holding(&["192.0.2.1"])];
    let assignments = settle(&pools, &mut services, &[], 3);
    assert_eq!(addresses(&assignments, "web"), ["192.0.2.3"]);
    assert_eq!(assignments.pools["p"].allocated, 1);
}

#[test]
fn huge_ipv6_pools_saturate_their_counts() {
    let pools = [pool("v6", &["2001:db8::/32"])];
    let services = [service("web").families("SingleStack", &["IPv6"])];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "web"), ["2001:db8::"]);
    let report = &assignments.pools["v6"];
    assert_eq!(report.capacity, 1 << 96);
    assert_eq!(report.available(), (1 << 96) - 1);
}

#[test]
fn addresses_listed_by_other_implementations_are_never_given() {
    let pools = [pool("p", &["192.0.2.0/31"])];
    let services = [
        service("theirs")
            .class("example.com/lb")
            .holding(&["192.0.2.0"]),
        service("ours"),
        service("asking").created(1).requesting("192.0.2.0"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "ours"), ["192.0.2.1"]);
    assert_eq!(
        problem(&assignments, "asking"),
        Some(Problem::Taken {
            address: ip("192.0.2.0"),
            holder: key("theirs"),
        })
    );
    assert!(
        !assignments.services.contains_key(&key("theirs")),
        "its status is not Ferry's to write"
    );
}

#[test]
fn no_new_sharer_joins_an_address_until_a_clashing_lister_let_go() {
    let pools = [pool("p", &["192.0.2.0/31"])];
    let services = [
        service("former")
            .of_type("ClusterIP")
            .ports(&[("UDP", 53)])
            .holding(&["192.0.2.0"]),
        service("kept")
            .sharing("dns")
            .ports(&[("TCP", 53)])
            .holding(&["192.0.2.0"]),
        service("joining")
            .created(1)
            .sharing("dns")
            .ports(&[("UDP", 53)])
            .requesting("192.0.2.0"),
    ];
    let assignments = allocate(&pools, &services, NONE.iter());
    assert_eq!(addresses(&assignments, "kept"), ["192.0.2.0"]);
    assert_eq!(
        problem(&assignments, "joining"),
        Some(Problem::Releasing {
            address: ip("192.0.2.0"),
            holder: key("former"),
        }),
        "UDP/53 on 192.0.2.0 is still the former Service's"
    );
}
