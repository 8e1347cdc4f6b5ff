//! An in-memory [`NftDataplane`] that fails the way nf_tables does: adding what exists is
//! `EEXIST` (Ferry always creates exclusively), deleting or referring to what is missing is
//! `ENOENT`, deleting what is still referred to is `EBUSY`, and a failed batch changes nothing.

use super::diff::{Batch, Op};
use super::netlink::TableSnapshot;
use super::ruleset::{Element, Ruleset, Set, SetKind, Verdict};
use super::{Errno, NftDataplane, NftError};

#[derive(Debug, Default)]
pub struct FakeDataplane {
    table: Option<Ruleset>,
    /// Every batch applied successfully, for tests that count operations.
    pub applied: Vec<Batch>,
}

impl FakeDataplane {
    pub fn new() -> Self {
        Self::default()
    }

    /// What the fake kernel holds.
    pub fn table(&self) -> Option<&Ruleset> {
        self.table.as_ref()
    }
}

impl NftDataplane for FakeDataplane {
    fn apply(&mut self, batch: &Batch) -> Result<(), NftError> {
        let mut table = self.table.clone();
        for (index, op) in batch.ops.iter().enumerate() {
            apply_op(&mut table, op).map_err(|errno| NftError::Rejected {
                index,
                operation: op.to_string(),
                errno: Errno(errno),
            })?;
        }
        self.table = table;
        self.applied.push(batch.clone());
        Ok(())
    }

    fn read_table(&mut self) -> Result<Option<TableSnapshot>, NftError> {
        Ok(self.table.as_ref().map(TableSnapshot::of))
    }
}

fn apply_op(table: &mut Option<Ruleset>, op: &Op) -> Result<(), i32> {
    if let Op::RemoveTable = op {
        *table = None;
        return Ok(());
    }
    if let Op::AddTable = op {
        return match table {
            Some(_) => Err(libc::EEXIST),
            None => {
                *table = Some(Ruleset::default());
                Ok(())
            }
        };
    }
    let ruleset = table.as_mut().ok_or(libc::ENOENT)?;
    match op {
        Op::RemoveTable | Op::AddTable => Ok(()),
        Op::AddSet { name, kind } => add_set(ruleset, name, *kind),
        Op::DeleteSet(name) => delete_set(ruleset, name),
        Op::FlushSet(name) => {
            let set = ruleset.sets.get_mut(name).ok_or(libc::ENOENT)?;
            set.elements.clear();
            Ok(())
        }
        Op::AddElements { set, elements } => add_elements(ruleset, set, elements),
        Op::DeleteElements { set, elements } => {
            let set = ruleset.sets.get_mut(set).ok_or(libc::ENOENT)?;
            for element in elements {
                set.elements.remove(element).ok_or(libc::ENOENT)?;
            }
            Ok(())
        }
        Op::AddChain { name, base } => {
            if ruleset.chains.contains_key(name) {
                return Err(libc::EEXIST);
            }
            let chain = super::ruleset::Chain {
                base: *base,
                rules: Vec::new(),
            };
            ruleset.chains.insert(name.clone(), chain);
            Ok(())
        }
        Op::DeleteChain(name) => delete_chain(ruleset, name),
        Op::FlushChain(name) => {
            ruleset
                .chains
                .get_mut(name)
                .ok_or(libc::ENOENT)?
                .rules
                .clear();
            Ok(())
        }
        Op::AddRule { chain, rule } => {
            let sets_exist = rule.referenced_sets().all(|s| ruleset.sets.contains_key(s));
            let chains_exist = rule
                .referenced_chains()
                .all(|c| ruleset.chains.contains_key(c));
            if !sets_exist || !chains_exist {
                return Err(libc::ENOENT);
            }
            let target = ruleset.chains.get_mut(chain).ok_or(libc::ENOENT)?;
            target.rules.push(rule.clone());
            Ok(())
        }
    }
}

fn add_set(ruleset: &mut Ruleset, name: &str, kind: SetKind) -> Result<(), i32> {
    if ruleset.sets.contains_key(name) {
        return Err(libc::EEXIST);
    }
    ruleset.sets.insert(name.to_owned(), Set::new(kind));
    Ok(())
}

fn delete_set(ruleset: &mut Ruleset, name: &str) -> Result<(), i32> {
    if !ruleset.sets.contains_key(name) {
        return Err(libc::ENOENT);
    }
    let in_use = ruleset
        .chains
        .values()
        .flat_map(|c| &c.rules)
        .any(|r| r.referenced_sets().any(|s| s == name));
    if in_use {
        return Err(libc::EBUSY);
    }
    ruleset.sets.remove(name);
    Ok(())
}

fn add_elements(
    ruleset: &mut Ruleset,
    name: &str,
    elements: &[(Element, Option<Verdict>)],
) -> Result<(), i32> {
    let chains_exist = elements
        .iter()
        .filter_map(|(_, data)| data.as_ref().and_then(Verdict::target_chain))
        .all(|chain| ruleset.chains.contains_key(chain));
    if !chains_exist {
        return Err(libc::ENOENT);
    }
    let set = ruleset.sets.get_mut(name).ok_or(libc::ENOENT)?;
    for (element, data) in elements {
        if !fits(set.kind, element, data.is_some()) {
            return Err(libc::EINVAL);
        }
        if set.elements.insert(*element, data.clone()).is_some() {
            return Err(libc::EEXIST);
        }
    }
    Ok(())
}

/// Whether an element has the key and data the set's type asks for.
fn fits(kind: SetKind, element: &Element, has_data: bool) -> bool {
    let family = super::ruleset::Family::of;
    match (kind, element) {
        (SetKind::FrontendVerdicts(f), Element::Frontend(e)) => family(e.address) == f && has_data,
        (SetKind::Frontends(f), Element::Frontend(e)) => family(e.address) == f && !has_data,
        (SetKind::AddressPairs(f), Element::AddressPair(a, b)) => {
            family(*a) == f && family(*b) == f && !has_data
        }
        _ => false,
    }
}

fn delete_chain(ruleset: &mut Ruleset, name: &str) -> Result<(), i32> {
    if !ruleset.chains.contains_key(name) {
        return Err(libc::ENOENT);
    }
    let from_rules = ruleset
        .chains
        .iter()
        .filter(|(other, _)| other.as_str() != name)
        .flat_map(|(_, c)| &c.rules)
        .any(|r| r.referenced_chains().any(|c| c == name));
    let from_elements = ruleset
        .sets
        .values()
        .flat_map(|s| s.elements.values())
        .any(|data| data.as_ref().and_then(Verdict::target_chain) == Some(name));
    if from_rules || from_elements {
        return Err(libc::EBUSY);
    }
    ruleset.chains.remove(name);
    Ok(())
}
