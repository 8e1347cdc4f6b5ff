//! Table `inet ferry` in kernel terms: chains with their expressions and named sets with their
//! elements. Ferry compares what it meant ([`TableSnapshot::of`]) with what a dump returns to
//! find drift; anonymous sets appear inline in the lookups that own them.

use std::collections::BTreeMap;

use super::attr::DecodeError;
use super::expr::{AnonymousSet, ElementData, Expr, SetRef, SetSpec};
use super::lower::{element_key, lower_rule, set_spec, verdict_data};
use super::uapi::{NFT_SET_ANONYMOUS, NFT_SET_EVAL};
use crate::nft::ruleset::{BaseChain, ChainKind, Hook, Ruleset, TABLE_NAME};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSnapshot {
    pub chains: BTreeMap<String, ChainSnapshot>,
    /// Named sets; the elements of dynamic sets (filled by the packet path) are left out.
    pub sets: BTreeMap<String, SetSnapshot>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSnapshot {
    pub hook: Option<HookSnapshot>,
    pub rules: Vec<Vec<Expr>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSnapshot {
    /// `filter` or `nat`.
    pub kind: String,
    pub hook: u32,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSnapshot {
    pub spec: SetSpec,
    pub elements: BTreeMap<Vec<u8>, Option<ElementData>>,
}

/// One object of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table {
        name: String,
    },
    Chain {
        table: String,
        name: String,
        hook: Option<HookSnapshot>,
    },
    Rule {
        table: String,
        chain: String,
        exprs: Vec<Expr>,
        /// What the rule's counter counted, if it has one (not part of the snapshot).
        packets: Option<u64>,
    },
    Set {
        table: String,
        name: String,
        spec: SetSpec,
    },
    Elements {
        table: String,
        set: String,
        elements: Vec<(Vec<u8>, Option<ElementData>)>,
    },
}

impl HookSnapshot {
    pub fn of(base: BaseChain) -> Self {
        let kind = match base.kind {
            ChainKind::Filter => "filter",
            ChainKind::Nat => "nat",
        };
        let hook = match base.hook {
            Hook::Prerouting => super::uapi::NF_INET_PRE_ROUTING,
            Hook::Input => super::uapi::NF_INET_LOCAL_IN,
            Hook::Output => super::uapi::NF_INET_LOCAL_OUT,
            Hook::Postrouting => super::uapi::NF_INET_POST_ROUTING,
        };
        Self {
            kind: kind.to_owned(),
            hook,
            priority: base.priority,
        }
    }
}

impl TableSnapshot {
    /// What the kernel holds after Ferry applied `ruleset`.
    pub fn of(ruleset: &Ruleset) -> Self {
        let chains = ruleset.chains.iter().map(|(name, chain)| {
            let snapshot = ChainSnapshot {
                hook: chain.base.map(HookSnapshot::of),
                rules: chain.rules.iter().map(lower_rule).collect(),
            };
            (name.clone(), snapshot)
        });
        let sets = ruleset.sets.iter().map(|(name, set)| {
            let elements = set
                .elements
                .iter()
                .map(|(element, data)| {
                    let data = data.as_ref().map(|v| ElementData::Verdict(verdict_data(v)));
                    (element_key(element), data)
                })
                .collect();
            let snapshot = SetSnapshot {
                spec: set_spec(set.kind),
                elements,
            };
            (name.clone(), snapshot)
        });
        Self {
            chains: chains.collect(),
            sets: sets.collect(),
        }
    }

    /// Assembles the objects of the dumps of table, chains, sets, elements and rules; `None`
    /// when Ferry's table does not exist.
    pub fn assemble(objects: Vec<Object>) -> Result<Option<Self>, DecodeError> {
        let ours = |table: &str| table == TABLE_NAME;
        let mut found = false;
        let mut snapshot = TableSnapshot::default();
        let mut anonymous: BTreeMap<String, AnonymousSet> = BTreeMap::new();
        let mut rules = Vec::new();
        for object in objects {
            match object {
                Object::Table { name } => found |= ours(&name),
                Object::Chain { table, name, hook } if ours(&table) => {
                    snapshot.chains.entry(name).or_default().hook = hook;
                }
                Object::Rule {
                    table,
                    chain,
                    exprs,
                    ..
                } if ours(&table) => rules.push((chain, exprs)),
                Object::Set { table, name, spec } if ours(&table) => {
                    if spec.flags & NFT_SET_ANONYMOUS != 0 {
                        anonymous.insert(
                            name,
                            AnonymousSet {
                                spec,
                                elements: Vec::new(),
                            },
                        );
                    } else {
                        snapshot.sets.insert(
                            name,
                            SetSnapshot {
                                spec,
                                elements: BTreeMap::new(),
                            },
                        );
                    }
                }
                Object::Elements {
                    table,
                    set,
                    elements,
                } if ours(&table) => {
                    if let Some(owner) = anonymous.get_mut(&set) {
                        owner.elements.extend(elements);
                    } else if let Some(named) = snapshot.sets.get_mut(&set)
                        && named.spec.flags & NFT_SET_EVAL == 0
                    {
                        named.elements.extend(elements);
                    }
                }
                Object::Chain { .. }
                | Object::Rule { .. }
                | Object::Set { .. }
                | Object::Elements { .. } => {}
            }
        }
        if !found {
            return Ok(None);
        }
        for set in anonymous.values_mut() {
            set.elements.sort();
        }
        for (chain, mut exprs) in rules {
            inline_anonymous(&mut exprs, &anonymous)?;
            snapshot.chains.entry(chain).or_default().rules.push(exprs);
        }
        Ok(Some(snapshot))
    }
}

fn inline_anonymous(
    exprs: &mut [Expr],
    anonymous: &BTreeMap<String, AnonymousSet>,
) -> Result<(), DecodeError> {
    for expr in exprs {
        if let Expr::Lookup { set, .. } = expr
            && let SetRef::Named(name) = set
            && name.starts_with("__")
        {
            let owned = anonymous.get(name.as_str()).ok_or_else(|| {
                DecodeError::new(format!("rule refers to missing anonymous set {name}"))
            })?;
            *set = SetRef::Anonymous(owned.clone());
        }
    }
    Ok(())
}
