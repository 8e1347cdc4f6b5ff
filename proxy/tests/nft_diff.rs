//! The diff against the in-memory fake, which refuses what nf_tables refuses: applying
//! `diff(a, b)` to `a` gives `b`, a second diff is empty, and a one-endpoint change touches only
//! that Service's chains and, with session affinity, that one endpoint's set.

mod nft_support;

use ferry_proxy::model::types::Protocol::Tcp;
use ferry_proxy::nft::fake::FakeDataplane;
use ferry_proxy::nft::{
    Batch, Errno, NftDataplane, NftError, Op, Ruleset, TableSnapshot, diff, full_replace,
};
use nft_support::*;
use proptest::prelude::*;

/// ClusterIP Services (NodePort for even ones, affinity on every third one); Service `i` has
/// `endpoints[i]` ready endpoints on another node.
fn cluster(endpoints: &[u8]) -> Ruleset {
    let mut cluster = Cluster::default();
    for (index, count) in endpoints.iter().enumerate() {
        let svc = service("default", &format!("svc-{index}"), |s| {
            s.cluster_ips = vec![ip(&format!("10.96.0.{}", index + 1))];
            s.ports = vec![port(
                "http",
                Tcp,
                80,
                (index % 2 == 0).then_some(30000 + index as u16),
            )];
            if index % 3 == 0 {
                s.affinity_timeout = affinity(60);
            }
        });
        let addresses: Vec<String> = (0..*count)
            .map(|e| format!("10.244.{index}.{}", e + 1))
            .collect();
        let ready: Vec<_> = addresses
            .iter()
            .map(|a| (a.as_str(), OTHER_NODE, true))
            .collect();
        let slice = slice(&svc, "a", ("http", Tcp, 8080), &ready);
        cluster = cluster.with(svc, vec![slice]);
    }
    cluster.ruleset()
}

#[track_caller]
fn synced(ruleset: &Ruleset) -> FakeDataplane {
    let mut fake = FakeDataplane::new();
    fake.apply(&full_replace(ruleset)).expect("full sync");
    assert_eq!(fake.table(), Some(ruleset));
    fake
}

#[test]
fn equal_rulesets_need_no_operation() {
    let ruleset = cluster(&[2, 3]);
    assert!(diff(&ruleset, &ruleset).is_empty());
}

/// The chain's counter is rewritten with it and starts from zero: the proxy's connections
/// metric adds a reset counter's whole value (see `dataplane::connections`).
#[test]
fn one_endpoint_change_rewrites_one_chain() {
    let before = cluster(&[3, 3]);
    let after = cluster(&[3, 2]);
    let batch = diff(&before, &after);
    assert_eq!(
        batch
            .ops
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "flush chain svc-ipv4-default/svc-1/tcp/http",
            "add rule to svc-ipv4-default/svc-1/tcp/http",
            "add rule to svc-ipv4-default/svc-1/tcp/http"
        ]
    );
}

/// The set operations of a batch, as text.
fn set_ops(batch: &Batch) -> Vec<String> {
    batch
        .ops
        .iter()
        .filter(|op| matches!(op, Op::AddSet { .. } | Op::DeleteSet(_) | Op::FlushSet(_)))
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_affinity_service_keeps_the_sets_of_the_endpoints_that_stay() {
    let (three, two, four) = (cluster(&[3]), cluster(&[2]), cluster(&[4]));
    let set =
        |endpoint| format!("affinity-svc-ipv4-default/svc-0/tcp/http__10.244.0.{endpoint}/8080");
    assert_eq!(
        set_ops(&diff(&three, &two)),
        [format!("delete set {}", set(3))]
    );
    assert_eq!(
        set_ops(&diff(&three, &four)),
        [format!("add set {}", set(4))]
    );
    for (before, after) in [(&three, &two), (&three, &four)] {
        let mut fake = synced(before);
        fake.apply(&diff(before, after)).expect("partial sync");
        assert_eq!(fake.table(), Some(after));
    }
}

#[test]
fn the_last_endpoint_going_away_moves_the_frontends_to_reject() {
    let before = cluster(&[1]);
    let after = cluster(&[0]);
    let mut fake = synced(&before);
    fake.apply(&diff(&before, &after)).expect("partial sync");
    assert_eq!(fake.table(), Some(&after));
    assert!(!after.chains.contains_key("svc-ipv4-default/svc-0/tcp/http"));
    assert!(
        !after
            .chains
            .contains_key("remember-svc-ipv4-default/svc-0/tcp/http")
    );
    assert!(
        !after
            .sets
            .keys()
            .any(|name| name.starts_with("affinity-svc-ipv4-default/svc-0/"))
    );
}

#[test]
fn the_fake_refuses_like_the_kernel_and_keeps_its_state() {
    let ruleset = cluster(&[1]);
    let mut fake = synced(&ruleset);
    let cases = [
        (
            Op::AddChain {
                name: "services".into(),
                base: None,
            },
            libc::EEXIST,
        ),
        (Op::DeleteChain("nowhere".into()), libc::ENOENT),
        (
            Op::DeleteChain("svc-ipv4-default/svc-0/tcp/http".into()),
            libc::EBUSY,
        ),
        (Op::DeleteSet("services-ipv4".into()), libc::EBUSY),
        (Op::AddTable, libc::EEXIST),
    ];
    for (op, errno) in cases {
        let batch = Batch {
            ops: vec![Op::FlushChain("reject-no-endpoints".into()), op.clone()],
        };
        match fake.apply(&batch) {
            Err(NftError::Rejected {
                index: 1,
                errno: Errno(e),
                ..
            }) => assert_eq!(e, errno, "{op}"),
            other => panic!("{op}: {other:?}"),
        }
        assert_eq!(fake.table(), Some(&ruleset), "{op} changed the table");
    }
}

#[test]
fn removing_the_table_twice_is_fine() {
    let mut fake = synced(&cluster(&[1]));
    fake.apply(&Batch::remove_table()).expect("remove");
    fake.apply(&Batch::remove_table()).expect("remove again");
    assert_eq!(fake.read_table().expect("read"), None);
}

#[test]
fn the_fake_reports_the_table_as_the_kernel_would() {
    let ruleset = cluster(&[2]);
    let mut fake = synced(&ruleset);
    assert_eq!(
        fake.read_table().expect("read"),
        Some(TableSnapshot::of(&ruleset))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn diff_moves_any_cluster_to_any_other(
        before in prop::collection::vec(0u8..5, 0..6),
        after in prop::collection::vec(0u8..5, 0..6),
    ) {
        let (before, after) = (cluster(&before), cluster(&after));
        let mut fake = synced(&before);
        fake.apply(&diff(&before, &after)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(fake.table(), Some(&after));
        prop_assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn one_endpoint_change_touches_one_service(
        counts in prop::collection::vec(2u8..6, 1..6),
        changed in any::<prop::sample::Index>(),
    ) {
        let index = changed.index(counts.len());
        let mut after_counts = counts.clone();
        after_counts[index] -= 1;
        let batch = diff(&cluster(&counts), &cluster(&after_counts));
        let touched = format!("svc-{index}/");
        prop_assert!(batch.ops.iter().all(|op| op.to_string().contains(&touched)), "{:?}", batch.ops);
        // Without affinity: flush and rewrite the counter and the pick. With it: both chains,
        // one rule per endpoint in each plus the counter and the random pick, and the one
        // endpoint's set.
        let most = if index % 3 == 0 { 2 * usize::from(counts[index]) + 3 } else { 3 };
        prop_assert!(batch.ops.len() <= most, "{} ops", batch.ops.len());
        prop_assert!(set_ops(&batch).len() <= 1, "{:?}", set_ops(&batch));
    }
}
