//! The pure translation of the desired model into Ferry's nftables ruleset.
//!
//! Layout (one `inet ferry` table; names are stable so the diff can touch one Service only):
//! - `filter-prerouting` / `filter-output` (filter, before DNAT at dstnat-10) send new
//!   connections through `firewall-check` (`loadBalancerSourceRanges`) and `endpoints-check`
//!   (reject or drop for frontends without endpoints), each a verdict-map lookup on
//!   (daddr . l4proto . dport);
//! - `nat-prerouting` / `nat-output` jump to `services`, which marks connections that need
//!   masquerading (set membership) and dispatches through `services-<family>` to a chain per
//!   Service port and endpoint selection, which counts the connection (`counter`: the
//!   per-Service connection metric) and DNATs with `numgen random mod N map { … }`: no chain
//!   per endpoint;
//! - `nat-postrouting` masquerades marked connections and hairpin ones (an endpoint reaching
//!   itself through its Service).
//!
//! NodePorts are frontends on the node addresses the model chose, so they use the same maps as
//! ClusterIPs instead of a `fib daddr type local` lookup.
//!
//! `sessionAffinity: ClientIP` keeps, per Service port and endpoint, a dynamic set of the
//! clients that stick to that endpoint (`affinity-<chain>__<endpoint>`, kube-proxy's scheme
//! without its chain per endpoint):
//! - the Service's chain first DNATs a client found in one of those sets to that set's endpoint
//!   (`ip saddr @affinity-… dnat ip to 10.244.1.5:8080`, one rule per endpoint), and otherwise
//!   picks one with the usual `numgen` rule;
//! - after DNAT, `nat-postrouting` (connections leaving the node or made by it) and `nat-input`
//!   (connections to an endpoint on the node's own network, which never reach postrouting)
//!   jump to `remember-clients`. It finds the Service again by the connection's original
//!   destination (`remember-clients-<family>`), and the Service's `remember-<chain>` adds the
//!   client to the set of the endpoint the packet now goes to, restarting its timeout. Being
//!   nat chains, they run once per connection, at whichever of the two hooks comes first.
//!
//! Every rule is a single lookup feeding a statement: the earlier layout (a map lookup feeding
//! another map lookup in one `dnat`) runs in the kernel but crashes `nft` 1.0.6 when operators
//! list the table. An endpoint that goes away takes its set, and so its clients, with it; the
//! clients of the endpoints that stay keep sticking to them. The price is two rules per
//! endpoint for Services with affinity (new connections walk them), and a changed timeout
//! recreates the sets, forgetting every client.

use std::collections::btree_map::Entry;

use ipnet::IpNet;
use tracing::warn;

use super::ruleset::{
    BaseChain, Chain, ChainKind, Element, Family, Frontend, Hook, Key, MASQUERADE_MARK, Match,
    Reject, Rule, Ruleset, Set, SetKind, Side, Statement, Verdict, protocol_name,
};
use crate::model::types::{Protocol, RealServerKey, VirtualServerKey};
use crate::model::{Desired, Frontend as ModelFrontend, Masquerade, NoEndpoints, TrafficPolicy};

/// Names of the fixed objects of the layout.
pub mod names {
    pub const FILTER_PREROUTING: &str = "filter-prerouting";
    pub const FILTER_OUTPUT: &str = "filter-output";
    pub const NAT_PREROUTING: &str = "nat-prerouting";
    pub const NAT_OUTPUT: &str = "nat-output";
    pub const NAT_POSTROUTING: &str = "nat-postrouting";
    pub const NAT_INPUT: &str = "nat-input";
    pub const FIREWALL_CHECK: &str = "firewall-check";
    pub const ENDPOINTS_CHECK: &str = "endpoints-check";
    pub const SERVICES: &str = "services";
    pub const REMEMBER_CLIENTS: &str = "remember-clients";
    pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
    pub const MARK_FROM_OUTSIDE_CLUSTER: &str = "mark-from-outside-cluster";
    pub const MASQUERADING: &str = "masquerading";
    pub const REJECT: &str = "reject-no-endpoints";

    use super::Family;

    pub fn services(family: Family) -> String {
        format!("services-{}", family.suffix())
    }
    pub fn no_endpoints(family: Family) -> String {
        format!("no-endpoints-{}", family.suffix())
    }
    pub fn firewall(family: Family) -> String {
        format!("firewall-{}", family.suffix())
    }
    /// Frontends whose every connection is masqueraded.
    pub fn masquerade(family: Family) -> String {
        format!("masquerade-{}", family.suffix())
    }
    /// Frontends whose connections from outside the cluster CIDRs are masqueraded.
    pub fn masquerade_outside(family: Family) -> String {
        format!("masquerade-outside-{}", family.suffix())
    }
    pub fn hairpin(family: Family) -> String {
        format!("hairpin-{}", family.suffix())
    }
    /// Frontends of `sessionAffinity: ClientIP` Services → the chain that remembers the client.
    pub fn remember_clients(family: Family) -> String {
        format!("remember-clients-{}", family.suffix())
    }
}

/// Priority of the filter chains: before DNAT (`dstnat`, -100) rewrites the destination.
const FILTER_PRIORITY: i32 = -110;
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
const DSTNAT_PRIORITY: i32 = -100;
const SRCNAT_PRIORITY: i32 = 100;

/// Builds the ruleset for `desired`. `cluster_cidrs` are the pod CIDRs: ClusterIP traffic from
/// outside them is masqueraded when the model asks for it (the model keeps the CIDRs in its
/// configuration, not in `Desired`).
pub fn build(desired: &Desired, cluster_cidrs: &[IpNet]) -> Ruleset {
    let mut ruleset = skeleton(cluster_cidrs);
    for (key, frontend) in desired.virtual_servers() {
        add_frontend(&mut ruleset, key, frontend);
    }
    for hairpin in desired.hairpin_endpoints() {
        let address = hairpin.endpoint.address;
        let set = names::hairpin(Family::of(address));
        insert_element(
            &mut ruleset,
            &set,
            Element::AddressPair(address, address),
            None,
        );
    }
    ruleset
}

/// The fixed chains and sets, present whatever the Services.
fn skeleton(cluster_cidrs: &[IpNet]) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let checks = [names::FIREWALL_CHECK, names::ENDPOINTS_CHECK]
        .map(|check| Rule::new(vec![Match::NewConnection], vec![jump(check)]));
    let base = |kind, hook, priority, rules: Vec<Rule>| Chain {
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
        rules,
    };
    let chains = [
        (
            names::FILTER_PREROUTING,
            base(
                ChainKind::Filter,
                Hook::Prerouting,
                FILTER_PRIORITY,
                checks.to_vec(),
            ),
        ),
        (
            names::FILTER_OUTPUT,
            base(
                ChainKind::Filter,
                Hook::Output,
                FILTER_PRIORITY,
                checks.to_vec(),
            ),
        ),
        (
            names::NAT_PREROUTING,
            base(
                ChainKind::Nat,
                Hook::Prerouting,
                DSTNAT_PRIORITY,
                vec![always(jump(names::SERVICES))],
            ),
        ),
        (
            names::NAT_OUTPUT,
            base(
                ChainKind::Nat,
                Hook::Output,
                DSTNAT_PRIORITY,
                vec![always(jump(names::SERVICES))],
            ),
        ),
        (
            names::NAT_POSTROUTING,
            base(
                ChainKind::Nat,
                Hook::Postrouting,
                SRCNAT_PRIORITY,
                // Before masquerading, which ends the chain and hides the client's address.
                vec![
                    always(jump(names::REMEMBER_CLIENTS)),
                    always(jump(names::MASQUERADING)),
                ],
            ),
        ),
        (
            names::NAT_INPUT,
            base(
                ChainKind::Nat,
                Hook::Input,
                SRCNAT_PRIORITY,
                vec![always(jump(names::REMEMBER_CLIENTS))],
            ),
        ),
        (
            names::FIREWALL_CHECK,
            regular(per_family(|f| vmap(f, names::firewall(f)))),
        ),
        (
            names::ENDPOINTS_CHECK,
            regular(per_family(|f| vmap(f, names::no_endpoints(f)))),
        ),
        (names::SERVICES, regular(services_rules())),
        (names::REMEMBER_CLIENTS, regular(remember_clients_rules())),
        (
            names::MARK_FOR_MASQUERADE,
            regular(vec![always(Statement::SetMarkBits(MASQUERADE_MARK))]),
        ),
        (
            names::MARK_FROM_OUTSIDE_CLUSTER,
            regular(outside_cluster_rules(cluster_cidrs)),
        ),
        (names::MASQUERADING, regular(masquerading_rules())),
        (names::REJECT, regular(reject_rules())),
    ];
    ruleset.chains = chains
        .into_iter()
        .map(|(name, chain)| (name.to_owned(), chain))
        .collect();
    for family in Family::BOTH {
        let sets = [
            (names::services(family), SetKind::FrontendVerdicts(family)),
            (
                names::no_endpoints(family),
                SetKind::FrontendVerdicts(family),
            ),
            (names::firewall(family), SetKind::FrontendVerdicts(family)),
            (names::masquerade(family), SetKind::Frontends(family)),
            (
                names::masquerade_outside(family),
                SetKind::Frontends(family),
            ),
            (names::hairpin(family), SetKind::AddressPairs(family)),
            (
                names::remember_clients(family),
                SetKind::FrontendVerdicts(family),
            ),
        ];
        ruleset
            .sets
            .extend(sets.map(|(name, kind)| (name, Set::new(kind))));
    }
    ruleset
}

fn regular(rules: Vec<Rule>) -> Chain {
    Chain { base: None, rules }
}

fn always(statement: Statement) -> Rule {
    Rule::new(Vec::new(), vec![statement])
}

fn jump(chain: &str) -> Statement {
    Statement::Verdict(Verdict::Jump(chain.to_owned()))
}

fn per_family(rule: impl Fn(Family) -> Rule) -> Vec<Rule> {
    Family::BOTH.into_iter().map(rule).collect()
}

fn vmap(family: Family, map: String) -> Rule {
    Rule::new(
        Vec::new(),
        vec![Statement::Vmap {
            key: Key::Frontend(family),
            map,
        }],
    )
}

/// One rule per family and protocol: `nft` (1.0.6) gives `ct original proto-dst` a type, and so
/// can list it inside a concatenation, only after a match on the protocol.
fn remember_clients_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for family in Family::BOTH {
        for protocol in PROTOCOLS {
            rules.push(Rule::new(
                vec![Match::Protocol(protocol)],
                vec![Statement::Vmap {
                    key: Key::OriginalFrontend(family),
                    map: names::remember_clients(family),
                }],
            ));
        }
    }
    rules
}

fn in_set(key: Key, set: String) -> Match {
    Match::InSet { key, set }
}

/// Mark first (set membership), then dispatch: the mark must be set whichever chain the
/// dispatch continues in.
fn services_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for family in Family::BOTH {
        let key = Key::Frontend(family);
        let mark = |set, chain| Rule::new(vec![in_set(key, set)], vec![jump(chain)]);
        rules.push(mark(names::masquerade(family), names::MARK_FOR_MASQUERADE));
        rules.push(mark(
            names::masquerade_outside(family),
            names::MARK_FROM_OUTSIDE_CLUSTER,
        ));
    }
    rules.extend(per_family(|f| vmap(f, names::services(f))));
    rules
}

/// Returns for sources inside a cluster CIDR, marks the rest.
fn outside_cluster_rules(cluster_cidrs: &[IpNet]) -> Vec<Rule> {
    let inside = cluster_cidrs.iter().map(|&network| {
        let matches = vec![Match::Address {
            side: Side::Source,
            network,
            negated: false,
        }];
        Rule::new(matches, vec![Statement::Verdict(Verdict::Return)])
    });
    inside
        .chain([always(Statement::SetMarkBits(MASQUERADE_MARK))])
        .collect()
}

/// Hairpin connections get the mark too; marked ones lose it (so a packet that loops back
/// through the node is not masqueraded twice) and are masqueraded.
fn masquerading_rules() -> Vec<Rule> {
    let mut rules = per_family(|family| {
        let key = Key::SourceAndDestination(family);
        Rule::new(
            vec![in_set(key, names::hairpin(family))],
            vec![Statement::SetMarkBits(MASQUERADE_MARK)],
        )
    });
    rules.push(Rule::new(
        vec![Match::MarkBitSet(MASQUERADE_MARK)],
        vec![
            Statement::ClearMarkBits(MASQUERADE_MARK),
            Statement::Masquerade,
        ],
    ));
    rules
}

/// TCP clients get a reset, everything else an ICMP port unreachable: both fail at once.
fn reject_rules() -> Vec<Rule> {
    vec![
        Rule::new(
            vec![Match::Protocol(Protocol::Tcp)],
            vec![Statement::Reject(Reject::TcpReset)],
        ),
        always(Statement::Reject(Reject::PortUnreachable)),
    ]
}

fn add_frontend(ruleset: &mut Ruleset, key: &VirtualServerKey, frontend: &ModelFrontend) {
    let family = Family::of(key.address);
    let element = Element::Frontend(Frontend {
        address: key.address,
        protocol: key.protocol,
        port: key.port,
    });
    if !frontend.source_ranges.is_empty() {
        let chain = add_firewall_chain(ruleset, family, frontend);
        insert_element(
            ruleset,
            &names::firewall(family),
            element,
            Some(Verdict::Goto(chain)),
        );
    }
    let endpoints: Vec<RealServerKey> = frontend
        .server
        .real_servers
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .map(|(endpoint, _)| *endpoint)
        .collect();
    if endpoints.is_empty() {
        let verdict = match frontend.no_endpoints {
            Some(NoEndpoints::Drop) => Verdict::Drop,
            Some(NoEndpoints::Reject) | None => Verdict::Goto(names::REJECT.to_owned()),
        };
        insert_element(
            ruleset,
            &names::no_endpoints(family),
            element,
            Some(verdict),
        );
        return;
    }
    let chains = add_service_chains(ruleset, key, frontend, endpoints);
    insert_element(
        ruleset,
        &names::services(family),
        element,
        Some(Verdict::Goto(chains.service)),
    );
    if let Some(remember) = chains.remember {
        insert_element(
            ruleset,
            &names::remember_clients(family),
            element,
            Some(Verdict::Goto(remember)),
        );
    }
    let masquerade_set = match frontend.masquerade {
        Masquerade::Always => Some(names::masquerade(family)),
        Masquerade::FromOutsideCluster => Some(names::masquerade_outside(family)),
        Masquerade::Never => None,
    };
    if let Some(set) = masquerade_set {
        insert_element(ruleset, &set, element, None);
    }
}

/// The chains a frontend's connections go through: the one that picks the endpoint, and, for
/// a Service with affinity, the one that remembers the client afterwards.
struct ServiceChains {
    service: String,
    remember: Option<String>,
}

/// The chain that picks an endpoint for a frontend's new connections, which it counts first
/// (`ferry_proxy_service_connections_total`): one per Service port, family and endpoint
/// selection, e.g. `svc-ipv4-default/web/tcp/80`.
pub fn service_chain(key: &VirtualServerKey, frontend: &ModelFrontend) -> String {
    let selection = match frontend.traffic_policy {
        TrafficPolicy::Cluster => "svc",
        TrafficPolicy::Local => "local",
    };
    format!(
        "{selection}-{}-{}/{}/{}/{}",
        Family::of(key.address).suffix(),
        frontend.service.service.namespace,
        frontend.service.service.name,
        protocol_name(key.protocol),
        frontend.service.port,
    )
}

/// The chains (and affinity sets) of one Service port, family and endpoint selection, shared
/// by every frontend that uses the same endpoints (ClusterIP and NodePort, say).
fn add_service_chains(
    ruleset: &mut Ruleset,
    key: &VirtualServerKey,
    frontend: &ModelFrontend,
    endpoints: Vec<RealServerKey>,
) -> ServiceChains {
    let family = Family::of(key.address);
    let service = service_chain(key, frontend);
    let pick_random = Rule::new(
        vec![Match::Protocol(key.protocol)],
        vec![Statement::Dnat {
            family,
            endpoints: endpoints.clone(),
        }],
    );
    let remember = match frontend.server.params.persistence {
        None => {
            let rules = vec![always(Statement::Counter), pick_random];
            insert_chain(ruleset, &service, regular(rules));
            None
        }
        Some(timeout) => {
            let affinity = Affinity {
                service: &service,
                protocol: key.protocol,
                kind: SetKind::Affinity { family, timeout },
            };
            Some(affinity.add(ruleset, endpoints, pick_random))
        }
    };
    ServiceChains { service, remember }
}

/// Session affinity for one Service chain.
struct Affinity<'a> {
    service: &'a str,
    protocol: Protocol,
    kind: SetKind,
}

impl Affinity<'_> {
    /// Adds the set of each endpoint, the Service chain (remembered clients first, then
    /// `pick_random`) and the chain that remembers; returns the latter's name.
    fn add(
        &self,
        ruleset: &mut Ruleset,
        endpoints: Vec<RealServerKey>,
        pick_random: Rule,
    ) -> String {
        let family = self.kind.family();
        let mut pick = vec![always(Statement::Counter)];
        let mut remember = Vec::new();
        for endpoint in endpoints {
            let set = affinity_set(self.service, &endpoint);
            ruleset.sets.insert(set.clone(), Set::new(self.kind));
            let known_client = Match::InSet {
                key: Key::Source(family),
                set: set.clone(),
            };
            pick.push(Rule::new(
                vec![Match::Protocol(self.protocol), known_client],
                vec![Statement::DnatTo(endpoint)],
            ));
            let to_endpoint = vec![
                Match::Address {
                    side: Side::Destination,
                    network: IpNet::from(endpoint.address),
                    negated: false,
                },
                Match::DestinationPort(endpoint.port),
            ];
            let update = Statement::Update {
                key: Key::Source(family),
                set,
            };
            remember.push(Rule::new(to_endpoint, vec![update]));
        }
        pick.push(pick_random);
        let remember_chain = format!("remember-{}", self.service);
        insert_chain(ruleset, self.service, regular(pick));
        insert_chain(ruleset, &remember_chain, regular(remember));
        remember_chain
    }
}

/// `affinity-<chain>__10.244.1.5/8080`: kube-proxy's spelling of an endpoint in a name
/// (`:` becomes `/`), which nft accepts unquoted.
fn affinity_set(service_chain: &str, endpoint: &RealServerKey) -> String {
    let address = endpoint.address.to_string().replace(':', "/");
    format!("affinity-{service_chain}__{address}/{}", endpoint.port)
}

/// Accepts the allowed sources (by returning) and drops the rest.
fn add_firewall_chain(ruleset: &mut Ruleset, family: Family, frontend: &ModelFrontend) -> String {
    let service = &frontend.service.service;
    let name = format!(
        "firewall-{}-{}/{}",
        family.suffix(),
        service.namespace,
        service.name
    );
    let allowed = frontend
        .source_ranges
        .iter()
        .filter(|range| Family::of(range.addr()) == family)
        .map(|&network| {
            let matches = vec![Match::Address {
                side: Side::Source,
                network,
                negated: false,
            }];
            Rule::new(matches, vec![Statement::Verdict(Verdict::Return)])
        });
    let rules = allowed
        .chain([always(Statement::Verdict(Verdict::Drop))])
        .collect();
    insert_chain(ruleset, &name, regular(rules));
    name
}

/// Chains are shared by frontends of the same selection, which the model builds alike; a
/// difference would be a model bug, so the first one wins and the conflict is logged.
fn insert_chain(ruleset: &mut Ruleset, name: &str, chain: Chain) {
    match ruleset.chains.entry(name.to_owned()) {
        Entry::Vacant(vacant) => {
            vacant.insert(chain);
        }
        Entry::Occupied(existing) if *existing.get() != chain => {
            warn!(
                chain = name,
                "frontends of one selection disagree; keeping the first"
            );
        }
        Entry::Occupied(_) => {}
    }
}

fn insert_element(ruleset: &mut Ruleset, set: &str, element: Element, data: Option<Verdict>) {
    if let Some(set) = ruleset.sets.get_mut(set) {
        set.elements.insert(element, data);
    }
}
