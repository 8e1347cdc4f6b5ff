//! Lowers Ferry's rules, sets and elements to the kernel's vocabulary, the way nft does for the
//! same nft syntax (same expressions, same registers), so `nft list` prints Ferry's table as
//! [`render`](crate::nft::render) does.

use std::net::IpAddr;

use super::expr::{AnonymousSet, ElementData, Expr, Reg, SetRef, SetSpec, VerdictData};
use super::uapi::*;
use crate::model::types::RealServerKey;
use crate::nft::ruleset::{
    AFFINITY_SET_SIZE, Element, Family, Key, Match, Reject, Rule, SetKind, Side, Statement, Verdict,
};

/// The expressions of one rule.
pub fn lower_rule(rule: &Rule) -> Vec<Expr> {
    let mut lowering = Lowering::default();
    for m in &rule.matches {
        lowering.lower_match(m);
    }
    for statement in &rule.statements {
        lowering.lower_statement(statement);
    }
    lowering.exprs
}

const FIRST: Reg = Reg::Data(0);

#[derive(Default)]
struct Lowering {
    exprs: Vec<Expr>,
    /// The family already checked by a `meta nfproto` dependency in this rule.
    checked: Option<Family>,
}

impl Lowering {
    fn push(&mut self, expr: Expr) {
        self.exprs.push(expr);
    }

    /// An `inet` table sees both families: reading an address needs `meta nfproto` first.
    fn require_family(&mut self, family: Family) {
        if self.checked == Some(family) {
            return;
        }
        self.checked = Some(family);
        self.push(Expr::Meta {
            key: NFT_META_NFPROTO,
            dreg: FIRST,
        });
        self.push(cmp_eq(FIRST, vec![nfproto(family)]));
    }

    fn load_address(&mut self, family: Family, side: Side, dreg: Reg) {
        self.require_family(family);
        let (offset, len) = address_field(family, side);
        self.push(payload(offset, len, dreg));
    }

    fn lower_match(&mut self, m: &Match) {
        match m {
            Match::Protocol(protocol) => {
                self.push(Expr::Meta {
                    key: NFT_META_L4PROTO,
                    dreg: FIRST,
                });
                self.push(cmp_eq(FIRST, vec![protocol.number()]));
            }
            Match::NewConnection => {
                self.push(Expr::Ct {
                    key: NFT_CT_STATE,
                    dreg: FIRST,
                    direction: None,
                });
                self.test_bits(NF_CT_STATE_NEW_BIT);
            }
            Match::Address {
                side,
                network,
                negated,
            } => {
                let family = Family::of(network.addr());
                self.require_family(family);
                self.lower_prefix(
                    family,
                    *side,
                    network.addr(),
                    network.prefix_len(),
                    *negated,
                );
            }
            Match::DestinationPort(port) => {
                self.push(destination_port(FIRST));
                self.push(cmp_eq(FIRST, port.to_be_bytes().to_vec()));
            }
            Match::MarkBitSet(bits) => {
                self.push(Expr::Meta {
                    key: NFT_META_MARK,
                    dreg: FIRST,
                });
                self.test_bits(*bits);
            }
            Match::InSet { key, set } => {
                self.load_key(*key);
                self.push(Expr::Lookup {
                    set: SetRef::Named(set.clone()),
                    sreg: FIRST,
                    dreg: None,
                });
            }
        }
    }

    /// Whole bytes are compared directly (nft loads only the prefix); other prefixes are
    /// masked first.
    fn lower_prefix(
        &mut self,
        family: Family,
        side: Side,
        address: IpAddr,
        prefix: u8,
        negated: bool,
    ) {
        if prefix == 0 {
            return;
        }
        let (offset, len) = address_field(family, side);
        let bytes = address_bytes(address);
        let op = if negated { NFT_CMP_NEQ } else { NFT_CMP_EQ };
        if prefix.is_multiple_of(8) {
            let whole = usize::from(prefix / 8);
            self.push(payload(offset, whole as u32, FIRST));
            self.push(Expr::Cmp {
                sreg: FIRST,
                op,
                data: bytes[..whole].to_vec(),
            });
            return;
        }
        self.push(payload(offset, len, FIRST));
        let mask = prefix_mask(bytes.len(), prefix);
        let network: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        self.push(Expr::Bitwise {
            sreg: FIRST,
            dreg: FIRST,
            xor: vec![0; mask.len()],
            mask,
        });
        self.push(Expr::Cmp {
            sreg: FIRST,
            op,
            data: network,
        });
    }

    /// Loads a set key into consecutive registers from the first one.
    fn load_key(&mut self, key: Key) {
        match key {
            Key::Frontend(family) => {
                self.load_address(family, Side::Destination, FIRST);
                self.load_protocol_and_port(family, destination_port);
            }
            // The conntrack keys check the family themselves, so nft adds no `meta nfproto`.
            Key::OriginalFrontend(family) => {
                let address = match family {
                    Family::V4 => NFT_CT_DST_IP,
                    Family::V6 => NFT_CT_DST_IP6,
                };
                self.push(original_ct(address, FIRST));
                self.load_protocol_and_port(family, |dreg| original_ct(NFT_CT_PROTO_DST, dreg));
            }
            Key::Source(family) => self.load_address(family, Side::Source, FIRST),
            Key::SourceAndDestination(family) => {
                self.load_address(family, Side::Source, FIRST);
                self.push(payload(
                    address_field(family, Side::Destination).0,
                    address_len(family) as u32,
                    FIRST.after(address_len(family)),
                ));
            }
        }
    }

    /// `. meta l4proto . <port>` after the address of `family` in the first register.
    fn load_protocol_and_port(&mut self, family: Family, port: impl FnOnce(Reg) -> Expr) {
        let protocol = FIRST.after(address_len(family));
        self.push(Expr::Meta {
            key: NFT_META_L4PROTO,
            dreg: protocol,
        });
        self.push(port(protocol.after(4)));
    }

    fn lower_statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Verdict(verdict) => self.push(Expr::Immediate {
                verdict: verdict_data(verdict),
            }),
            Statement::Vmap { key, map } => {
                self.load_key(*key);
                let set = SetRef::Named(map.clone());
                self.push(Expr::Lookup {
                    set,
                    sreg: FIRST,
                    dreg: Some(Reg::Verdict),
                });
            }
            Statement::SetMarkBits(bits) => self.set_mark(!bits, *bits),
            Statement::ClearMarkBits(bits) => self.set_mark(!bits, 0),
            Statement::Masquerade => self.push(Expr::Masquerade {
                flags: NF_NAT_RANGE_PROTO_RANDOM_FULLY,
            }),
            Statement::Reject(Reject::TcpReset) => self.push(Expr::Reject {
                kind: NFT_REJECT_TCP_RST,
                code: 0,
            }),
            Statement::Reject(Reject::PortUnreachable) => self.push(Expr::Reject {
                kind: NFT_REJECT_ICMPX_UNREACH,
                code: NFT_REJECT_ICMPX_PORT_UNREACH,
            }),
            Statement::Dnat { family, endpoints } => {
                self.push(Expr::Numgen {
                    dreg: FIRST,
                    modulus: endpoints.len() as u32,
                });
                let set = SetRef::Anonymous(endpoint_map(*family, endpoints));
                self.push(Expr::Lookup {
                    set,
                    sreg: FIRST,
                    dreg: Some(FIRST),
                });
                self.push(dnat(*family, FIRST));
            }
            Statement::DnatTo(endpoint) => {
                // Address and port in separate 16-byte registers, as nft loads them.
                let port = Reg::Data(4);
                let family = Family::of(endpoint.address);
                self.push(Expr::ImmediateValue {
                    dreg: FIRST,
                    value: address_bytes(endpoint.address),
                });
                self.push(Expr::ImmediateValue {
                    dreg: port,
                    value: endpoint.port.to_be_bytes().to_vec(),
                });
                self.push(Expr::Dnat {
                    family: nfproto(family),
                    addr: FIRST,
                    proto: port,
                });
            }
            Statement::Update { key, set } => {
                self.load_key(*key);
                self.push(Expr::DynsetUpdate {
                    set: set.clone(),
                    key: FIRST,
                });
            }
            Statement::Counter => self.push(Expr::Counter),
        }
    }

    /// `reg & bits != 0` on the host-order 32-bit value just loaded (mark, ct state).
    fn test_bits(&mut self, bits: u32) {
        self.push(Expr::Bitwise {
            sreg: FIRST,
            dreg: FIRST,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.push(Expr::Cmp {
            sreg: FIRST,
            op: NFT_CMP_NEQ,
            data: vec![0; 4],
        });
    }

    /// `meta mark set (meta mark & mask) ^ xor`.
    fn set_mark(&mut self, mask: u32, xor: u32) {
        self.push(Expr::Meta {
            key: NFT_META_MARK,
            dreg: FIRST,
        });
        self.push(Expr::Bitwise {
            sreg: FIRST,
            dreg: FIRST,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        });
        self.push(Expr::MetaSet {
            key: NFT_META_MARK,
            sreg: FIRST,
        });
    }
}

/// `sizeof(struct nft_verdict)` on 64-bit kernels.
const VERDICT_DATA_LEN: u32 = 16;

fn cmp_eq(sreg: Reg, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        sreg,
        op: NFT_CMP_EQ,
        data,
    }
}

/// `th dport`: the second 16-bit word of the transport header.
fn destination_port(dreg: Reg) -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 2,
        len: 2,
        dreg,
    }
}

fn original_ct(key: u32, dreg: Reg) -> Expr {
    Expr::Ct {
        key,
        dreg,
        direction: Some(IP_CT_DIR_ORIGINAL),
    }
}

fn payload(offset: u32, len: u32, dreg: Reg) -> Expr {
    Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len,
        dreg,
    }
}

fn dnat(family: Family, addr: Reg) -> Expr {
    Expr::Dnat {
        family: nfproto(family),
        addr,
        proto: addr.after(address_len(family)),
    }
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => NFPROTO_IPV4,
        Family::V6 => NFPROTO_IPV6,
    }
}

pub fn address_len(family: Family) -> usize {
    match family {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}

/// Offset and length of an address in the network header.
fn address_field(family: Family, side: Side) -> (u32, u32) {
    match (family, side) {
        (Family::V4, Side::Source) => (12, 4),
        (Family::V4, Side::Destination) => (16, 4),
        (Family::V6, Side::Source) => (8, 16),
        (Family::V6, Side::Destination) => (24, 16),
    }
}

pub fn address_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn prefix_mask(len: usize, prefix: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = usize::from(prefix).saturating_sub(i * 8).min(8);
            (0xff_u16 << (8 - bits)) as u8
        })
        .collect()
}

pub fn verdict_data(verdict: &Verdict) -> VerdictData {
    let (code, chain) = match verdict {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(chain) => (NFT_JUMP, Some(chain.clone())),
        Verdict::Goto(chain) => (NFT_GOTO, Some(chain.clone())),
    };
    VerdictData { code, chain }
}

fn address_type(family: Family) -> u32 {
    match family {
        Family::V4 => datatype::IPADDR,
        Family::V6 => datatype::IP6ADDR,
    }
}

/// Address and port as map data: the port in its own 4-byte register slot.
fn endpoint_bytes(endpoint: &RealServerKey) -> Vec<u8> {
    let mut bytes = address_bytes(endpoint.address);
    bytes.extend(endpoint.port.to_be_bytes());
    bytes.extend([0, 0]);
    bytes
}

fn endpoint_data_type(family: Family) -> (u32, u32) {
    (
        datatype::concat(&[address_type(family), datatype::INET_SERVICE]),
        address_len(family) as u32 + 4,
    )
}

/// `{ 0 : address . port, 1 : … }`, keyed by the host-order `numgen` result.
fn endpoint_map(family: Family, endpoints: &[RealServerKey]) -> AnonymousSet {
    let spec = SetSpec {
        flags: NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP,
        key_type: datatype::INTEGER,
        key_len: 4,
        data: Some(endpoint_data_type(family)),
        timeout_ms: None,
        size: Some(endpoints.len() as u32),
    };
    let mut elements: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| {
            let key = (index as u32).to_ne_bytes().to_vec();
            (key, Some(ElementData::Value(endpoint_bytes(endpoint))))
        })
        .collect();
    elements.sort();
    AnonymousSet { spec, elements }
}

/// The kernel type of a named set.
pub fn set_spec(kind: SetKind) -> SetSpec {
    let family = kind.family();
    let frontend_key = (
        datatype::concat(&[
            address_type(family),
            datatype::INET_PROTOCOL,
            datatype::INET_SERVICE,
        ]),
        address_len(family) as u32 + 8,
    );
    let plain = |(key_type, key_len): (u32, u32)| SetSpec {
        flags: 0,
        key_type,
        key_len,
        data: None,
        timeout_ms: None,
        size: None,
    };
    match kind {
        SetKind::FrontendVerdicts(_) => SetSpec {
            flags: NFT_SET_MAP,
            // The kernel keeps (and dumps) a verdict's size whatever length is sent.
            data: Some((NFT_DATA_VERDICT, VERDICT_DATA_LEN)),
            ..plain(frontend_key)
        },
        SetKind::Frontends(_) => plain(frontend_key),
        SetKind::AddressPairs(_) => plain((
            datatype::concat(&[address_type(family), address_type(family)]),
            2 * address_len(family) as u32,
        )),
        SetKind::Affinity { timeout, .. } => SetSpec {
            flags: NFT_SET_TIMEOUT | NFT_SET_EVAL,
            timeout_ms: Some(timeout.as_millis() as u64),
            size: Some(AFFINITY_SET_SIZE),
            ..plain((address_type(family), address_len(family) as u32))
        },
    }
}

/// A static element's key bytes.
pub fn element_key(element: &Element) -> Vec<u8> {
    match element {
        Element::Frontend(frontend) => {
            let mut bytes = address_bytes(frontend.address);
            bytes.extend([frontend.protocol.number(), 0, 0, 0]);
            bytes.extend(frontend.port.to_be_bytes());
            bytes.extend([0, 0]);
            bytes
        }
        Element::AddressPair(a, b) => {
            let mut bytes = address_bytes(*a);
            bytes.extend(address_bytes(*b));
            bytes
        }
        Element::Address(address) => address_bytes(*address),
    }
}
