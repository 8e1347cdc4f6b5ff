//! A packet tracer over Ferry's own ruleset: which endpoints a new connection may reach,
//! whether it is masqueraded, dropped or rejected, and which clients it makes the affinity sets
//! remember.
//!
//! Tests assert what a packet experiences instead of comparing rule text (kube-proxy's best
//! testing idea). The tracer interprets every [`Match`] and [`Statement`] with exhaustive
//! `match`es, so a rule kind it does not understand cannot be added without teaching it; a
//! reference to a missing chain or set, a loop, a DNAT of the wrong family or a statement in a
//! hook where the kernel refuses it is an error that fails the test.
//!
//! A connection's first packet enters `prerouting` (from an interface) or `output` (from the
//! node), then, with its destination possibly rewritten, leaves through `postrouting` or, when
//! the destination is one of the node's own addresses, is delivered through `input` (after
//! `postrouting` and the loopback device when the node itself connects). As in the kernel, the
//! nat chains of a hook run only for a connection's first packet, and only until one of them
//! sets up that kind of NAT; source NAT is set up once, at the first of `postrouting` and
//! `input` the packet reaches.
//!
//! Dynamic sets start empty; [`Tracer::connect`] keeps what a connection's path added to them
//! in a [`Memory`], as the kernel does, so the next connection from the same client sees it.

mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use thiserror::Error;

pub use memory::Memory;

use super::ruleset::{
    ChainKind, Element, Family, Frontend, Hook, Key, Match, Reject, Ruleset, Set, Side, Statement,
    Verdict,
};
use crate::model::types::{Protocol, RealServerKey};

/// The first packet of a connection, as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    pub origin: Origin,
}

/// Where the packet comes from, which decides the hook it enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Arrives on an interface (a pod's veth, the node's uplink): `prerouting`.
    Interface,
    /// Sent by a process on the node itself: `output`.
    Node,
}

/// What happens to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No service rule changed the destination.
    Accept(Path),
    /// DNAT to one of `endpoints`, each with the path the connection takes from there.
    Dnat {
        endpoints: BTreeMap<RealServerKey, Path>,
    },
    Drop,
    Reject(Reject),
}

/// What happens to a connection once its destination is settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path {
    /// Whether it leaves with the node's address as its source.
    pub masqueraded: bool,
    /// What it added to dynamic sets (or refreshed there): set name and element.
    pub remembered: BTreeSet<(String, Element)>,
}

impl Outcome {
    /// The endpoints the connection may reach (empty unless DNATed).
    pub fn endpoints(&self) -> BTreeSet<RealServerKey> {
        match self {
            Outcome::Dnat { endpoints } => endpoints.keys().copied().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether every path of the connection is masqueraded.
    pub fn masqueraded(&self) -> bool {
        match self {
            Outcome::Accept(path) => path.masqueraded,
            Outcome::Dnat { endpoints } => endpoints.values().all(|path| path.masqueraded),
            Outcome::Drop | Outcome::Reject(_) => false,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("rule refers to missing chain {0}")]
    MissingChain(String),
    #[error("rule refers to missing set {0}")]
    MissingSet(String),
    #[error("chains nest deeper than {MAX_DEPTH} (a loop?) at {0}")]
    TooDeep(String),
    #[error("{chain}: DNAT of family {dnat:?} for a packet of family {packet:?}")]
    FamilyMismatch {
        chain: String,
        dnat: Family,
        packet: Family,
    },
    #[error("{chain}: DNAT to no endpoint")]
    EmptyDnat { chain: String },
    #[error("{0}: the packet path updates a set that Ferry fills")]
    StaticSetUpdated(String),
    #[error("{statement} in {hook:?}, where the kernel does not allow it")]
    WrongHook { statement: &'static str, hook: Hook },
    #[error("dropped or rejected in {0:?}, after the destination is settled: Ferry never does")]
    LateDrop(Hook),
    #[error("the connection cannot reach {0:?}")]
    NotAnEndpoint(RealServerKey),
}

/// The kernel's limit on nested jumps.
const MAX_DEPTH: usize = 16;

/// Traces the first packet of a connection through every hook it passes, on a node without
/// local endpoints and with nothing remembered yet.
pub fn trace(ruleset: &Ruleset, packet: &Packet) -> Result<Outcome, TraceError> {
    Tracer::new(ruleset).trace(packet)
}

/// A ruleset on a node: its own addresses, and what the packet path has remembered so far.
#[derive(Debug, Clone)]
pub struct Tracer<'a> {
    ruleset: &'a Ruleset,
    local_addresses: BTreeSet<IpAddr>,
    memory: Memory,
}

impl<'a> Tracer<'a> {
    pub fn new(ruleset: &'a Ruleset) -> Self {
        Self {
            ruleset,
            local_addresses: BTreeSet::new(),
            memory: Memory::default(),
        }
    }

    /// The node's own addresses: a connection to one is delivered through `input` (a
    /// `hostNetwork` endpoint, say) instead of leaving through `postrouting`.
    pub fn with_local_addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.local_addresses.extend(addresses);
        self
    }

    /// Starts from what earlier connections left in the dynamic sets.
    pub fn with_memory(mut self, memory: Memory) -> Self {
        self.memory = memory;
        self
    }

    pub fn into_memory(self) -> Memory {
        self.memory
    }

    /// What the first packet of a connection experiences; changes nothing.
    pub fn trace(&self, packet: &Packet) -> Result<Outcome, TraceError> {
        let entry = match packet.origin {
            Origin::Interface => Hook::Prerouting,
            Origin::Node => Hook::Output,
        };
        let mut state = State::new(packet);
        match self.run_hook(entry, &mut state, true)? {
            Some(Terminal::Drop) => Ok(Outcome::Drop),
            Some(Terminal::Reject(reject)) => Ok(Outcome::Reject(reject)),
            Some(Terminal::Masquerade) => Err(TraceError::WrongHook {
                statement: "masquerade",
                hook: entry,
            }),
            Some(Terminal::Dnat(endpoints)) => {
                let mut paths = BTreeMap::new();
                for endpoint in endpoints {
                    let mut after = state.clone();
                    after.packet.destination = endpoint.address;
                    after.packet.port = endpoint.port;
                    paths.insert(endpoint, self.deliver(after)?);
                }
                Ok(Outcome::Dnat { endpoints: paths })
            }
            Some(Terminal::Accept) | None => Ok(Outcome::Accept(self.deliver(state)?)),
        }
    }

    /// Makes the connection, as if the kernel had sent it to `endpoint`, and keeps what its
    /// path added to dynamic sets.
    pub fn connect(&mut self, packet: &Packet, endpoint: &RealServerKey) -> Result<(), TraceError> {
        let path = match self.trace(packet)? {
            Outcome::Dnat { mut endpoints } => endpoints.remove(endpoint),
            Outcome::Accept(_) | Outcome::Drop | Outcome::Reject(_) => None,
        };
        let path = path.ok_or(TraceError::NotAnEndpoint(*endpoint))?;
        self.memory.record(&path);
        Ok(())
    }

    /// The hooks after the destination is settled: out through `postrouting`, or in through
    /// `input` (after `postrouting` and loopback when the node connects to itself).
    fn deliver(&self, mut state: State) -> Result<Path, TraceError> {
        let local = self.local_addresses.contains(&state.packet.destination);
        let hooks: &[Hook] = match (state.packet.origin, local) {
            (_, false) => &[Hook::Postrouting],
            (Origin::Interface, true) => &[Hook::Input],
            (Origin::Node, true) => &[Hook::Postrouting, Hook::Input],
        };
        let mut masqueraded = false;
        for (index, &hook) in hooks.iter().enumerate() {
            match self.run_hook(hook, &mut state, index == 0)? {
                Some(Terminal::Accept) | None => {}
                Some(Terminal::Masquerade) if hook == Hook::Postrouting => masqueraded = true,
                Some(Terminal::Masquerade) => {
                    return Err(TraceError::WrongHook {
                        statement: "masquerade",
                        hook,
                    });
                }
                Some(Terminal::Dnat(_)) => {
                    return Err(TraceError::WrongHook {
                        statement: "dnat",
                        hook,
                    });
                }
                Some(Terminal::Drop | Terminal::Reject(_)) => {
                    return Err(TraceError::LateDrop(hook));
                }
            }
        }
        Ok(Path {
            masqueraded,
            remembered: state.remembered,
        })
    }

    /// Runs the base chains of `hook` by priority; a drop or reject ends the hook, accept ends
    /// only its own chain, and NAT set up by one nat chain skips the later ones (`nat` says
    /// whether nat chains run at all).
    fn run_hook(
        &self,
        hook: Hook,
        state: &mut State,
        mut nat: bool,
    ) -> Result<Option<Terminal>, TraceError> {
        let mut chains: Vec<_> = self
            .ruleset
            .chains
            .iter()
            .filter_map(|(name, chain)| chain.base.filter(|b| b.hook == hook).map(|b| (b, name)))
            .collect();
        chains.sort_by_key(|(base, _)| base.priority);
        let mut settled = None;
        for (base, name) in chains {
            if base.kind == ChainKind::Nat && !nat {
                continue;
            }
            match self.run_chain(name, state, 0)? {
                Flow::Continue | Flow::Stop(Terminal::Accept) => {}
                Flow::Stop(terminal @ (Terminal::Drop | Terminal::Reject(_))) => {
                    return Ok(Some(terminal));
                }
                Flow::Stop(terminal) => {
                    nat = false;
                    settled = Some(terminal);
                }
            }
        }
        Ok(settled)
    }

    fn run_chain(&self, name: &str, state: &mut State, depth: usize) -> Result<Flow, TraceError> {
        if depth > MAX_DEPTH {
            return Err(TraceError::TooDeep(name.to_owned()));
        }
        let chain = self
            .ruleset
            .chains
            .get(name)
            .ok_or_else(|| TraceError::MissingChain(name.to_owned()))?;
        'rules: for rule in &chain.rules {
            for m in &rule.matches {
                if !self.matches(m, state)? {
                    continue 'rules;
                }
            }
            for statement in &rule.statements {
                match self.run_statement(name, statement, state, depth)? {
                    Step::Next => {}
                    Step::NextRule => continue 'rules,
                    Step::Leave(flow) => return Ok(flow),
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn run_statement(
        &self,
        chain: &str,
        statement: &Statement,
        state: &mut State,
        depth: usize,
    ) -> Result<Step, TraceError> {
        Ok(match statement {
            Statement::Verdict(verdict) => self.verdict_step(verdict, state, depth)?,
            Statement::Vmap { key, map } => match self.lookup(map, *key, state)? {
                Some(Some(verdict)) => self.verdict_step(&verdict, state, depth)?,
                Some(None) | None => Step::NextRule,
            },
            Statement::SetMarkBits(bits) => {
                state.mark |= bits;
                Step::Next
            }
            Statement::ClearMarkBits(bits) => {
                state.mark &= !bits;
                Step::Next
            }
            Statement::Masquerade => Step::Leave(Flow::Stop(Terminal::Masquerade)),
            Statement::Reject(reject) => Step::Leave(Flow::Stop(Terminal::Reject(*reject))),
            Statement::Dnat { family, endpoints } => {
                check_dnat(chain, *family, endpoints, state)?;
                Step::Leave(Flow::Stop(Terminal::Dnat(endpoints.clone())))
            }
            Statement::DnatTo(endpoint) => {
                let endpoints = vec![*endpoint];
                check_dnat(chain, Family::of(endpoint.address), &endpoints, state)?;
                Step::Leave(Flow::Stop(Terminal::Dnat(endpoints)))
            }
            Statement::Counter => Step::Next,
            Statement::Update { key, set } => {
                if !self.require_set(set)?.kind.is_dynamic() {
                    return Err(TraceError::StaticSetUpdated(set.clone()));
                }
                // A key of the other family fails its `meta nfproto` dependency.
                match state.element(*key) {
                    Some(element) => {
                        state.remembered.insert((set.clone(), element));
                        Step::Next
                    }
                    None => Step::NextRule,
                }
            }
        })
    }

    fn verdict_step(
        &self,
        verdict: &Verdict,
        state: &mut State,
        depth: usize,
    ) -> Result<Step, TraceError> {
        Ok(match verdict {
            Verdict::Accept => Step::Leave(Flow::Stop(Terminal::Accept)),
            Verdict::Drop => Step::Leave(Flow::Stop(Terminal::Drop)),
            Verdict::Return => Step::Leave(Flow::Continue),
            Verdict::Jump(target) => match self.run_chain(target, state, depth + 1)? {
                Flow::Continue => Step::Next,
                stop => Step::Leave(stop),
            },
            Verdict::Goto(target) => Step::Leave(self.run_chain(target, state, depth + 1)?),
        })
    }

    fn matches(&self, m: &Match, state: &State) -> Result<bool, TraceError> {
        let packet = &state.packet;
        Ok(match m {
            Match::Protocol(protocol) => packet.protocol == *protocol,
            // The tracer follows the first packet of a connection.
            Match::NewConnection => true,
            Match::Address {
                side,
                network,
                negated,
            } => {
                let address = match side {
                    Side::Source => packet.source,
                    Side::Destination => packet.destination,
                };
                // The family dependency fails whatever the negation says.
                Family::of(address) == Family::of(network.addr())
                    && network.contains(&address) != *negated
            }
            Match::DestinationPort(port) => packet.port == *port,
            Match::MarkBitSet(bits) => state.mark & bits != 0,
            Match::InSet { key, set } => self.lookup(set, *key, state)?.is_some(),
        })
    }

    /// Looks the packet's key up in a set: `None` when absent (or of another family),
    /// otherwise the element's data. Dynamic sets hold what the packet path added: what
    /// earlier connections left in memory and what this packet's own path added so far.
    fn lookup(
        &self,
        name: &str,
        key: Key,
        state: &State,
    ) -> Result<Option<Option<Verdict>>, TraceError> {
        let set = self.require_set(name)?;
        let Some(element) = state.element(key) else {
            return Ok(None);
        };
        if set.kind.family() != key.family() {
            return Ok(None);
        }
        if let Some(data) = set.elements.get(&element) {
            return Ok(Some(data.clone()));
        }
        let remembered = self.memory.contains(name, &element)
            || state.remembered.contains(&(name.to_owned(), element));
        Ok(remembered.then_some(None))
    }

    fn require_set(&self, name: &str) -> Result<&'a Set, TraceError> {
        self.ruleset
            .sets
            .get(name)
            .ok_or_else(|| TraceError::MissingSet(name.to_owned()))
    }
}

/// Per-connection state that statements read and change.
#[derive(Debug, Clone)]
struct State {
    /// The packet as it is now (its destination rewritten by DNAT).
    packet: Packet,
    /// The packet as it arrived: conntrack's original tuple.
    original: Packet,
    mark: u32,
    remembered: BTreeSet<(String, Element)>,
}

impl State {
    fn new(packet: &Packet) -> Self {
        Self {
            packet: *packet,
            original: *packet,
            mark: 0,
            remembered: BTreeSet::new(),
        }
    }

    fn family(&self) -> Family {
        Family::of(self.packet.destination)
    }

    /// The element `key` reads from this packet; `None` when the key is of another family.
    fn element(&self, key: Key) -> Option<Element> {
        if key.family() != self.family() {
            return None;
        }
        let frontend = |packet: &Packet| {
            Element::Frontend(Frontend {
                address: packet.destination,
                protocol: packet.protocol,
                port: packet.port,
            })
        };
        Some(match key {
            Key::Frontend(_) => frontend(&self.packet),
            Key::OriginalFrontend(_) => frontend(&self.original),
            Key::SourceAndDestination(_) => {
                Element::AddressPair(self.packet.source, self.packet.destination)
            }
            Key::Source(_) => Element::Address(self.packet.source),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Terminal {
    Accept,
    Drop,
    Reject(Reject),
    Masquerade,
    Dnat(Vec<RealServerKey>),
}

enum Flow {
    /// The chain ended or returned: the caller goes on with its next rule.
    Continue,
    Stop(Terminal),
}

enum Step {
    /// Go on with the rule's next statement.
    Next,
    /// The rule stopped matching (a map lookup missed): go on with the next rule.
    NextRule,
    /// Leave the chain.
    Leave(Flow),
}

fn check_dnat(
    chain: &str,
    family: Family,
    endpoints: &[RealServerKey],
    state: &State,
) -> Result<(), TraceError> {
    if family != state.family() || endpoints.iter().any(|e| Family::of(e.address) != family) {
        return Err(TraceError::FamilyMismatch {
            chain: chain.to_owned(),
            dnat: family,
            packet: state.family(),
        });
    }
    if endpoints.is_empty() {
        return Err(TraceError::EmptyDnat {
            chain: chain.to_owned(),
        });
    }
    Ok(())
}
