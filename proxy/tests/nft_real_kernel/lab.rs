//! The namespaces of the nftables real-kernel tests.
//!
//! Topology: `node` holds table `inet ferry` and routes between a `client` outside the cluster
//! (192.168.60.20 and the addresses after it, one per simulated client) and two backend pods,
//! `be1` (10.244.1.5) and `be2` (10.244.2.7), each behind its own veth. The node's own address
//! 192.168.50.10 (NodePorts, and a `hostNetwork` endpoint the node serves itself) sits on its
//! loopback. Nothing here touches the host's own namespace or addresses.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use super::nft_support::NODE_IP;

const CLIENT_GATEWAY: &str = "192.168.60.1";
/// How many client addresses the client namespace holds.
pub const CLIENTS: u8 = 24;

/// The address of client `index` (0 is the client's primary address).
pub fn client_address(index: u8) -> String {
    format!("192.168.60.{}", 20 + index)
}

/// A network namespace deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", name]);
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns(name.to_owned())
    }

    /// Runs `f` in a thread that entered this namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in namespace")
    }

    /// Starts `f` in a thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let file = File::open(format!("/var/run/netns/{}", self.0)).expect("netns file");
        std::thread::spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut command = vec!["ip", "netns", "exec", &self.0];
        command.extend(args);
        run(&command)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[track_caller]
pub fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub struct Lab {
    pub node: Netns,
    pub client: Netns,
    _backends: Vec<Netns>,
}

impl Lab {
    /// Sets up the namespaces, names prefixed with `prefix` (one prefix per test, so tests may
    /// run in parallel), with every backend serving.
    pub fn new(prefix: &str) -> Self {
        let node = Netns::new(&format!("{prefix}-node"));
        let client = Netns::new(&format!("{prefix}-client"));
        let be1 = Netns::new(&format!("{prefix}-be1"));
        let be2 = Netns::new(&format!("{prefix}-be2"));
        wire(
            &node,
            &client,
            "to-client",
            CLIENT_GATEWAY,
            &client_address(0),
        );
        for index in 1..CLIENTS {
            let address = format!("{}/24", client_address(index));
            client.exec(&["ip", "addr", "add", &address, "dev", "eth0"]);
        }
        wire(&node, &be1, "to-be1", "10.244.1.1", "10.244.1.5");
        wire(&node, &be2, "to-be2", "10.244.2.1", "10.244.2.7");
        node.exec(&["ip", "addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        serve(&be1, "be1");
        serve(&be2, "be2");
        serve(&node, "node");
        Lab {
            node,
            client,
            _backends: vec![be1, be2],
        }
    }

    /// Makes the client's next connections leave from client `index`'s address, as another
    /// client's would.
    pub fn act_as_client(&self, index: u8) {
        let source = client_address(index);
        self.client.exec(&[
            "ip",
            "route",
            "replace",
            "default",
            "via",
            CLIENT_GATEWAY,
            "src",
            &source,
        ]);
    }

    /// What answered `count` TCP connections to `target` (backend name and the client it saw).
    pub fn tcp_answers(&self, target: &'static str, count: usize) -> Vec<String> {
        self.client.enter(move || {
            (0..count)
                .map(|_| {
                    let address: SocketAddr = target.parse().expect("target");
                    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
                        .expect("connect");
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).expect("read");
                    answer
                })
                .collect()
        })
    }

    /// What answered a UDP query to `target` sent from a new socket on client `index`'s
    /// address (a new port, so a new connection for conntrack).
    pub fn udp_answer(&self, index: u8, target: &'static str) -> String {
        let source = format!("{}:0", client_address(index));
        self.client.enter(move || {
            let socket = UdpSocket::bind(source.as_str()).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            socket.send_to(b"ping", target).expect("send");
            let mut buffer = [0; 16];
            let (len, _) = socket.recv_from(&mut buffer).expect("answer");
            String::from_utf8_lossy(&buffer[..len]).into_owned()
        })
    }

    /// How a TCP connection attempt to `target` ends: connected, or the error kind.
    pub fn tcp_attempt(
        &self,
        target: &'static str,
        timeout: Duration,
    ) -> Result<(), std::io::ErrorKind> {
        self.client.enter(move || {
            let address: SocketAddr = target.parse().expect("address");
            TcpStream::connect_timeout(&address, timeout)
                .map(|_| ())
                .map_err(|e| e.kind())
        })
    }
}

/// Wires `peer` to `node` with a veth: `node_side` gets `gateway`, the peer's `eth0` gets
/// `address` and a default route through the gateway.
fn wire(node: &Netns, peer: &Netns, node_side: &str, gateway: &str, address: &str) {
    let (node_address, peer_address) = (format!("{gateway}/24"), format!("{address}/24"));
    node.exec(&[
        "ip", "link", "add", node_side, "type", "veth", "peer", "name", "eth0", "netns", &peer.0,
    ]);
    node.exec(&["ip", "addr", "add", &node_address, "dev", node_side]);
    node.exec(&["ip", "link", "set", node_side, "up"]);
    peer.exec(&["ip", "addr", "add", &peer_address, "dev", "eth0"]);
    peer.exec(&["ip", "link", "set", "eth0", "up"]);
    peer.exec(&["ip", "route", "add", "default", "via", gateway]);
}

/// A backend answers TCP on 8080 with its name and the client address it saw, and UDP on
/// 5353 with its name.
fn serve(backend: &Netns, name: &'static str) {
    let (tcp_ready, ready) = std::sync::mpsc::channel();
    let udp_ready = tcp_ready.clone();
    backend.spawn(move || {
        let listener = TcpListener::bind("0.0.0.0:8080").expect("bind tcp");
        tcp_ready.send(()).expect("ready");
        for mut stream in listener.incoming().flatten() {
            let peer = stream
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = stream.write_all(format!("{name} {peer}").as_bytes());
        }
    });
    backend.spawn(move || {
        let socket = UdpSocket::bind("0.0.0.0:5353").expect("bind udp");
        udp_ready.send(()).expect("ready");
        let mut buffer = [0; 64];
        while let Ok((_, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(name.as_bytes(), from);
        }
    });
    ready.recv().expect("tcp up");
    ready.recv().expect("udp up");
}
