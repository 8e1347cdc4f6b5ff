//! The kernel edges against the kernel, each test in a network namespace of its own.
//!
//! The fakes run the same cases in every `cargo test`. The real implementations run them only
//! when asked, as root (they are `#[ignore]`d and also skip without the variable):
//!
//! ```text
//! sudo FERRY_REAL_KERNEL=1 cargo test -p ferry-proxy --test real_kernel -- --ignored
//! ```
//!
//! Each real test spawns a thread that `unshare(CLONE_NEWNET)`s (nix) before opening any
//! socket or running any tool, so everything it creates (addresses, nftables rules, conntrack
//! entries, IPVS services, links) lives in that namespace and disappears with the thread: there
//! is nothing to clean up on the host and tests may run in parallel. Tools they call, inside
//! the namespace: `ip`, plus `nft` and `conntrack` (conntrack test) and `ipvsadm` (IPVS test).
//! The l2 responder tests also need the `veth` and `bridge` drivers.
//!
//! A kernel without IPVS or without the dummy driver (the development hosts) still runs the
//! IPVS and link tests, but only to check the error Ferry reports; they print so. The IPVS
//! test VM (ip_vs and dummy loaded) runs them in full.
//!
//! Address plan, inside the namespaces only: Service addresses 10.96.0.0/12 and fd00:96::/64,
//! pod (backend) addresses 10.244.0.0/16 and fd00:244::/64, clients on loopback.

// A test crate's root resolves modules beside it, not in a directory named after it.
#[path = "real_kernel/conntrack_traffic.rs"]
mod conntrack_traffic;
#[path = "real_kernel/ipvs_cases.rs"]
mod ipvs_cases;
#[path = "real_kernel/l2_cases.rs"]
mod l2_cases;
#[path = "real_kernel/link_cases.rs"]
mod link_cases;

use std::future::Future;
use std::path::Path;
use std::process::Command;

use ferry_proxy::conntrack::{FakeConntrack, NetlinkConntrack};
use ferry_proxy::ipvs::{FakeIpvs, IpvsError, NetlinkIpvs};
use ferry_proxy::link::{FakeLink, Link, LinkError, NetlinkLink};
use ferry_proxy::sysctl::{self, ProcSysctl, Sysctl, SysctlError};

/// Runs `test` on a current-thread runtime in a fresh network namespace, if real-kernel tests
/// were asked for.
fn in_fresh_netns<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    if std::env::var("FERRY_REAL_KERNEL").as_deref() != Ok("1") {
        eprintln!("skipped: set FERRY_REAL_KERNEL=1 (and run as root) for real-kernel tests");
        return;
    }
    let thread = std::thread::spawn(move || {
        // Namespaces belong to the thread; its sockets and child processes inherit this one.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) needs root");
        run(&["ip", "link", "set", "lo", "up"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs a tool inside the test's namespace and returns its stdout; panics on failure.
#[track_caller]
fn run(command: &[&str]) -> String {
    let output = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn fake_ipvs_passes_the_ipvs_cases() {
    ipvs_cases::behaves_like_the_kernel(&FakeIpvs::new()).await;
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_ipvs_passes_the_ipvs_cases() {
    in_fresh_netns(|| async {
        // ip_vs is built as a module everywhere Ferry runs; the kernel does not autoload it
        // for a generic-netlink family lookup.
        if !Path::new("/sys/module/ip_vs").exists() {
            let result = NetlinkIpvs::connect().await;
            assert!(
                matches!(result, Err(IpvsError::Unavailable)),
                "{:?}",
                result.err()
            );
            eprintln!("no ip_vs in this kernel: checked the Unavailable error only");
            return;
        }
        let ipvs = NetlinkIpvs::connect().await.unwrap();
        ipvs_cases::behaves_like_the_kernel(&ipvs).await;
        ipvs_cases::agrees_with_ipvsadm(&ipvs).await;
    });
}

#[tokio::test]
async fn fake_link_passes_the_link_cases() {
    let link = FakeLink::new();
    link.set_host_addresses(["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
    link_cases::behaves_like_the_kernel(&link).await;
    let unsupported = FakeLink::without_dummy_support().ensure_link().await;
    assert!(matches!(unsupported, Err(LinkError::DummyUnsupported)));
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_link_passes_the_link_cases() {
    in_fresh_netns(|| async {
        let link = NetlinkLink::connect().unwrap();
        // The dummy driver registers a `numdummies` parameter, so /sys shows it when loaded.
        if !Path::new("/sys/module/dummy").exists() {
            let result = link.ensure_link().await;
            assert!(
                matches!(result, Err(LinkError::DummyUnsupported)),
                "{result:?}"
            );
            eprintln!("no dummy driver in this kernel: checked the DummyUnsupported error only");
            return;
        }
        link_cases::behaves_like_the_kernel(&link).await;
        // The cases end by deleting the link; bring it back to check what the kernel made.
        link.ensure_link().await.unwrap();
        let kind = run(&["ip", "-d", "link", "show", "ferry-ipvs0"]);
        assert!(kind.contains("dummy") && kind.contains("UP"), "{kind}");
    });
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_link_refuses_a_foreign_link_but_manages_its_addresses() {
    in_fresh_netns(|| async {
        // Someone else's veth squats on the name: Ferry must not adopt it...
        run(&[
            "ip",
            "link",
            "add",
            "ferry-ipvs0",
            "type",
            "veth",
            "peer",
            "name",
            "ferry-peer",
        ]);
        run(&["ip", "link", "set", "ferry-peer", "up"]);
        run(&["ip", "link", "set", "ferry-ipvs0", "up"]);
        let link = NetlinkLink::connect().unwrap();
        let result = link.ensure_link().await;
        assert!(
            matches!(&result, Err(LinkError::WrongKind { kind }) if kind == "veth"),
            "{result:?}"
        );
        // ...but the address code is the same on any link, so it is proven here too, with an
        // fe80:: address present that must not be listed.
        link_cases::manages_addresses(&link).await;
        let shown = run(&["ip", "addr", "show", "dev", "ferry-ipvs0"]);
        assert!(shown.contains("fd00:96::a/128"), "{shown}");
    });
}

#[tokio::test]
async fn fake_conntrack_deletes_exactly_the_matching_flows() {
    let conntrack = FakeConntrack::new();
    for flow in conntrack_traffic::flows() {
        conntrack.insert(flow);
    }
    let tcp = conntrack_traffic::tcp_flow();
    conntrack.insert(tcp);
    let remaining = |port| {
        let flows = conntrack.flows();
        flows
            .iter()
            .filter(|f| f.protocol == 17 && f.original.source.port() == port)
            .count()
    };
    conntrack_traffic::deletes_exactly_the_matching_flows(&conntrack, remaining).await;
    assert!(
        conntrack.flows().contains(&tcp),
        "TCP flows are never touched"
    );
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_conntrack_deletes_exactly_the_matching_flows() {
    in_fresh_netns(|| async {
        let _traffic = conntrack_traffic::Traffic::start();
        let conntrack = NetlinkConntrack::connect().unwrap();
        conntrack_traffic::deletes_exactly_the_matching_flows(
            &conntrack,
            conntrack_traffic::udp_entries_from,
        )
        .await;
        assert_eq!(
            conntrack_traffic::tcp_entries(),
            1,
            "TCP flows are never touched"
        );
    });
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_sysctls_are_set_or_the_missing_key_is_named() {
    in_fresh_netns(|| async {
        let proc = ProcSysctl::new();
        if !Path::new("/proc/sys/net/ipv4/vs").exists() {
            let error = sysctl::apply(&proc, true).unwrap_err();
            assert!(
                matches!(&error, SysctlError::Read { key, .. } if key == "net.ipv4.vs.conntrack"),
                "{error}"
            );
            assert_eq!(
                proc.read("net.ipv4.ip_forward").unwrap(),
                "1",
                "keys before it were set"
            );
            eprintln!("no ip_vs in this kernel: checked ip_forward and the error only");
            return;
        }
        let changed = sysctl::apply(&proc, true).unwrap();
        assert!(
            !changed.is_empty(),
            "a fresh namespace starts with defaults"
        );
        let release = proc.read("kernel.osrelease").unwrap();
        let kernel = sysctl::KernelVersion::parse(&release).unwrap();
        for (key, value) in sysctl::desired(kernel, true) {
            assert_eq!(proc.read(key).unwrap(), value, "{key}");
        }
        assert!(sysctl::apply(&proc, true).unwrap().is_empty());
    });
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_responder_answers_arp_and_ndp_only_for_announced_addresses() {
    in_fresh_netns(l2_cases::answers_only_for_announced_addresses);
}

#[test]
#[ignore = "needs root and FERRY_REAL_KERNEL=1"]
fn real_takeover_announcement_moves_the_routers_neighbour_entry() {
    in_fresh_netns(l2_cases::a_takeover_moves_the_routers_entry);
}
