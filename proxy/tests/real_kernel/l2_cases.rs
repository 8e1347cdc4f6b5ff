//! The l2 responder against the kernel's own ARP and Neighbor Discovery: a "router" and two
//! "nodes" on a bridge, the router's kernel resolving addresses the nodes announce.
//!
//! Address plan (inside the test's namespace only): the router 192.0.2.1/24 and
//! 2001:db8::1/64 on `router0`; the nodes own no address on `node-a` / `node-b`, they only
//! answer for the announced 192.0.2.10 and 2001:db8::10; 192.0.2.11 is announced by no one.

use std::collections::BTreeSet;
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use ferry_proxy::announce::frame::Mac;
use ferry_proxy::announce::interface::{self, Interface};
use ferry_proxy::announce::responder;
use ferry_proxy::announce::socket::PacketSocket;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::run;

const ANNOUNCED_V4: &str = "192.0.2.10";
const ANNOUNCED_V6: &str = "2001:db8::10";
const SILENT_V4: &str = "192.0.2.11";
/// Far beyond what resolution takes (milliseconds) and the kernel's 3 unanswered
/// solicitations a second apart: only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(15);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One node's responder, answering for what its channel holds.
pub struct Node {
    pub interface: Interface,
    pub socket: Arc<PacketSocket>,
    pub announced: watch::Sender<BTreeSet<IpAddr>>,
}

impl Node {
    pub fn start(name: &str) -> Node {
        let interface = interface::find(Some(name), &[]).unwrap();
        let socket = Arc::new(PacketSocket::open(&interface).unwrap());
        let (announced, receiver) = watch::channel(BTreeSet::new());
        tokio::spawn(responder::answer(socket.clone(), interface.mac, receiver));
        Node {
            interface,
            socket,
            announced,
        }
    }

    pub fn announce(&self, addresses: &[&str]) {
        self.announced
            .send_replace(addresses.iter().map(|a| ip(a)).collect());
    }
}

/// The bridge, the router with its addresses, and a veth for each node.
pub fn segment(nodes: &[&str]) {
    run(&["ip", "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "link", "set", "br0", "up"]);
    for end in std::iter::once("router0").chain(nodes.iter().copied()) {
        let port = format!("{end}-br");
        run(&[
            "ip", "link", "add", end, "type", "veth", "peer", "name", &port,
        ]);
        run(&["ip", "link", "set", &port, "master", "br0", "up"]);
        run(&["ip", "link", "set", end, "up"]);
    }
    run(&["ip", "address", "add", "192.0.2.1/24", "dev", "router0"]);
    run(&[
        "ip",
        "address",
        "add",
        "2001:db8::1/64",
        "dev",
        "router0",
        "nodad",
    ]);
}

/// Makes the router's kernel resolve `address` (a datagram to it waits for ARP / NDP).
fn resolve(address: &str) {
    let socket = if ip(address).is_ipv4() {
        UdpSocket::bind("192.0.2.1:0")
    } else {
        UdpSocket::bind("[2001:db8::1]:0")
    };
    let destination = (ip(address), 9);
    socket.unwrap().send_to(b"who", destination).unwrap();
}

/// The router's neighbour entry for `address`: its state words and link address.
fn neighbour(address: &str) -> (String, Option<String>) {
    let line = run(&["ip", "neigh", "show", "to", address, "dev", "router0"]);
    let words: Vec<&str> = line.split_whitespace().collect();
    let lladdr = words
        .iter()
        .position(|w| *w == "lladdr")
        .and_then(|i| words.get(i + 1))
        .map(|mac| (*mac).to_owned());
    (line, lladdr)
}

fn mac_text(mac: Mac) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Waits until the router holds `address` at `mac`.
async fn wait_for_link_address(address: &str, mac: Mac) {
    let want = mac_text(mac);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (line, lladdr) = neighbour(address);
        if lladdr.as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{address}: want {want}, the router has {line:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the router gives up on `address`, checking no one answered meanwhile.
async fn wait_for_failure(address: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (line, lladdr) = neighbour(address);
        assert_eq!(lladdr, None, "{address} was answered: {line:?}");
        if line.contains("FAILED") {
            return;
        }
        assert!(Instant::now() < deadline, "{address}: still {line:?}");
        sleep(Duration::from_millis(100)).await;
    }
}

pub async fn answers_only_for_announced_addresses() {
    segment(&["node-a"]);
    let node = Node::start("node-a");
    node.announce(&[ANNOUNCED_V4, ANNOUNCED_V6]);
    for address in [ANNOUNCED_V4, ANNOUNCED_V6, SILENT_V4] {
        resolve(address);
    }
    wait_for_link_address(ANNOUNCED_V4, node.interface.mac).await;
    wait_for_link_address(ANNOUNCED_V6, node.interface.mac).await;
    wait_for_failure(SILENT_V4).await;
}

pub async fn a_takeover_moves_the_routers_entry() {
    segment(&["node-a", "node-b"]);
    let (a, b) = (Node::start("node-a"), Node::start("node-b"));
    a.announce(&[ANNOUNCED_V4, ANNOUNCED_V6]);
    resolve(ANNOUNCED_V4);
    resolve(ANNOUNCED_V6);
    wait_for_link_address(ANNOUNCED_V4, a.interface.mac).await;
    wait_for_link_address(ANNOUNCED_V6, a.interface.mac).await;

    // node-a stops; node-b takes over and says so, unasked.
    a.announce(&[]);
    b.announce(&[ANNOUNCED_V4, ANNOUNCED_V6]);
    for address in [ANNOUNCED_V4, ANNOUNCED_V6] {
        let receiver = b.announced.subscribe();
        tokio::spawn(responder::announce_takeover(
            b.socket.clone(),
            b.interface.mac,
            ip(address),
            receiver,
        ));
    }
    wait_for_link_address(ANNOUNCED_V4, b.interface.mac).await;
    wait_for_link_address(ANNOUNCED_V6, b.interface.mac).await;
}
