//! Renders a [`Ruleset`] as `nft list table inet ferry` prints it, for golden tests, for
//! comparing with what the kernel holds (`nft` is the oracle) and for debugging.
//!
//! Sets come first, then chains, each in name order (the order Ferry creates them on a full
//! sync); elements are on one line. nft wraps long element lists and lists objects in the
//! order they were created, so comparisons with nft's output normalise both.

use std::fmt::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use super::ruleset::{
    AFFINITY_SET_SIZE, BaseChain, Chain, ChainKind, Element, Family, Hook, Key, Match, Reject,
    Rule, Ruleset, Set, SetKind, Side, Statement, TABLE_NAME, Verdict, protocol_name,
};
use crate::model::types::RealServerKey;

/// The whole table in nft syntax.
pub fn render(ruleset: &Ruleset) -> String {
    let mut blocks: Vec<String> = Vec::new();
    blocks.extend(ruleset.sets.iter().map(|(name, set)| render_set(name, set)));
    blocks.extend(
        ruleset
            .chains
            .iter()
            .map(|(name, chain)| render_chain(name, chain)),
    );
    format!("table inet {TABLE_NAME} {{\n{}}}\n", blocks.join("\n"))
}

fn render_set(name: &str, set: &Set) -> String {
    let keyword = match set.kind {
        SetKind::Frontends(_) | SetKind::AddressPairs(_) | SetKind::Affinity { .. } => "set",
        SetKind::FrontendVerdicts(_) => "map",
    };
    let mut out = format!("\t{keyword} {name} {{\n\t\ttype {}\n", set_type(set.kind));
    if let SetKind::Affinity { timeout, .. } = set.kind {
        let _ = write!(
            out,
            "\t\tsize {}\n\t\tflags dynamic,timeout\n\t\ttimeout {}\n",
            AFFINITY_SET_SIZE,
            duration(timeout)
        );
    }
    if !set.elements.is_empty() {
        let elements: Vec<String> = set
            .elements
            .iter()
            .map(|(element, data)| match data {
                Some(verdict) => format!("{} : {}", element_text(element), verdict_text(verdict)),
                None => element_text(element),
            })
            .collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
    out
}

fn set_type(kind: SetKind) -> String {
    let address = |family| match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    };
    match kind {
        SetKind::FrontendVerdicts(f) => {
            format!("{} . inet_proto . inet_service : verdict", address(f))
        }
        SetKind::Frontends(f) => format!("{} . inet_proto . inet_service", address(f)),
        SetKind::AddressPairs(f) => format!("{0} . {0}", address(f)),
        SetKind::Affinity { family, .. } => address(family).to_owned(),
    }
}

fn element_text(element: &Element) -> String {
    match element {
        Element::Frontend(frontend) => frontend.to_string(),
        Element::AddressPair(a, b) => format!("{a} . {b}"),
        Element::Address(address) => address.to_string(),
    }
}

/// nft's time format: `3h`, `1h30m`, `10s`.
fn duration(duration: Duration) -> String {
    let mut left = duration.as_millis();
    let mut out = String::new();
    for (unit, millis) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if left >= millis {
            let _ = write!(out, "{}{unit}", left / millis);
            left %= millis;
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

fn render_chain(name: &str, chain: &Chain) -> String {
    let mut out = format!("\tchain {name} {{\n");
    if let Some(base) = chain.base {
        let _ = writeln!(out, "\t\t{}", base_text(base));
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(rule));
    }
    out.push_str("\t}\n");
    out
}

fn base_text(base: BaseChain) -> String {
    let kind = match base.kind {
        ChainKind::Filter => "filter",
        ChainKind::Nat => "nat",
    };
    let hook = match base.hook {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Output => "output",
        Hook::Postrouting => "postrouting",
    };
    format!(
        "type {kind} hook {hook} priority {}; policy accept;",
        priority_text(base.hook, base.priority)
    )
}

/// nft (1.0.6) names the standard NAT priorities only on these hooks.
fn priority_text(hook: Hook, priority: i32) -> String {
    let (name, standard) = match hook {
        Hook::Prerouting => ("dstnat", -100),
        Hook::Postrouting => ("srcnat", 100),
        Hook::Input | Hook::Output => return priority.to_string(),
    };
    match priority - standard {
        0 => name.to_owned(),
        offset if offset < 0 => format!("{name} - {}", -offset),
        offset => format!("{name} + {offset}"),
    }
}

/// One rule as nft prints it.
pub fn rule_text(rule: &Rule) -> String {
    let matches = rule.matches.iter().map(match_text);
    let statements = rule.statements.iter().map(statement_text);
    matches.chain(statements).collect::<Vec<_>>().join(" ")
}

fn match_text(m: &Match) -> String {
    match m {
        Match::Protocol(protocol) => format!("meta l4proto {}", protocol_name(*protocol)),
        Match::NewConnection => "ct state new".to_owned(),
        Match::Address {
            side,
            network,
            negated,
        } => {
            let field = address_field(Family::of(network.addr()), *side);
            let operator = if *negated { "!= " } else { "" };
            let value = if network.prefix_len() == network.max_prefix_len() {
                network.addr().to_string()
            } else {
                network.to_string()
            };
            format!("{field} {operator}{value}")
        }
        Match::DestinationPort(port) => format!("th dport {port}"),
        Match::MarkBitSet(bits) => format!("meta mark & {bits:#010x} != 0x00000000"),
        Match::InSet { key, set } => format!("{} @{set}", key_text(*key)),
    }
}

fn address_field(family: Family, side: Side) -> String {
    let protocol = match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    let field = match side {
        Side::Source => "saddr",
        Side::Destination => "daddr",
    };
    format!("{protocol} {field}")
}

fn key_text(key: Key) -> String {
    match key {
        Key::Frontend(f) => format!(
            "{} . meta l4proto . th dport",
            address_field(f, Side::Destination)
        ),
        Key::OriginalFrontend(f) => format!(
            "ct original {} . meta l4proto . ct original proto-dst",
            address_field(f, Side::Destination)
        ),
        Key::SourceAndDestination(f) => format!(
            "{} . {}",
            address_field(f, Side::Source),
            address_field(f, Side::Destination)
        ),
        Key::Source(f) => address_field(f, Side::Source),
    }
}

fn nat_family(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn statement_text(statement: &Statement) -> String {
    match statement {
        Statement::Verdict(verdict) => verdict_text(verdict),
        Statement::Vmap { key, map } => format!("{} vmap @{map}", key_text(*key)),
        Statement::SetMarkBits(bits) => format!("meta mark set meta mark | {bits:#010x}"),
        Statement::ClearMarkBits(bits) => format!("meta mark set meta mark & {:#010x}", !bits),
        Statement::Masquerade => "masquerade fully-random".to_owned(),
        Statement::Reject(Reject::TcpReset) => "reject with tcp reset".to_owned(),
        Statement::Reject(Reject::PortUnreachable) => "reject".to_owned(),
        Statement::Dnat { family, endpoints } => format!(
            "dnat {} to {}",
            nat_family(*family),
            random_endpoint(endpoints)
        ),
        Statement::DnatTo(endpoint) => {
            let family = Family::of(endpoint.address);
            let target = match endpoint.address {
                IpAddr::V4(address) => address.to_string(),
                IpAddr::V6(address) => format!("[{address}]"),
            };
            format!("dnat {} to {target}:{}", nat_family(family), endpoint.port)
        }
        Statement::Update { key, set } => format!("update @{set} {{ {} }}", key_text(*key)),
        Statement::Counter => "counter".to_owned(),
    }
}

fn random_endpoint(endpoints: &[RealServerKey]) -> String {
    format!(
        "numgen random mod {} map {}",
        endpoints.len(),
        endpoint_map(endpoints)
    )
}

fn endpoint_map(endpoints: &[RealServerKey]) -> String {
    let entries: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| format!("{index} : {}", EndpointText(endpoint)))
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// `address . port`, as nft prints map data.
struct EndpointText<'a>(&'a RealServerKey);

impl fmt::Display for EndpointText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address: IpAddr = self.0.address;
        write!(f, "{address} . {}", self.0.port)
    }
}

fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Accept => "accept".to_owned(),
        Verdict::Drop => "drop".to_owned(),
        Verdict::Return => "return".to_owned(),
        Verdict::Jump(chain) => format!("jump {chain}"),
        Verdict::Goto(chain) => format!("goto {chain}"),
    }
}
