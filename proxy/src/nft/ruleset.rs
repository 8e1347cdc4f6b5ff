//! Ferry's nftables ruleset as typed values: what [`build`](super::build) produces, what the
//! tracer walks, what the diff compares and what the netlink codec lowers to kernel
//! expressions.
//!
//! The vocabulary is deliberately small: exactly the matches and statements Ferry's layout
//! uses, so every consumer handles every case (the compiler checks it) and a rule that the
//! tracer or the codec does not understand cannot exist.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::model::types::{Protocol, RealServerKey};

/// The only table Ferry owns (family `inet`); cleanup deletes it and nothing else.
pub const TABLE_NAME: &str = "ferry";

/// The mark bit that asks `postrouting` to masquerade a connection (kube-proxy's bit too, so
/// a node that moves between the two proxies does not need a second bit).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// Capacity of an affinity set: the clients one endpoint of a Service port remembers at once
/// (nft's default for sets filled from the packet path).
pub const AFFINITY_SET_SIZE: u32 = 65535;

/// The whole content of table `inet ferry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    /// Named sets and maps.
    pub sets: BTreeMap<String, Set>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// `Some` for a base chain attached to a netfilter hook.
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// Where a base chain hooks in; its policy is always `accept`, as Ferry only adds behaviour
/// for service traffic and must never drop anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: ChainKind,
    pub hook: Hook,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Filter,
    Nat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Output,
    Postrouting,
}

/// A rule: every match must hold, then the statements run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statements: Vec<Statement>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, statements: Vec<Statement>) -> Self {
        Self {
            matches,
            statements,
        }
    }

    /// Named sets this rule reads or writes: they must exist while the rule does.
    pub fn referenced_sets(&self) -> impl Iterator<Item = &str> {
        let from_matches = self.matches.iter().filter_map(|m| match m {
            Match::InSet { set, .. } => Some(set.as_str()),
            _ => None,
        });
        let from_statements = self.statements.iter().filter_map(|s| match s {
            Statement::Vmap { map: set, .. } | Statement::Update { set, .. } => Some(set.as_str()),
            _ => None,
        });
        from_matches.chain(from_statements)
    }

    /// Chains this rule may continue in (so they must exist while the rule does).
    pub fn referenced_chains(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().filter_map(|s| match s {
            Statement::Verdict(v) => v.target_chain(),
            _ => None,
        })
    }

    /// Endpoints this rule may send a new connection to.
    pub fn endpoints(&self) -> impl Iterator<Item = &RealServerKey> {
        self.statements.iter().flat_map(|s| match s {
            Statement::Dnat { endpoints, .. } => endpoints.as_slice(),
            Statement::DnatTo(endpoint) => std::slice::from_ref(endpoint),
            _ => &[],
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// Suffix of per-family object names (`services-ipv4`).
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Which address of the packet a match or key reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// A condition on the packet. A match on an address field holds only for packets of that
/// address's family (nft adds the `meta nfproto` dependency in an `inet` table; so does Ferry's
/// codec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `meta l4proto tcp|udp|sctp`.
    Protocol(Protocol),
    /// `ct state new`: only the first packet of a connection is checked by the filters.
    NewConnection,
    /// `ip saddr 10.0.0.0/8` (or `!=` when negated); the family is the network's.
    Address {
        side: Side,
        network: IpNet,
        negated: bool,
    },
    /// `th dport 8080`: the transport header's destination port, whatever the protocol.
    DestinationPort(u16),
    /// `meta mark & bit != 0`.
    MarkBitSet(u32),
    /// `<key> @set`.
    InSet { key: Key, set: String },
}

/// What a set lookup or update is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `ip daddr . meta l4proto . th dport`: a service frontend.
    Frontend(Family),
    /// `ct original ip daddr . meta l4proto . ct original proto-dst`: the frontend a connection
    /// was addressed to, still known after DNAT rewrote the packet.
    OriginalFrontend(Family),
    /// `ip saddr . ip daddr`: a connection from an endpoint to itself after DNAT.
    SourceAndDestination(Family),
    /// `ip saddr`: the client.
    Source(Family),
}

impl Key {
    pub fn family(self) -> Family {
        match self {
            Key::Frontend(f)
            | Key::OriginalFrontend(f)
            | Key::SourceAndDestination(f)
            | Key::Source(f) => f,
        }
    }
}

/// Something a rule does once its matches hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Verdict(Verdict),
    /// `<key> vmap @map`: continue as the map says, or fall through when the key is absent.
    Vmap {
        key: Key,
        map: String,
    },
    /// `meta mark set meta mark | bits`.
    SetMarkBits(u32),
    /// `meta mark set meta mark & ~bits`.
    ClearMarkBits(u32),
    /// `masquerade fully-random`.
    Masquerade,
    Reject(Reject),
    /// `dnat to numgen random mod N map { i : address . port }`: one rule per Service instead
    /// of a chain per endpoint, so an endpoint change rewrites one small rule.
    Dnat {
        family: Family,
        endpoints: Vec<RealServerKey>,
    },
    /// `dnat ip to 10.244.1.5:8080`: DNAT to one endpoint.
    DnatTo(RealServerKey),
    /// `update @set { <key> }`: adds the packet's key to a dynamic set, or restarts the
    /// timeout of the element that is there.
    Update {
        key: Key,
        set: String,
    },
    /// `counter`: counts the packets that reach it. In a nat chain only a connection's first
    /// packet does, so it counts new connections (the Autoscaler's connection metric).
    Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    pub fn target_chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(chain) | Verdict::Goto(chain) => Some(chain),
            Verdict::Accept | Verdict::Drop | Verdict::Return => None,
        }
    }
}

/// How a connection to a Service without endpoints is refused, so clients fail at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// `reject with tcp reset`.
    TcpReset,
    /// `reject` (`icmpx port-unreachable`, whatever the family).
    PortUnreachable,
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub kind: SetKind,
    /// Static elements; always empty for a [dynamic](SetKind::is_dynamic) set, whose elements
    /// the kernel adds as packets arrive.
    pub elements: BTreeMap<Element, Option<Verdict>>,
}

impl Set {
    pub fn new(kind: SetKind) -> Self {
        Self {
            kind,
            elements: BTreeMap::new(),
        }
    }
}

/// The type of a set, which fixes its key, its data and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `type <addr> . inet_proto . inet_service : verdict`.
    FrontendVerdicts(Family),
    /// `type <addr> . inet_proto . inet_service`.
    Frontends(Family),
    /// `type <addr> . <addr>`.
    AddressPairs(Family),
    /// `type <addr>; flags dynamic,timeout; timeout T`: the clients of a `sessionAffinity:
    /// ClientIP` Service port that stick to one endpoint, each forgotten `T` after its last
    /// new connection.
    Affinity { family: Family, timeout: Duration },
}

impl SetKind {
    pub fn family(self) -> Family {
        match self {
            SetKind::FrontendVerdicts(f) | SetKind::Frontends(f) | SetKind::AddressPairs(f) => f,
            SetKind::Affinity { family, .. } => family,
        }
    }

    /// Whether the packet path fills the set (`update`) rather than Ferry.
    pub fn is_dynamic(self) -> bool {
        matches!(self, SetKind::Affinity { .. })
    }
}

/// A set element's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Frontend(Frontend),
    AddressPair(IpAddr, IpAddr),
    Address(IpAddr),
}

/// A service address, protocol and port: the key of the dispatch maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = protocol_name(self.protocol);
        write!(f, "{} . {} . {}", self.address, protocol, self.port)
    }
}

/// nft's name for a transport protocol.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}
