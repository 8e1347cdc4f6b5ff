//! A packet tracer over Ferry's own ruleset: which endpoints a new connection may reach,
//! whether it is masqueraded, dropped or rejected.
//!
//! Tests assert what a packet experiences instead of comparing rule text (kube-proxy's best
//! testing idea). The tracer interprets every [`Match`] and [`Statement`] with exhaustive
//! `match`es, so a rule kind it does not understand cannot be added without teaching it; a
//! reference to a missing chain or set, a loop, or a DNAT of the wrong family is an error that
//! fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use thiserror::Error;

use super::ruleset::{
    Element, Family, Frontend, Hook, Key, Match, Reject, Ruleset, Side, Statement, Verdict,
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

/// What happens to the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No service rule touched the destination.
    Accept { masqueraded: bool },
    /// DNAT to one of `endpoints` (each says whether that path is masqueraded); `affinity` is
    /// the set that remembers the choice for the client.
    Dnat {
        endpoints: BTreeMap<RealServerKey, bool>,
        affinity: Option<String>,
    },
    Drop,
    Reject(Reject),
}

impl Outcome {
    /// The endpoints the connection may reach (empty unless DNATed).
    pub fn endpoints(&self) -> BTreeSet<RealServerKey> {
        match self {
            Outcome::Dnat { endpoints, .. } => endpoints.keys().copied().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether every path of the connection is masqueraded.
    pub fn masqueraded(&self) -> bool {
        match self {
            Outcome::Accept { masqueraded } => *masqueraded,
            Outcome::Dnat { endpoints, .. } => endpoints.values().all(|m| *m),
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
}

/// The kernel's limit on nested jumps.
const MAX_DEPTH: usize = 16;

/// Traces the first packet of a connection through every hook it passes.
pub fn trace(ruleset: &Ruleset, packet: &Packet) -> Result<Outcome, TraceError> {
    let entry = match packet.origin {
        Origin::Interface => Hook::Prerouting,
        Origin::Node => Hook::Output,
    };
    let mut state = State::new(packet);
    match run_hook(ruleset, entry, &mut state)? {
        Some(Terminal::Drop) => return Ok(Outcome::Drop),
        Some(Terminal::Reject(reject)) => return Ok(Outcome::Reject(reject)),
        Some(Terminal::Dnat { endpoints, affinity }) => {
            let mut paths = BTreeMap::new();
            for endpoint in endpoints {
                let mut after = state.clone();
                after.packet.destination = endpoint.address;
                after.packet.port = endpoint.port;
                paths.insert(endpoint, postrouting_masquerades(ruleset, &mut after)?);
            }
            return Ok(Outcome::Dnat {
                endpoints: paths,
                affinity,
            });
        }
        Some(Terminal::Accept | Terminal::Masquerade) | None => {}
    }
    let masqueraded = postrouting_masquerades(ruleset, &mut state)?;
    Ok(Outcome::Accept { masqueraded })
}

fn postrouting_masquerades(ruleset: &Ruleset, state: &mut State) -> Result<bool, TraceError> {
    Ok(run_hook(ruleset, Hook::Postrouting, state)? == Some(Terminal::Masquerade))
}

/// Per-packet state that statements change.
#[derive(Debug, Clone)]
struct State {
    packet: Packet,
    mark: u32,
    /// What a `RememberEndpoint` in this packet's path wrote: (affinity set, endpoints).
    remembered: Option<(String, Vec<RealServerKey>)>,
}

impl State {
    fn new(packet: &Packet) -> Self {
        Self {
            packet: *packet,
            mark: 0,
            remembered: None,
        }
    }

    fn family(&self) -> Family {
        Family::of(self.packet.destination)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Terminal {
    Accept,
    Drop,
    Reject(Reject),
    Masquerade,
    Dnat {
        endpoints: Vec<RealServerKey>,
        affinity: Option<String>,
    },
}

/// Runs the base chains of `hook` by priority; a terminal verdict other than accept ends the
/// hook (accept ends only its own chain, as in the kernel).
fn run_hook(ruleset: &Ruleset, hook: Hook, state: &mut State) -> Result<Option<Terminal>, TraceError> {
    let mut chains: Vec<_> = ruleset
        .chains
        .iter()
        .filter_map(|(name, chain)| chain.base.filter(|b| b.hook == hook).map(|b| (b.priority, name)))
        .collect();
    chains.sort();
    let mut last = None;
    for (_, name) in chains {
        match run_chain(ruleset, name, state, 0)? {
            Flow::Continue | Flow::Stop(Terminal::Accept) => {}
            Flow::Stop(terminal) => {
                if matches!(terminal, Terminal::Drop | Terminal::Reject(_)) {
                    return Ok(Some(terminal));
                }
                last = Some(terminal);
            }
        }
    }
    Ok(last)
}

enum Flow {
    /// The chain ended or returned: the caller goes on with its next rule.
    Continue,
    Stop(Terminal),
}

fn run_chain(ruleset: &Ruleset, name: &str, state: &mut State, depth: usize) -> Result<Flow, TraceError> {
    if depth > MAX_DEPTH {
        return Err(TraceError::TooDeep(name.to_owned()));
    }
    let chain = ruleset
        .chains
        .get(name)
        .ok_or_else(|| TraceError::MissingChain(name.to_owned()))?;
    'rules: for rule in &chain.rules {
        for m in &rule.matches {
            if !matches(ruleset, m, state)? {
                continue 'rules;
            }
        }
        for statement in &rule.statements {
            match run_statement(ruleset, name, statement, state, depth)? {
                Step::Next => {}
                Step::NextRule => continue 'rules,
                Step::Leave(flow) => return Ok(flow),
            }
        }
    }
    Ok(Flow::Continue)
}

enum Step {
    /// Go on with the rule's next statement.
    Next,
    /// The rule stopped matching (a map lookup missed): go on with the next rule.
    NextRule,
    /// Leave the chain.
    Leave(Flow),
}

fn run_statement(
    ruleset: &Ruleset,
    chain: &str,
    statement: &Statement,
    state: &mut State,
    depth: usize,
) -> Result<Step, TraceError> {
    Ok(match statement {
        Statement::Verdict(verdict) => verdict_step(ruleset, verdict, state, depth)?,
        Statement::Vmap { key, map } => match lookup(ruleset, map, *key, state)? {
            Some(Some(verdict)) => verdict_step(ruleset, &verdict, state, depth)?,
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
            let endpoints = endpoints.clone();
            Step::Leave(Flow::Stop(Terminal::Dnat { endpoints, affinity: None }))
        }
        Statement::RememberEndpoint {
            family,
            affinity,
            endpoints,
        } => {
            check_dnat(chain, *family, endpoints, state)?;
            require_set(ruleset, affinity)?;
            state.remembered = Some((affinity.clone(), endpoints.clone()));
            Step::Next
        }
        Statement::DnatRemembered { family, affinity } => {
            require_set(ruleset, affinity)?;
            match &state.remembered {
                Some((set, endpoints)) if set == affinity => {
                    check_dnat(chain, *family, endpoints, state)?;
                    let terminal = Terminal::Dnat {
                        endpoints: endpoints.clone(),
                        affinity: Some(affinity.clone()),
                    };
                    Step::Leave(Flow::Stop(terminal))
                }
                _ => Step::NextRule,
            }
        }
    })
}

fn verdict_step(ruleset: &Ruleset, verdict: &Verdict, state: &mut State, depth: usize) -> Result<Step, TraceError> {
    Ok(match verdict {
        Verdict::Accept => Step::Leave(Flow::Stop(Terminal::Accept)),
        Verdict::Drop => Step::Leave(Flow::Stop(Terminal::Drop)),
        Verdict::Return => Step::Leave(Flow::Continue),
        Verdict::Jump(target) => match run_chain(ruleset, target, state, depth + 1)? {
            Flow::Continue => Step::Next,
            stop => Step::Leave(stop),
        },
        Verdict::Goto(target) => Step::Leave(run_chain(ruleset, target, state, depth + 1)?),
    })
}

fn check_dnat(chain: &str, family: Family, endpoints: &[RealServerKey], state: &State) -> Result<(), TraceError> {
    if family != state.family() || endpoints.iter().any(|e| Family::of(e.address) != family) {
        return Err(TraceError::FamilyMismatch {
            chain: chain.to_owned(),
            dnat: family,
            packet: state.family(),
        });
    }
    if endpoints.is_empty() {
        return Err(TraceError::EmptyDnat { chain: chain.to_owned() });
    }
    Ok(())
}

fn matches(ruleset: &Ruleset, m: &Match, state: &State) -> Result<bool, TraceError> {
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
            Family::of(address) == Family::of(network.addr()) && network.contains(&address) != *negated
        }
        Match::MarkBitSet(bits) => state.mark & bits != 0,
        Match::InSet { key, set } => lookup(ruleset, set, *key, state)?.is_some(),
    })
}

/// Looks the packet's key up in a set: `None` when absent (or of another family), otherwise
/// the element's data.
fn lookup(ruleset: &Ruleset, set: &str, key: Key, state: &State) -> Result<Option<Option<Verdict>>, TraceError> {
    let set = require_set(ruleset, set)?;
    if key.family() != state.family() || set.kind.family() != key.family() {
        return Ok(None);
    }
    let packet = &state.packet;
    let element = match key {
        Key::Frontend(_) => Element::Frontend(Frontend {
            address: packet.destination,
            protocol: packet.protocol,
            port: packet.port,
        }),
        Key::SourceAndDestination(_) => Element::AddressPair(packet.source, packet.destination),
    };
    Ok(set.elements.get(&element).cloned())
}

fn require_set<'a>(ruleset: &'a Ruleset, name: &str) -> Result<&'a super::ruleset::Set, TraceError> {
    ruleset
        .sets
        .get(name)
        .ok_or_else(|| TraceError::MissingSet(name.to_owned()))
}
