//! What the allocator decides: per Service, the addresses its status should hold and what
//! kept it from getting more; the conflicts; and per pool, how full it is and whether it is
//! valid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::addresses::Family;
use super::pools::{PoolProblem, Refusal};
use super::request::ServiceKey;

/// An address and the pool it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assigned {
    pub address: IpAddr,
    pub pool: String,
}

/// What Ferry does with one Service's `status.loadBalancer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ferry serves the Service: its status should list `addresses` (primary family first);
    /// `problem` says why it lacks some or all of what it asked for.
    Served {
        addresses: Vec<Assigned>,
        problem: Option<Problem>,
    },
    /// Ferry no longer serves the Service (its type changed, or it lost its default pool) but
    /// its status holds Ferry's addresses: the status is cleared.
    Released,
}

impl Outcome {
    /// The addresses the Service's status should list.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let assigned = match self {
            Outcome::Served { addresses, .. } => addresses.as_slice(),
            Outcome::Released => &[],
        };
        assigned.iter().map(|a| a.address)
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Outcome::Served { problem, .. } => problem.as_ref(),
            Outcome::Released => None,
        }
    }
}

/// Why a Service did not get (all) the addresses it asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the request cannot be read: {0}")]
    UnreadableRequest(String),
    #[error("pool {pool} {why}")]
    PoolUnusable { pool: String, why: Refusal },
    #[error("{address} is not offered by any pool this Service may use")]
    NotInAnyPool { address: IpAddr },
    #[error("{address} is in use by Service {holder}, which cannot share it with this Service")]
    Taken { address: IpAddr, holder: ServiceKey },
    #[error("{address} is still listed by Service {holder}, which is giving it up")]
    Releasing { address: IpAddr, holder: ServiceKey },
    #[error("no free {family} address in {pools}")]
    Exhausted { family: Family, pools: PoolNames },
    #[error("no pool this Service may use offers {family} addresses")]
    NoPool { family: Family },
}

impl Problem {
    /// A release in progress resolves itself within moments: not worth a Warning.
    pub fn is_transient(&self) -> bool {
        matches!(self, Problem::Releasing { .. })
    }
}

/// Pool names, shown as `pool a` or `pools a, b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolNames(pub Vec<String>);

impl fmt::Display for PoolNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.0.len() == 1 { "pool" } else { "pools" };
        write!(f, "{noun} {}", self.0.join(", "))
    }
}

/// Two Services claimed one address they cannot share; `holder` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub address: IpAddr,
    pub holder: ServiceKey,
    pub claimant: ServiceKey,
}

/// How full a pool is, and whether it is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolReport {
    pub capacity: u128,
    /// Distinct addresses of the pool in Services' statuses (shared ones count once).
    pub allocated: u128,
    pub problem: Option<PoolProblem>,
}

impl PoolReport {
    pub fn available(&self) -> u128 {
        self.capacity.saturating_sub(self.allocated)
    }
}

/// Everything the allocator decides. Services Ferry neither serves nor must release are
/// absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignments {
    pub services: BTreeMap<ServiceKey, Outcome>,
    pub conflicts: BTreeSet<Conflict>,
    pub pools: BTreeMap<String, PoolReport>,
}

impl Assignments {
    /// The conflicts in which `holder` kept the address.
    pub fn conflicts_kept_by(&self, holder: &ServiceKey) -> impl Iterator<Item = &Conflict> {
        let holder = holder.clone();
        self.conflicts.iter().filter(move |c| c.holder == holder)
    }
}
