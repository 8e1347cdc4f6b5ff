//! UDP flows shaped like IPVS's conntrack entries (original: client to frontend; reply:
//! backend to client), made by real packets through nftables DNAT on loopback, or handed to
//! the fake directly.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};

use ferry_proxy::conntrack::{Conntrack, ConntrackError, Flow, FlowTuple};
use ferry_proxy::model::types::{Protocol, RealServerKey, VirtualServerKey};

use super::run;

/// Client port (each flow has its own), frontend, and the backend DNAT picks.
const UDP_FLOWS: [(u16, &str, &str); 6] = [
    (40001, "10.96.0.10:53", "10.244.1.5:5353"),
    (40002, "10.96.0.10:53", "10.244.2.7:5353"),
    (40003, "10.96.0.11:53", "10.244.1.5:5353"),
    (40004, "10.96.0.10:54", "10.244.1.5:5353"),
    (40011, "[fd00:96::a]:53", "[fd00:244::5]:5353"),
    (40012, "[fd00:96::a]:53", "[fd00:244::7]:5353"),
];
const CLIENT_V4: &str = "10.0.0.1";
const CLIENT_V6: &str = "fd00::1";
const TCP_FRONTEND: &str = "10.96.0.10:53";
const TCP_BACKEND: &str = "10.244.1.5:5353";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn client(port: u16, frontend: SocketAddr) -> SocketAddr {
    let address = if frontend.is_ipv4() {
        CLIENT_V4
    } else {
        CLIENT_V6
    };
    SocketAddr::new(address.parse().unwrap(), port)
}

fn flow(protocol: Protocol, client: SocketAddr, frontend: SocketAddr, backend: SocketAddr) -> Flow {
    Flow {
        protocol: protocol.number(),
        original: FlowTuple {
            source: client,
            destination: frontend,
        },
        reply: FlowTuple {
            source: backend,
            destination: client,
        },
        zone: 0,
    }
}

/// The UDP flows as conntrack would record them.
pub fn flows() -> Vec<Flow> {
    UDP_FLOWS
        .iter()
        .map(|&(port, frontend, backend)| {
            let frontend = addr(frontend);
            flow(
                Protocol::Udp,
                client(port, frontend),
                frontend,
                addr(backend),
            )
        })
        .collect()
}

/// A TCP flow to the same frontend address and port, which must survive every cleanup.
pub fn tcp_flow() -> Flow {
    let frontend = addr(TCP_FRONTEND);
    flow(
        Protocol::Tcp,
        client(40005, frontend),
        frontend,
        addr(TCP_BACKEND),
    )
}

fn key(protocol: Protocol, address: &str, port: u16) -> VirtualServerKey {
    VirtualServerKey {
        protocol,
        address: address.parse().unwrap(),
        port,
    }
}

fn backend(address: &str, port: u16) -> RealServerKey {
    RealServerKey {
        address: address.parse().unwrap(),
        port,
    }
}

#[track_caller]
fn assert_remaining(remaining: &impl Fn(u16) -> usize, kept: &[u16]) {
    for (port, frontend, backend) in UDP_FLOWS {
        let expected = usize::from(kept.contains(&port));
        assert_eq!(
            remaining(port),
            expected,
            "flow from port {port} to {frontend} via {backend}"
        );
    }
}

/// `remaining(port)` counts the UDP entries whose client used `port`.
pub async fn deletes_exactly_the_matching_flows(
    conntrack: &impl Conntrack,
    remaining: impl Fn(u16) -> usize,
) {
    assert_remaining(&remaining, &[40001, 40002, 40003, 40004, 40011, 40012]);

    let dns = key(Protocol::Udp, "10.96.0.10", 53);
    let deleted = conntrack
        .delete_udp_flows_to_backend(dns, backend("10.244.1.5", 5353))
        .await;
    assert_eq!(deleted.unwrap(), 1);
    assert_remaining(&remaining, &[40002, 40003, 40004, 40011, 40012]);

    assert_eq!(
        conntrack.delete_udp_flows_to_frontend(dns).await.unwrap(),
        1
    );
    assert_remaining(&remaining, &[40003, 40004, 40011, 40012]);

    let dns6 = key(Protocol::Udp, "fd00:96::a", 53);
    let deleted = conntrack
        .delete_udp_flows_to_backend(dns6, backend("fd00:244::5", 5353))
        .await;
    assert_eq!(deleted.unwrap(), 1);
    assert_remaining(&remaining, &[40003, 40004, 40012]);
    assert_eq!(
        conntrack.delete_udp_flows_to_frontend(dns6).await.unwrap(),
        1
    );
    assert_remaining(&remaining, &[40003, 40004]);

    assert_eq!(
        conntrack.delete_udp_flows_to_frontend(dns).await.unwrap(),
        0,
        "nothing left"
    );
    let tcp = conntrack
        .delete_udp_flows_to_frontend(key(Protocol::Tcp, "10.96.0.10", 53))
        .await;
    assert!(matches!(tcp, Err(ConntrackError::NotUdp { .. })), "{tcp:?}");
}

/// The sockets behind the real flows; the flows' conntrack entries outlive them anyway.
pub struct Traffic {
    _sockets: Vec<UdpSocket>,
    _tcp: (TcpListener, TcpStream),
}

impl Traffic {
    /// Binds the addresses on loopback, installs the DNAT rules and sends one datagram per
    /// flow (plus one TCP connection), in the calling thread's namespace.
    pub fn start() -> Self {
        let mut addresses = BTreeSet::from([
            CLIENT_V4.parse::<IpAddr>().unwrap(),
            CLIENT_V6.parse().unwrap(),
        ]);
        let mut rules = vec![
            "add table ip ferry_test".to_string(),
            "add chain ip ferry_test output { type nat hook output priority -100; }".to_string(),
            "add table ip6 ferry_test".to_string(),
            "add chain ip6 ferry_test output { type nat hook output priority -100; }".to_string(),
            format!(
                "add rule ip ferry_test output ip daddr 10.96.0.10 tcp dport 53 dnat to {TCP_BACKEND}"
            ),
        ];
        for (port, frontend, backend) in UDP_FLOWS {
            let (frontend, backend) = (addr(frontend), addr(backend));
            addresses.extend([frontend.ip(), backend.ip()]);
            let family = if frontend.is_ipv4() { "ip" } else { "ip6" };
            rules.push(format!(
                "add rule {family} ferry_test output {family} daddr {} udp dport {} udp sport {port} dnat to {backend}",
                frontend.ip(),
                frontend.port(),
            ));
        }
        for address in &addresses {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{address}/{prefix}"),
                "dev",
                "lo",
            ]);
        }
        run(&["nft", &rules.join("; ")]);

        // Backends listen, so no ICMP port-unreachable muddles the entries.
        let backends: BTreeSet<SocketAddr> = UDP_FLOWS.iter().map(|&(_, _, b)| addr(b)).collect();
        let mut sockets: Vec<UdpSocket> = backends
            .iter()
            .map(|b| UdpSocket::bind(b).unwrap())
            .collect();
        for (port, frontend, _) in UDP_FLOWS {
            let frontend = addr(frontend);
            let socket = UdpSocket::bind(client(port, frontend)).unwrap();
            socket.send_to(b"query", frontend).unwrap();
            sockets.push(socket);
        }
        let listener = TcpListener::bind(TCP_BACKEND).unwrap();
        let stream = TcpStream::connect(TCP_FRONTEND).unwrap();
        Self {
            _sockets: sockets,
            _tcp: (listener, stream),
        }
    }
}

fn entries(family: &str, protocol: &str, extra: &[&str]) -> usize {
    let mut command = vec!["conntrack", "-L", "-f", family, "-p", protocol];
    command.extend(extra);
    run(&command).lines().count()
}

/// UDP entries whose client used `port`, counted by the conntrack CLI.
pub fn udp_entries_from(port: u16) -> usize {
    let port = port.to_string();
    ["ipv4", "ipv6"]
        .into_iter()
        .map(|family| entries(family, "udp", &["--sport", &port]))
        .sum()
}

pub fn tcp_entries() -> usize {
    entries("ipv4", "tcp", &["--dport", "53"])
}
