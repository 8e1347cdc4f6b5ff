//! The dataplane vocabulary shared by the model, the diff and the kernel edges.
//!
//! These are plain values with no Kubernetes or netlink types in them, so the pure core can be
//! tested without a cluster or a kernel, and every kernel edge speaks the same language.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Transport protocol of a virtual server (IPVS supports exactly these three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IANA protocol number, as IPVS and conntrack expect it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// Identity of an IPVS virtual server: what the kernel keys services on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualServerKey {
    pub protocol: Protocol,
    pub address: IpAddr,
    pub port: u16,
}

impl fmt::Display for VirtualServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{}/{}:{}", self.protocol, a, self.port),
            IpAddr::V6(a) => write!(f, "{}/[{}]:{}", self.protocol, a, self.port),
        }
    }
}

/// IPVS scheduling algorithm, chosen per Service by the `ferry.dev/ipvs-scheduler` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scheduler {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnection,
    WeightedLeastConnection,
    SourceHashing,
    MaglevHashing,
    ShortestExpectedDelay,
    NeverQueue,
}

impl Scheduler {
    /// The kernel's name for the scheduler (the `ip_vs_<name>` module).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Scheduler::RoundRobin => "rr",
            Scheduler::WeightedRoundRobin => "wrr",
            Scheduler::LeastConnection => "lc",
            Scheduler::WeightedLeastConnection => "wlc",
            Scheduler::SourceHashing => "sh",
            Scheduler::MaglevHashing => "mh",
            Scheduler::ShortestExpectedDelay => "sed",
            Scheduler::NeverQueue => "nq",
        }
    }

    /// Parses the kernel name; `None` for anything IPVS does not ship.
    pub fn from_kernel_name(name: &str) -> Option<Self> {
        Some(match name {
            "rr" => Scheduler::RoundRobin,
            "wrr" => Scheduler::WeightedRoundRobin,
            "lc" => Scheduler::LeastConnection,
            "wlc" => Scheduler::WeightedLeastConnection,
            "sh" => Scheduler::SourceHashing,
            "mh" => Scheduler::MaglevHashing,
            "sed" => Scheduler::ShortestExpectedDelay,
            "nq" => Scheduler::NeverQueue,
            _ => return None,
        })
    }
}

/// Settings of a virtual server other than its real servers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualServerParams {
    pub scheduler: Scheduler,
    /// ClientIP session affinity: IPVS persistence with this timeout.
    pub persistence: Option<Duration>,
}

/// One backend of a virtual server. Ferry always forwards with masquerading (NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealServerKey {
    pub address: IpAddr,
    pub port: u16,
}

impl fmt::Display for RealServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{}:{}", a, self.port),
            IpAddr::V6(a) => write!(f, "[{}]:{}", a, self.port),
        }
    }
}

/// A virtual server as Ferry wants it: parameters plus weighted real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    pub params: VirtualServerParams,
    /// Real servers and their weights; weight 0 means "no new connections".
    pub real_servers: BTreeMap<RealServerKey, u32>,
}

/// What the kernel holds, as the IPVS and link edges read it back: the diff's "current" side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub virtual_servers: BTreeMap<VirtualServerKey, KernelVirtualServer>,
    /// Addresses on Ferry's dummy interface (`ferry-ipvs0`); everything there is Ferry's.
    pub bound_addresses: std::collections::BTreeSet<IpAddr>,
}

/// A virtual server as read from the kernel, with connection counters per real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVirtualServer {
    /// `None` when the kernel has settings Ferry never programs (another scheduler, a
    /// persistence engine or netmask, flags): drift, which the diff repairs with an update.
    pub params: Option<VirtualServerParams>,
    pub real_servers: BTreeMap<RealServerKey, KernelRealServer>,
}

/// A real server as read from the kernel: the counters decide when a drained one can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRealServer {
    pub weight: u32,
    pub active_connections: u32,
    pub inactive_connections: u32,
    /// False when someone set another forwarding method (direct routing, tunnel): drift,
    /// which the diff repairs with an update (updates always set masquerading).
    pub masquerade: bool,
}

impl KernelRealServer {
    /// True while any connection (established or lingering) still uses this real server.
    pub fn has_connections(&self) -> bool {
        self.active_connections > 0 || self.inactive_connections > 0
    }
}
