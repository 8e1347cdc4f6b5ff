//! The allocation, derived afresh from the pools and the Services' statuses every time, so a
//! restart or a new leader recomputes exactly what the statuses say.
//!
//! One round, Services in order of creation (then namespace/name):
//! 1. Holders keep: each Service keeps the addresses its status lists while they still fit
//!    its request. Two Services listing one address they cannot share: the first keeps it.
//! 2. An address a status lists but will not keep is closed to newcomers (sharers too) for
//!    this round: they get it after the status that gives it up is written, so no address is
//!    ever listed by two Services that may not share it, whatever order the writes land in.
//!    Addresses that Services of other load-balancer classes list stay closed for good.
//! 3. Requested addresses (`ferry.dev/loadbalancer-ips`, `spec.loadBalancerIP`).
//! 4. Automatic addresses: the oldest pool first, the lowest free address first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Service};

use super::addresses::Family;
use super::outcome::{Assigned, Assignments, Conflict, Outcome, PoolNames, PoolReport, Problem};
use super::pools::{Pool, Pools, Refusal};
use super::request::{Claimant, ServiceKey, Standing, Wish};
use crate::api::LoadBalancerPool;

/// Decides every Service's addresses. Pure: the same objects, in any order, give the same
/// result.
pub fn allocate<'a>(
    pools: impl IntoIterator<Item = &'a LoadBalancerPool>,
    services: impl IntoIterator<Item = &'a Service>,
    namespaces: impl IntoIterator<Item = &'a Namespace>,
) -> Assignments {
    let pools = Pools::read(pools);
    let namespace_labels: BTreeMap<&str, _> = namespaces
        .into_iter()
        .filter_map(|ns| Some((ns.metadata.name.as_deref()?, ns.metadata.labels.as_ref()?)))
        .collect();
    let mut claimants = Vec::new();
    let mut leaving = Vec::new();
    let mut foreign = Vec::new();
    for service in services {
        let labels = service
            .metadata
            .namespace
            .as_deref()
            .and_then(|ns| namespace_labels.get(ns).copied());
        match Standing::of(service, labels, &pools) {
            Standing::Served(claimant) => claimants.push(claimant),
            Standing::Leaving(key, held) => leaving.push((key, held)),
            Standing::Foreign(key, held) => foreign.push((key, held)),
            Standing::Unrelated => {}
        }
    }
    claimants.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
    leaving.sort();
    foreign.sort();

    let mut round = Round::new(&pools, &claimants);
    for index in 0..claimants.len() {
        round.keep_held(index);
    }
    for index in 0..claimants.len() {
        round.block_unkept(index);
    }
    for (key, held) in &leaving {
        round.block(held, Lister::Releasing(key.clone()));
    }
    for (key, held) in &foreign {
        round.block(held, Lister::Foreign(key.clone()));
    }
    for index in 0..claimants.len() {
        round.grant_requested(index);
    }
    for index in 0..claimants.len() {
        round.grant_automatic(index);
    }
    round.finish(leaving.into_iter().map(|(key, _)| key))
}

/// Who lists an address during the round.
#[derive(Default)]
struct Slot {
    /// Claimants (by index) whose statuses will list it.
    users: Vec<usize>,
    /// A Service whose status lists the address but will not keep it (or is another
    /// implementation's): until that changes, no one new may use the address, sharer or not.
    lister: Option<Lister>,
}

#[derive(Clone)]
enum Lister {
    /// Ferry will write a status without the address.
    Releasing(ServiceKey),
    /// A Service of another load-balancer class.
    Foreign(ServiceKey),
}

/// Why a claimant cannot have an address.
enum Blocker {
    User(usize),
    Lister(Lister),
}

struct Round<'r, 'a> {
    pools: &'r Pools,
    claimants: &'r [Claimant<'a>],
    slots: BTreeMap<IpAddr, Slot>,
    granted: Vec<Vec<Assigned>>,
    problems: Vec<Option<Problem>>,
    conflicts: BTreeSet<Conflict>,
}

impl<'r, 'a> Round<'r, 'a> {
    fn new(pools: &'r Pools, claimants: &'r [Claimant<'a>]) -> Self {
        Round {
            pools,
            claimants,
            slots: BTreeMap::new(),
            granted: vec![Vec::new(); claimants.len()],
            problems: claimants
                .iter()
                .map(|c| {
                    c.wish
                        .as_ref()
                        .err()
                        .cloned()
                        .map(Problem::UnreadableRequest)
                })
                .collect(),
            conflicts: BTreeSet::new(),
        }
    }

    fn keep_held(&mut self, index: usize) {
        let claimant = &self.claimants[index];
        for &address in &claimant.held {
            let Some(pool) = self.still_fits(index, address) else {
                continue;
            };
            match self.blocker(index, address) {
                None => self.grant(index, address, pool),
                Some(Blocker::User(holder)) => self.record_conflict(address, holder, index),
                // Listers are recorded only after every holder had its turn.
                Some(Blocker::Lister(_)) => {}
            }
        }
    }

    /// The pool of a held address if the claimant may keep it: the pool still offers it and
    /// admits the claimant, and the address matches the request (an unreadable request keeps
    /// what it holds until it can be read).
    fn still_fits(&self, index: usize, address: IpAddr) -> Option<&'r Pool> {
        let claimant = &self.claimants[index];
        let family = Family::of(address);
        let family_wanted = claimant.families.all().any(|f| f == family);
        if !family_wanted || self.has_family(index, family) {
            return None;
        }
        let pool = self.pools.offering(address)?;
        pool.admits(claimant).ok()?;
        let fits = match &claimant.wish {
            Ok(wish) => {
                wish.pool.as_deref().is_none_or(|name| name == pool.name())
                    && (wish.addresses.is_empty() || wish.addresses.contains(&address))
            }
            Err(_) => true,
        };
        fits.then_some(pool)
    }

    /// Records the claimant's held addresses it does not keep as being released.
    fn block_unkept(&mut self, index: usize) {
        let claimant = &self.claimants[index];
        let unkept: Vec<IpAddr> = claimant
            .held
            .iter()
            .copied()
            .filter(|address| !self.granted[index].iter().any(|a| a.address == *address))
            .collect();
        self.block(&unkept, Lister::Releasing(claimant.key.clone()));
    }

    /// Bars new users from addresses `lister` lists, for the rest of the round.
    fn block(&mut self, listed: &[IpAddr], lister: Lister) {
        for &address in listed {
            let slot = self.slots.entry(address).or_default();
            slot.lister.get_or_insert_with(|| lister.clone());
        }
    }

    fn grant_requested(&mut self, index: usize) {
        let Ok(wish) = &self.claimants[index].wish else {
            return;
        };
        for &address in &wish.addresses {
            let granted = self.granted[index].iter().any(|a| a.address == address);
            if granted {
                continue;
            }
            if let Err(problem) = self.grant_request(index, wish, address) {
                self.problems[index].get_or_insert(problem);
            }
        }
    }

    fn grant_request(&mut self, index: usize, wish: &Wish, address: IpAddr) -> Result<(), Problem> {
        let pool = self
            .pools
            .offering(address)
            .filter(|pool| wish.pool.as_deref().is_none_or(|name| name == pool.name()))
            .ok_or(Problem::NotInAnyPool { address })?;
        pool.admits(&self.claimants[index])
            .map_err(|why| unusable(pool.name(), why))?;
        match self.blocker(index, address) {
            None => {
                self.grant(index, address, pool);
                Ok(())
            }
            Some(Blocker::User(holder)) => {
                self.record_conflict(address, holder, index);
                let holder = self.claimants[holder].key.clone();
                Err(Problem::Taken { address, holder })
            }
            Some(Blocker::Lister(Lister::Releasing(holder))) => {
                Err(Problem::Releasing { address, holder })
            }
            Some(Blocker::Lister(Lister::Foreign(holder))) => {
                Err(Problem::Taken { address, holder })
            }
        }
    }

    fn grant_automatic(&mut self, index: usize) {
        let claimant = &self.claimants[index];
        let Ok(wish) = &claimant.wish else {
            return;
        };
        if !wish.addresses.is_empty() {
            return;
        }
        let pools = match self.automatic_pools(claimant, wish) {
            Ok(pools) => pools,
            Err(problem) => {
                self.problems[index].get_or_insert(problem);
                return;
            }
        };
        for &family in &claimant.families.required {
            if self.has_family(index, family) {
                continue;
            }
            if let Err(problem) = self.grant_free(index, family, &pools) {
                self.problems[index].get_or_insert(problem);
            }
        }
        if let Some(family) = claimant.families.optional
            && !self.has_family(index, family)
        {
            // PreferDualStack: a missing second family is not a problem.
            self.grant_free(index, family, &pools).ok();
        }
    }

    /// The pools a claimant may get an address from without naming one.
    fn automatic_pools(&self, claimant: &Claimant, wish: &Wish) -> Result<Vec<&'r Pool>, Problem> {
        let Some(name) = &wish.pool else {
            let admitting = self.pools.usable().filter(|pool| pool.auto_assign());
            return Ok(admitting
                .filter(|pool| pool.admits(claimant).is_ok())
                .collect());
        };
        let pool = self
            .pools
            .named(name)
            .ok_or_else(|| unusable(name, Refusal::NotFound))?;
        pool.admits(claimant).map_err(|why| unusable(name, why))?;
        Ok(vec![pool])
    }

    fn grant_free(
        &mut self,
        index: usize,
        family: Family,
        pools: &[&'r Pool],
    ) -> Result<(), Problem> {
        let offering: Vec<&'r Pool> = pools
            .iter()
            .copied()
            .filter(|pool| pool.has_family(family))
            .collect();
        if offering.is_empty() {
            return Err(Problem::NoPool { family });
        }
        for pool in &offering {
            let free = pool
                .addresses(family)
                .find(|address| self.blocker(index, *address).is_none());
            if let Some(address) = free {
                self.grant(index, address, pool);
                return Ok(());
            }
        }
        let names = offering.iter().map(|p| p.name().to_owned()).collect();
        Err(Problem::Exhausted {
            family,
            pools: PoolNames(names),
        })
    }

    fn has_family(&self, index: usize, family: Family) -> bool {
        self.granted[index]
            .iter()
            .any(|a| Family::of(a.address) == family)
    }

    /// What keeps the claimant from using `address`, if anything: a user it cannot share
    /// with, or a Service that still lists the address.
    fn blocker(&self, index: usize, address: IpAddr) -> Option<Blocker> {
        let slot = self.slots.get(&address)?;
        if let Some(lister) = &slot.lister {
            return Some(Blocker::Lister(lister.clone()));
        }
        let sharing = &self.claimants[index].sharing;
        slot.users
            .iter()
            .find(|&&user| !self.claimants[user].sharing.allows(sharing))
            .map(|&user| Blocker::User(user))
    }

    fn grant(&mut self, index: usize, address: IpAddr, pool: &Pool) {
        self.granted[index].push(Assigned {
            address,
            pool: pool.name().to_owned(),
        });
        self.slots.entry(address).or_default().users.push(index);
    }

    fn record_conflict(&mut self, address: IpAddr, holder: usize, claimant: usize) {
        self.conflicts.insert(Conflict {
            address,
            holder: self.claimants[holder].key.clone(),
            claimant: self.claimants[claimant].key.clone(),
        });
    }

    fn finish(self, leaving: impl Iterator<Item = ServiceKey>) -> Assignments {
        let mut in_use: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
        for assigned in self.granted.iter().flatten() {
            in_use
                .entry(&assigned.pool)
                .or_default()
                .insert(assigned.address);
        }
        let pools = self
            .pools
            .iter()
            .map(|pool| {
                let report = PoolReport {
                    capacity: pool.capacity(),
                    allocated: in_use.get(pool.name()).map_or(0, |a| a.len() as u128),
                    problem: pool.problem().cloned(),
                };
                (pool.name().to_owned(), report)
            })
            .collect();
        let mut services: BTreeMap<ServiceKey, Outcome> =
            leaving.map(|key| (key, Outcome::Released)).collect();
        let decisions = self.granted.into_iter().zip(self.problems);
        for (claimant, (mut addresses, problem)) in self.claimants.iter().zip(decisions) {
            addresses.sort_by_key(|a| {
                let family = Family::of(a.address);
                claimant.families.all().position(|f| f == family)
            });
            services.insert(claimant.key.clone(), Outcome::Served { addresses, problem });
        }
        Assignments {
            services,
            conflicts: self.conflicts,
            pools,
        }
    }
}

fn unusable(pool: &str, why: Refusal) -> Problem {
    Problem::PoolUnusable {
        pool: pool.to_owned(),
        why,
    }
}
