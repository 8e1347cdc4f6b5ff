//! The pure diff: current ruleset × desired ruleset → one batch of operations, ordered so the
//! kernel accepts it as one transaction.
//!
//! A one-endpoint change rewrites the one rule of that Service's chain (its anonymous
//! `numgen` map goes with it) and nothing else; with session affinity it also rewrites the
//! Service's `remember-` chain and deletes or adds that endpoint's affinity set, while the sets
//! of the other endpoints, and the clients they remember, stay. The first sync and any repair
//! replace the whole
//! table in one batch instead ([`full_replace`]): deleting and re-adding the table inside one
//! nf_tables transaction is atomic, and established connections keep their NAT because it lives
//! in conntrack, not in the ruleset.

use std::collections::{BTreeMap, BTreeSet};

use super::ruleset::{BaseChain, Element, Rule, Ruleset, SetKind, Verdict};

/// One change to table `inet ferry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Deletes the table if it exists (nothing else: cleanup uses this alone).
    RemoveTable,
    AddTable,
    AddSet {
        name: String,
        kind: SetKind,
    },
    /// Deletes a set with its elements (for an affinity set, the clients it remembers).
    DeleteSet(String),
    /// Forgets every element of a set, those the packet path added included. [`diff`] never
    /// needs it (an affinity set belongs to one endpoint and goes with it); it stays for
    /// callers that reset session affinity on purpose.
    FlushSet(String),
    AddElements {
        set: String,
        elements: Vec<(Element, Option<Verdict>)>,
    },
    DeleteElements {
        set: String,
        elements: Vec<Element>,
    },
    AddChain {
        name: String,
        base: Option<BaseChain>,
    },
    /// Deletes a chain and its rules.
    DeleteChain(String),
    /// Deletes every rule of a chain.
    FlushChain(String),
    AddRule {
        chain: String,
        rule: Rule,
    },
}

/// Operations applied as one transaction, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The batch that removes Ferry's table, if any.
    pub fn remove_table() -> Self {
        Self {
            ops: vec![Op::RemoveTable],
        }
    }
}

/// Replaces whatever the kernel holds with `desired`, in one transaction.
pub fn full_replace(desired: &Ruleset) -> Batch {
    let mut batch = diff(&Ruleset::default(), desired);
    batch.ops.splice(0..0, [Op::RemoveTable, Op::AddTable]);
    batch
}

/// The operations that turn `current` into `desired`. Empty when they are equal.
///
/// Order: element deletions (they release chains), rule flushes (they release sets and
/// chains), set deletions (their elements release chains), chain deletions, then set, chain,
/// element and rule additions (each may refer to what comes before it).
pub fn diff(current: &Ruleset, desired: &Ruleset) -> Batch {
    let plan = Plan::new(current, desired);
    let mut ops = Vec::new();
    plan.delete_elements(current, desired, &mut ops);
    for name in plan.rewritten.iter().chain(&plan.removed_chains) {
        if current
            .chains
            .get(name)
            .is_some_and(|c| !c.rules.is_empty())
        {
            ops.push(Op::FlushChain(name.clone()));
        }
    }
    ops.extend(plan.removed_sets.iter().cloned().map(Op::DeleteSet));
    ops.extend(plan.removed_chains.iter().cloned().map(Op::DeleteChain));
    for name in &plan.added_sets {
        let kind = desired.sets[name].kind;
        ops.push(Op::AddSet {
            name: name.clone(),
            kind,
        });
    }
    for name in &plan.added_chains {
        let base = desired.chains[name].base;
        ops.push(Op::AddChain {
            name: name.clone(),
            base,
        });
    }
    plan.add_elements(current, desired, &mut ops);
    for name in plan.added_chains.iter().chain(&plan.rewritten) {
        let rules = desired.chains[name].rules.iter().cloned();
        ops.extend(rules.map(|rule| Op::AddRule {
            chain: name.clone(),
            rule,
        }));
    }
    Batch { ops }
}

/// Which objects go, come, or are rewritten.
struct Plan {
    /// Sets that are new, or whose kind changed (deleted, then added again).
    added_sets: BTreeSet<String>,
    removed_sets: BTreeSet<String>,
    added_chains: BTreeSet<String>,
    removed_chains: BTreeSet<String>,
    /// Chains that stay but whose rules are replaced.
    rewritten: BTreeSet<String>,
}

impl Plan {
    fn new(current: &Ruleset, desired: &Ruleset) -> Self {
        let (removed_sets, added_sets) =
            changed_keys(&current.sets, &desired.sets, |a, b| a.kind == b.kind);
        let (removed_chains, added_chains) =
            changed_keys(&current.chains, &desired.chains, |a, b| a.base == b.base);
        let recreated = |rule: &Rule| {
            rule.referenced_sets().any(|s| removed_sets.contains(s))
                || rule.referenced_chains().any(|c| removed_chains.contains(c))
        };
        let rewritten = desired
            .chains
            .iter()
            .filter(|(name, _)| !added_chains.contains(*name))
            .filter(|(name, chain)| {
                let before = &current.chains[*name];
                before.rules != chain.rules || before.rules.iter().any(recreated)
            })
            .map(|(name, _)| name.clone())
            .collect();
        Self {
            added_sets,
            removed_sets,
            added_chains,
            removed_chains,
            rewritten,
        }
    }

    /// Elements of surviving sets that go away, change data, or point at a chain that is
    /// deleted (re-added later if still wanted).
    fn delete_elements(&self, current: &Ruleset, desired: &Ruleset, ops: &mut Vec<Op>) {
        for (name, set) in &current.sets {
            if self.removed_sets.contains(name) {
                continue;
            }
            let wanted = &desired.sets[name].elements;
            let elements: Vec<Element> = set
                .elements
                .iter()
                .filter(|(element, data)| {
                    wanted.get(*element) != Some(*data) || self.targets_removed_chain(data.as_ref())
                })
                .map(|(element, _)| *element)
                .collect();
            if !elements.is_empty() {
                ops.push(Op::DeleteElements {
                    set: name.clone(),
                    elements,
                });
            }
        }
    }

    fn add_elements(&self, current: &Ruleset, desired: &Ruleset, ops: &mut Vec<Op>) {
        for (name, set) in &desired.sets {
            let before = (!self.added_sets.contains(name)).then(|| &current.sets[name].elements);
            let elements: Vec<(Element, Option<Verdict>)> = set
                .elements
                .iter()
                .filter(|(element, data)| match before {
                    None => true,
                    Some(before) => {
                        before.get(*element) != Some(*data)
                            || self.targets_removed_chain(data.as_ref())
                    }
                })
                .map(|(element, data)| (*element, data.clone()))
                .collect();
            if !elements.is_empty() {
                ops.push(Op::AddElements {
                    set: name.clone(),
                    elements,
                });
            }
        }
    }

    fn targets_removed_chain(&self, data: Option<&Verdict>) -> bool {
        data.and_then(Verdict::target_chain)
            .is_some_and(|chain| self.removed_chains.contains(chain))
    }
}

/// Keys to delete and keys to add: those only on one side, and those on both sides that
/// `same` says cannot be updated in place.
fn changed_keys<V>(
    current: &BTreeMap<String, V>,
    desired: &BTreeMap<String, V>,
    same: impl Fn(&V, &V) -> bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let replaced = |name: &String, value: &V| desired.get(name).is_some_and(|d| !same(value, d));
    let removed = current
        .iter()
        .filter(|(name, value)| !desired.contains_key(*name) || replaced(name, value))
        .map(|(name, _)| name.clone())
        .collect();
    let added = desired
        .iter()
        .filter(|(name, value)| current.get(*name).is_none_or(|c| !same(c, value)))
        .map(|(name, _)| name.clone())
        .collect();
    (removed, added)
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::RemoveTable => write!(f, "remove table"),
            Op::AddTable => write!(f, "add table"),
            Op::AddSet { name, .. } => write!(f, "add set {name}"),
            Op::DeleteSet(name) => write!(f, "delete set {name}"),
            Op::FlushSet(name) => write!(f, "flush set {name}"),
            Op::AddElements { set, elements } => {
                write!(f, "add {} elements to {set}", elements.len())
            }
            Op::DeleteElements { set, elements } => {
                write!(f, "delete {} elements from {set}", elements.len())
            }
            Op::AddChain { name, .. } => write!(f, "add chain {name}"),
            Op::DeleteChain(name) => write!(f, "delete chain {name}"),
            Op::FlushChain(name) => write!(f, "flush chain {name}"),
            Op::AddRule { chain, .. } => write!(f, "add rule to {chain}"),
        }
    }
}
