//! The kernel's expressions, as Ferry lowers rules to them and as a dump returns them.
//!
//! Only the expressions Ferry's layout uses are known; the decoder refuses anything else (and
//! any option Ferry never sets), so a table changed by someone else reads as different instead
//! of being silently misread.

use super::attr::{Attr, Attrs, DecodeError};
use super::uapi::*;

/// A data register as nft numbers them: 32-bit slot `n` of the 16 data slots. Slots on a
/// 16-byte boundary travel under their legacy 128-bit number, like nft and the kernel's dumps
/// write them, so Ferry's bytes read the same in `nft --debug=netlink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reg {
    Verdict,
    Data(u8),
}

impl Reg {
    pub fn wire(self) -> u32 {
        match self {
            Reg::Verdict => 0,
            Reg::Data(slot) if slot % 4 == 0 => 1 + u32::from(slot) / 4,
            Reg::Data(slot) => 8 + u32::from(slot),
        }
    }

    pub fn from_wire(wire: u32) -> Result<Self, DecodeError> {
        Ok(match wire {
            0 => Reg::Verdict,
            1..=4 => Reg::Data(((wire - 1) * 4) as u8),
            8..=23 => Reg::Data((wire - 8) as u8),
            _ => return Err(DecodeError::new(format!("register {wire}"))),
        })
    }

    /// The slot `bytes` further on (registers hold concatenations in 4-byte slots).
    pub fn after(self, bytes: usize) -> Self {
        match self {
            Reg::Verdict => Reg::Verdict,
            Reg::Data(slot) => Reg::Data(slot + bytes.div_ceil(4) as u8),
        }
    }
}

/// A verdict as data: `accept`, `drop`, `return`, `jump`/`goto` a chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerdictData {
    pub code: i32,
    pub chain: Option<String>,
}

/// The data of a set element: a verdict or a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementData {
    Verdict(VerdictData),
    Value(Vec<u8>),
}

/// The type and flags of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    /// Data type and length, for maps.
    pub data: Option<(u32, u32)>,
    pub timeout_ms: Option<u64>,
    pub size: Option<u32>,
}

/// An anonymous set: created with, and owned by, the rule that looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousSet {
    pub spec: SetSpec,
    pub elements: Vec<(Vec<u8>, Option<ElementData>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    Anonymous(AnonymousSet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
        dreg: Reg,
    },
    MetaSet {
        key: u32,
        sreg: Reg,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    Cmp {
        sreg: Reg,
        op: u32,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Membership when `dreg` is `None`; a map lookup otherwise.
    Lookup {
        set: SetRef,
        sreg: Reg,
        dreg: Option<Reg>,
    },
    /// A verdict.
    Immediate {
        verdict: VerdictData,
    },
    /// A constant loaded into a data register.
    ImmediateValue {
        dreg: Reg,
        value: Vec<u8>,
    },
    /// A conntrack field; `direction` picks a tuple, for the keys that have one per direction.
    Ct {
        key: u32,
        dreg: Reg,
        direction: Option<u8>,
    },
    /// `numgen random mod modulus`.
    Numgen {
        dreg: Reg,
        modulus: u32,
    },
    /// DNAT to the address in `addr` and the port in `proto`.
    Dnat {
        family: u8,
        addr: Reg,
        proto: Reg,
    },
    Masquerade {
        flags: u32,
    },
    Reject {
        kind: u32,
        code: u8,
    },
    /// `update @set { key }`.
    DynsetUpdate {
        set: String,
        key: Reg,
    },
    /// A counter, starting from zero. Its values are not part of the expression: they change
    /// with every packet, and a table that only counted must still equal what Ferry meant
    /// (read them with [`counted_packets`]).
    Counter,
}

impl Expr {
    /// The kernel's name of the expression type.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } | Expr::ImmediateValue { .. } => "immediate",
            Expr::Ct { .. } => "ct",
            Expr::Numgen { .. } => "numgen",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade { .. } => "masq",
            Expr::Reject { .. } => "reject",
            Expr::DynsetUpdate { .. } => "dynset",
            Expr::Counter => "counter",
        }
    }

    /// `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`. An anonymous set travels by the
    /// name and id it was created with in the same batch (`anonymous`).
    pub fn encode(&self, anonymous: Option<(&str, u32)>) -> Attr {
        let data = match self {
            Expr::Meta { key, dreg } => {
                vec![reg(NFTA_META_DREG, *dreg), Attr::u32(NFTA_META_KEY, *key)]
            }
            Expr::MetaSet { key, sreg } => {
                vec![Attr::u32(NFTA_META_KEY, *key), reg(NFTA_META_SREG, *sreg)]
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => vec![
                reg(NFTA_PAYLOAD_DREG, *dreg),
                Attr::u32(NFTA_PAYLOAD_BASE, *base),
                Attr::u32(NFTA_PAYLOAD_OFFSET, *offset),
                Attr::u32(NFTA_PAYLOAD_LEN, *len),
            ],
            Expr::Cmp { sreg, op, data } => vec![
                reg(NFTA_CMP_SREG, *sreg),
                Attr::u32(NFTA_CMP_OP, *op),
                value(NFTA_CMP_DATA, data),
            ],
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => vec![
                reg(NFTA_BITWISE_SREG, *sreg),
                reg(NFTA_BITWISE_DREG, *dreg),
                Attr::u32(NFTA_BITWISE_LEN, mask.len() as u32),
                value(NFTA_BITWISE_MASK, mask),
                value(NFTA_BITWISE_XOR, xor),
            ],
            Expr::Lookup { set, sreg, dreg } => lookup_attrs(set, *sreg, *dreg, anonymous),
            Expr::Immediate { verdict } => vec![
                reg(NFTA_IMMEDIATE_DREG, Reg::Verdict),
                Attr::nested(NFTA_IMMEDIATE_DATA, vec![verdict_attr(verdict)]),
            ],
            Expr::ImmediateValue { dreg, value: bytes } => vec![
                reg(NFTA_IMMEDIATE_DREG, *dreg),
                value(NFTA_IMMEDIATE_DATA, bytes),
            ],
            Expr::Ct {
                key,
                dreg,
                direction,
            } => {
                let mut attrs = vec![reg(NFTA_CT_DREG, *dreg), Attr::u32(NFTA_CT_KEY, *key)];
                if let Some(direction) = direction {
                    attrs.push(Attr::bytes(NFTA_CT_DIRECTION, &[*direction]));
                }
                attrs
            }
            Expr::Numgen { dreg, modulus } => vec![
                reg(NFTA_NG_DREG, *dreg),
                Attr::u32(NFTA_NG_MODULUS, *modulus),
                Attr::u32(NFTA_NG_TYPE, NFT_NG_RANDOM),
            ],
            Expr::Dnat {
                family,
                addr,
                proto,
            } => vec![
                Attr::u32(NFTA_NAT_TYPE, NFT_NAT_DNAT),
                Attr::u32(NFTA_NAT_FAMILY, u32::from(*family)),
                reg(NFTA_NAT_REG_ADDR_MIN, *addr),
                reg(NFTA_NAT_REG_PROTO_MIN, *proto),
            ],
            Expr::Masquerade { flags } => vec![Attr::u32(NFTA_MASQ_FLAGS, *flags)],
            Expr::Reject { kind, code } => vec![
                Attr::u32(NFTA_REJECT_TYPE, *kind),
                Attr::bytes(NFTA_REJECT_ICMP_CODE, &[*code]),
            ],
            Expr::DynsetUpdate { set, key } => vec![
                reg(NFTA_DYNSET_SREG_KEY, *key),
                Attr::u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE),
                Attr::string(NFTA_DYNSET_SET_NAME, set),
            ],
            Expr::Counter => vec![
                Attr::u64(NFTA_COUNTER_BYTES, 0),
                Attr::u64(NFTA_COUNTER_PACKETS, 0),
            ],
        };
        Attr::nested(
            NFTA_LIST_ELEM,
            vec![
                Attr::string(NFTA_EXPR_NAME, self.name()),
                Attr::nested(NFTA_EXPR_DATA, data),
            ],
        )
    }

    /// Decodes one `NFTA_LIST_ELEM` of `NFTA_RULE_EXPRESSIONS`.
    pub fn decode(element: &[u8]) -> Result<Self, DecodeError> {
        let attrs = Attrs::parse(element)?;
        let name = attrs.require_string(NFTA_EXPR_NAME, "expression name")?;
        let data = attrs.require_nested(NFTA_EXPR_DATA, "expression data")?;
        decode_data(&name, &data).map_err(|e| DecodeError::new(format!("{name}: {}", e.0)))
    }
}

/// The packets a `counter` expression (one `NFTA_LIST_ELEM` of a dumped rule) has counted;
/// `None` for any other expression.
pub fn counted_packets(element: &[u8]) -> Result<Option<u64>, DecodeError> {
    let attrs = Attrs::parse(element)?;
    if attrs.require_string(NFTA_EXPR_NAME, "expression name")? != "counter" {
        return Ok(None);
    }
    let data = attrs.require_nested(NFTA_EXPR_DATA, "counter data")?;
    Ok(Some(
        data.u64(NFTA_COUNTER_PACKETS, "counter packets")?
            .unwrap_or(0),
    ))
}

fn reg(kind: u16, register: Reg) -> Attr {
    Attr::u32(kind, register.wire())
}

fn value(kind: u16, bytes: &[u8]) -> Attr {
    Attr::nested(kind, vec![Attr::bytes(NFTA_DATA_VALUE, bytes)])
}

/// `NFTA_DATA_VERDICT { CODE, CHAIN }`.
pub fn verdict_attr(verdict: &VerdictData) -> Attr {
    let mut children = vec![Attr::i32(NFTA_VERDICT_CODE, verdict.code)];
    if let Some(chain) = &verdict.chain {
        children.push(Attr::string(NFTA_VERDICT_CHAIN, chain));
    }
    Attr::nested(NFTA_DATA_VERDICT, children)
}

fn lookup_attrs(
    set: &SetRef,
    sreg: Reg,
    dreg: Option<Reg>,
    anonymous: Option<(&str, u32)>,
) -> Vec<Attr> {
    let name = match set {
        SetRef::Named(name) => name.as_str(),
        SetRef::Anonymous(_) => anonymous.map_or("", |(name, _)| name),
    };
    let mut attrs = vec![Attr::string(NFTA_LOOKUP_SET, name)];
    if let (SetRef::Anonymous(_), Some((_, id))) = (set, anonymous) {
        attrs.push(Attr::u32(NFTA_LOOKUP_SET_ID, id));
    }
    attrs.push(reg(NFTA_LOOKUP_SREG, sreg));
    if let Some(dreg) = dreg {
        attrs.push(reg(NFTA_LOOKUP_DREG, dreg));
    }
    attrs
}

fn register(attrs: &Attrs, kind: u16, what: &str) -> Result<Reg, DecodeError> {
    Reg::from_wire(attrs.require_u32(kind, what)?)
}

/// The bytes of `NFTA_DATA_VALUE` inside `kind`.
fn data_value(attrs: &Attrs, kind: u16, what: &str) -> Result<Vec<u8>, DecodeError> {
    let nested = attrs.require_nested(kind, what)?;
    Ok(nested.require(NFTA_DATA_VALUE, what)?.to_vec())
}

/// Fails when an attribute Ferry never sets carries a non-default value.
fn expect_default(attrs: &Attrs, kind: u16, default: u32, what: &str) -> Result<(), DecodeError> {
    match attrs.u32(kind, what)? {
        Some(value) if value != default => {
            Err(DecodeError::new(format!("unsupported {what} {value}")))
        }
        _ => Ok(()),
    }
}

fn decode_data(name: &str, a: &Attrs) -> Result<Expr, DecodeError> {
    Ok(match name {
        "meta" => {
            let key = a.require_u32(NFTA_META_KEY, "key")?;
            match a.get(NFTA_META_DREG) {
                Some(_) => Expr::Meta {
                    key,
                    dreg: register(a, NFTA_META_DREG, "dreg")?,
                },
                None => Expr::MetaSet {
                    key,
                    sreg: register(a, NFTA_META_SREG, "sreg")?,
                },
            }
        }
        "payload" => {
            if a.get(NFTA_PAYLOAD_DREG).is_none() {
                return Err(DecodeError::new("payload write"));
            }
            Expr::Payload {
                base: a.require_u32(NFTA_PAYLOAD_BASE, "base")?,
                offset: a.require_u32(NFTA_PAYLOAD_OFFSET, "offset")?,
                len: a.require_u32(NFTA_PAYLOAD_LEN, "len")?,
                dreg: register(a, NFTA_PAYLOAD_DREG, "dreg")?,
            }
        }
        "cmp" => Expr::Cmp {
            sreg: register(a, NFTA_CMP_SREG, "sreg")?,
            op: a.require_u32(NFTA_CMP_OP, "op")?,
            data: data_value(a, NFTA_CMP_DATA, "data")?,
        },
        "bitwise" => {
            expect_default(a, NFTA_BITWISE_OP, 0, "op")?;
            let mask = data_value(a, NFTA_BITWISE_MASK, "mask")?;
            let xor = data_value(a, NFTA_BITWISE_XOR, "xor")?;
            let len = a.require_u32(NFTA_BITWISE_LEN, "len")?;
            if mask.len() != len as usize || xor.len() != mask.len() {
                return Err(DecodeError::new("lengths disagree"));
            }
            Expr::Bitwise {
                sreg: register(a, NFTA_BITWISE_SREG, "sreg")?,
                dreg: register(a, NFTA_BITWISE_DREG, "dreg")?,
                mask,
                xor,
            }
        }
        "lookup" => {
            expect_default(a, NFTA_LOOKUP_FLAGS, 0, "flags")?;
            let dreg = a
                .get(NFTA_LOOKUP_DREG)
                .map(|_| register(a, NFTA_LOOKUP_DREG, "dreg"))
                .transpose()?;
            Expr::Lookup {
                set: SetRef::Named(a.require_string(NFTA_LOOKUP_SET, "set")?),
                sreg: register(a, NFTA_LOOKUP_SREG, "sreg")?,
                dreg,
            }
        }
        "immediate" => match register(a, NFTA_IMMEDIATE_DREG, "dreg")? {
            Reg::Verdict => {
                let data = a.require_nested(NFTA_IMMEDIATE_DATA, "data")?;
                Expr::Immediate {
                    verdict: decode_verdict(&data.require_nested(NFTA_DATA_VERDICT, "verdict")?)?,
                }
            }
            dreg => Expr::ImmediateValue {
                dreg,
                value: data_value(a, NFTA_IMMEDIATE_DATA, "data")?,
            },
        },
        "ct" => {
            if a.get(NFTA_CT_DREG).is_none() {
                return Err(DecodeError::new("ct write"));
            }
            let direction = match a.get(NFTA_CT_DIRECTION) {
                None => None,
                Some([direction]) => Some(*direction),
                Some(_) => return Err(DecodeError::new("direction: wrong length")),
            };
            Expr::Ct {
                key: a.require_u32(NFTA_CT_KEY, "key")?,
                dreg: register(a, NFTA_CT_DREG, "dreg")?,
                direction,
            }
        }
        "numgen" => {
            expect_default(a, NFTA_NG_TYPE, NFT_NG_RANDOM, "type")?;
            expect_default(a, NFTA_NG_OFFSET, 0, "offset")?;
            Expr::Numgen {
                dreg: register(a, NFTA_NG_DREG, "dreg")?,
                modulus: a.require_u32(NFTA_NG_MODULUS, "modulus")?,
            }
        }
        "nat" => decode_nat(a)?,
        "masq" => Expr::Masquerade {
            flags: a.u32(NFTA_MASQ_FLAGS, "flags")?.unwrap_or(0),
        },
        // The kernel leaves the code out for a TCP reset.
        "reject" => {
            let code = match a.get(NFTA_REJECT_ICMP_CODE) {
                None => 0,
                Some([code]) => *code,
                Some(_) => return Err(DecodeError::new("code: wrong length")),
            };
            Expr::Reject {
                kind: a.require_u32(NFTA_REJECT_TYPE, "type")?,
                code,
            }
        }
        "dynset" => {
            expect_default(a, NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE, "op")?;
            expect_default(a, NFTA_DYNSET_FLAGS, 0, "flags")?;
            if a.u64(NFTA_DYNSET_TIMEOUT, "timeout")?
                .is_some_and(|t| t != 0)
            {
                return Err(DecodeError::new("own timeout"));
            }
            if a.get(NFTA_DYNSET_SREG_DATA).is_some() {
                return Err(DecodeError::new("map update"));
            }
            Expr::DynsetUpdate {
                set: a.require_string(NFTA_DYNSET_SET_NAME, "set")?,
                key: register(a, NFTA_DYNSET_SREG_KEY, "key")?,
            }
        }
        "counter" => Expr::Counter,
        other => return Err(DecodeError::new(format!("unknown expression {other}"))),
    })
}

/// The kernel adds `NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED` to the flags and the
/// `*_MAX` registers (equal to the minimums) when it dumps a rule; both follow from what Ferry
/// sends, so they are checked and dropped.
fn decode_nat(a: &Attrs) -> Result<Expr, DecodeError> {
    const IMPLIED: u32 = 0x1 | 0x2;
    expect_default(a, NFTA_NAT_TYPE, NFT_NAT_DNAT, "type")?;
    if a.u32(NFTA_NAT_FLAGS, "flags")?.unwrap_or(0) & !IMPLIED != 0 {
        return Err(DecodeError::new("flags"));
    }
    let addr = register(a, NFTA_NAT_REG_ADDR_MIN, "addr")?;
    let proto = register(a, NFTA_NAT_REG_PROTO_MIN, "proto")?;
    let same = |kind, min: Reg| -> Result<bool, DecodeError> {
        Ok(a.u32(kind, "max")?.is_none_or(|max| max == min.wire()))
    };
    if !same(NFTA_NAT_REG_ADDR_MAX, addr)? || !same(NFTA_NAT_REG_PROTO_MAX, proto)? {
        return Err(DecodeError::new("ranges"));
    }
    let family = a.require_u32(NFTA_NAT_FAMILY, "family")?;
    Ok(Expr::Dnat {
        family: u8::try_from(family).map_err(|_| DecodeError::new("family"))?,
        addr,
        proto,
    })
}

pub fn decode_verdict(attrs: &Attrs) -> Result<VerdictData, DecodeError> {
    let code = attrs.require_u32(NFTA_VERDICT_CODE, "verdict code")? as i32;
    Ok(VerdictData {
        code,
        chain: attrs.string(NFTA_VERDICT_CHAIN, "verdict chain")?,
    })
}
