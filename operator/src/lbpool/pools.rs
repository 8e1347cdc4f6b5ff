//! LoadBalancerPools as the allocator reads them: merged address ranges, who may use them, and
//! whether they are valid. Of two overlapping pools the older keeps its addresses and the
//! newer is invalid, so creating a pool can never take addresses away from Services.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::addresses::{AddressError, AddressRange, Family, is_buggy, merge};
use super::request::Claimant;
use crate::api::LoadBalancerPool;

/// Why a pool is not valid; its `Valid` condition carries the reason and this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolProblem {
    #[error(transparent)]
    Addresses(#[from] AddressError),
    #[error("{field} cannot be read: {message}")]
    Selector {
        field: &'static str,
        message: String,
    },
    #[error("{mine} overlaps {theirs} of the older pool {other}")]
    Overlap {
        other: String,
        mine: AddressRange,
        theirs: AddressRange,
    },
}

impl PoolProblem {
    /// The `reason` of the pool's `Valid=False` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            PoolProblem::Addresses(_) => "InvalidAddresses",
            PoolProblem::Selector { .. } => "InvalidSelector",
            PoolProblem::Overlap { .. } => "Overlap",
        }
    }
}

/// Why a pool does not serve a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("does not exist")]
    NotFound,
    #[error("is not valid (see its Valid condition)")]
    Invalid,
    #[error("is not a default pool, and the Service sets no loadBalancerClass")]
    NotDefault,
    #[error("does not select the Service's labels")]
    ServiceSelector,
    #[error("does not select the Service's namespace")]
    NamespaceSelector,
}

/// One pool, read.
#[derive(Debug)]
pub struct Pool {
    name: String,
    created: Timestamp,
    ranges: Vec<AddressRange>,
    avoid_buggy_ips: bool,
    auto_assign: bool,
    default: bool,
    service_selector: Selector,
    namespace_selector: Selector,
    problem: Option<PoolProblem>,
}

impl Pool {
    fn read(pool: &LoadBalancerPool) -> Pool {
        let spec = &pool.spec;
        let mut problem = None;
        let mut ranges = Vec::with_capacity(spec.addresses.len());
        for text in &spec.addresses {
            match AddressRange::parse(text) {
                Ok(range) => ranges.push(range),
                Err(error) => {
                    problem.get_or_insert(error.into());
                }
            }
        }
        let mut selector = |field, selector: &Option<LabelSelector>| match selector
            .clone()
            .map(Selector::try_from)
        {
            None => Selector::default(),
            Some(Ok(selector)) => selector,
            Some(Err(error)) => {
                problem.get_or_insert(PoolProblem::Selector {
                    field,
                    message: error.to_string(),
                });
                Selector::default()
            }
        };
        let service_selector = selector("serviceSelector", &spec.service_selector);
        let namespace_selector = selector("namespaceSelector", &spec.namespace_selector);
        Pool {
            name: pool.name_any(),
            created: pool
                .creation_timestamp()
                .map_or(Timestamp::MAX, |time| time.0),
            ranges: merge(ranges),
            avoid_buggy_ips: spec.avoid_buggy_ips,
            auto_assign: spec.auto_assign,
            default: spec.default,
            service_selector,
            namespace_selector,
            problem,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn problem(&self) -> Option<&PoolProblem> {
        self.problem.as_ref()
    }

    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }

    pub fn auto_assign(&self) -> bool {
        self.auto_assign
    }

    /// Whether the pool hands out `address` (it is in a range and not avoided).
    pub fn offers(&self, address: IpAddr) -> bool {
        !(self.avoid_buggy_ips && is_buggy(address))
            && self.ranges.iter().any(|range| range.contains(address))
    }

    /// Whether `address` is in one of the pool's ranges, avoided or not.
    fn contains(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|range| range.contains(address))
    }

    pub fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|range| range.family() == family)
    }

    /// The addresses of `family` the pool hands out, lowest first.
    pub fn addresses(&self, family: Family) -> impl Iterator<Item = IpAddr> + '_ {
        self.ranges
            .iter()
            .filter(move |range| range.family() == family)
            .flat_map(AddressRange::addresses)
            .filter(|address| !(self.avoid_buggy_ips && is_buggy(*address)))
    }

    /// How many addresses the pool hands out; saturates for enormous IPv6 pools.
    pub fn capacity(&self) -> u128 {
        self.ranges.iter().fold(0u128, |total, range| {
            total.saturating_add(range.size(self.avoid_buggy_ips))
        })
    }

    /// Whether the pool serves `claimant` at all (whichever address it would get).
    pub fn admits(&self, claimant: &Claimant) -> Result<(), Refusal> {
        if !self.is_valid() {
            Err(Refusal::Invalid)
        } else if !claimant.sets_class && !self.default {
            Err(Refusal::NotDefault)
        } else if !self.service_selector.matches(claimant.labels) {
            Err(Refusal::ServiceSelector)
        } else if !self.namespace_selector.matches(claimant.namespace_labels) {
            Err(Refusal::NamespaceSelector)
        } else {
            Ok(())
        }
    }

    /// The first pair of overlapping ranges of the two pools.
    fn overlap(&self, other: &Pool) -> Option<(AddressRange, AddressRange)> {
        self.ranges.iter().find_map(|mine| {
            other
                .ranges
                .iter()
                .find(|theirs| mine.overlaps(theirs))
                .map(|theirs| (*mine, *theirs))
        })
    }
}

/// All pools, oldest first (then by name).
#[derive(Debug)]
pub struct Pools {
    all: Vec<Pool>,
}

impl Pools {
    /// Reads the pools and marks each one that overlaps an older valid pool invalid.
    pub fn read<'a>(pools: impl IntoIterator<Item = &'a LoadBalancerPool>) -> Pools {
        let mut all: Vec<Pool> = pools.into_iter().map(Pool::read).collect();
        all.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        for newer in 0..all.len() {
            if !all[newer].is_valid() {
                continue;
            }
            let (older, rest) = all.split_at_mut(newer);
            let pool = &mut rest[0];
            let clash = older
                .iter()
                .filter(|older| older.is_valid())
                .find_map(|older| {
                    pool.overlap(older)
                        .map(|(mine, theirs)| PoolProblem::Overlap {
                            other: older.name.clone(),
                            mine,
                            theirs,
                        })
                });
            pool.problem = clash;
        }
        Pools { all }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.all.iter()
    }

    pub fn usable(&self) -> impl Iterator<Item = &Pool> {
        self.all.iter().filter(|pool| pool.is_valid())
    }

    pub fn named(&self, name: &str) -> Option<&Pool> {
        self.all.iter().find(|pool| pool.name == name)
    }

    /// The valid pool that hands out `address`; valid pools never overlap, so there is one
    /// at most.
    pub fn offering(&self, address: IpAddr) -> Option<&Pool> {
        self.usable().find(|pool| pool.offers(address))
    }

    /// Whether any pool, valid or not, covers `address`: such addresses in a Service's status
    /// were written by Ferry.
    pub fn covers(&self, address: IpAddr) -> bool {
        self.all.iter().any(|pool| pool.contains(address))
    }

    /// Whether Ferry serves Services that set no loadBalancerClass.
    pub fn serve_unclassed(&self) -> bool {
        self.all.iter().any(|pool| pool.default)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    use super::*;
    use crate::api::LoadBalancerPoolSpec;

    fn pool(name: &str, age: i64, addresses: &[&str]) -> LoadBalancerPool {
        let mut pool = LoadBalancerPool::new(
            name,
            LoadBalancerPoolSpec {
                addresses: addresses.iter().map(ToString::to_string).collect(),
                avoid_buggy_ips: false,
                auto_assign: true,
                default: false,
                service_selector: None,
                namespace_selector: None,
            },
        );
        let created = Timestamp::from_second(1_000_000 - age).expect("a valid instant");
        pool.metadata.creation_timestamp = Some(Time(created));
        pool
    }

    fn problems(pools: &Pools) -> Vec<(String, Option<String>)> {
        pools
            .iter()
            .map(|p| (p.name().to_owned(), p.problem().map(ToString::to_string)))
            .collect()
    }

    #[test]
    fn the_newer_of_two_overlapping_pools_is_invalid() {
        let pools = Pools::read(&[
            pool("young", 1, &["192.0.2.128/25"]),
            pool("old", 9, &["192.0.2.0/24"]),
            pool("apart", 5, &["198.51.100.0/24", "2001:db8::/64"]),
        ]);
        assert_eq!(
            problems(&pools),
            [
                ("old".into(), None),
                ("apart".into(), None),
                (
                    "young".into(),
                    Some(
                        "192.0.2.128-192.0.2.255 overlaps 192.0.2.0-192.0.2.255 of the older pool old"
                            .into()
                    )
                ),
            ]
        );
        assert_eq!(
            pools
                .named("young")
                .and_then(Pool::problem)
                .map(PoolProblem::reason),
            Some("Overlap")
        );
    }

    #[test]
    fn only_valid_pools_invalidate_newer_ones() {
        let pools = Pools::read(&[
            pool("a", 3, &["192.0.2.0/28"]),
            pool("b", 2, &["192.0.2.8/29", "198.51.100.0/28"]),
            pool("c", 1, &["198.51.100.8/29"]),
        ]);
        let invalid: Vec<&str> = pools
            .iter()
            .filter(|p| !p.is_valid())
            .map(Pool::name)
            .collect();
        assert_eq!(invalid, ["b"], "c overlaps only b, which serves nothing");
    }

    #[test]
    fn unreadable_addresses_and_selectors_invalidate_a_pool() {
        let mut bad_selector = pool("selector", 1, &["192.0.2.0/28"]);
        bad_selector.spec.service_selector = Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Near".into(),
                values: None,
            }]),
            match_labels: None,
        });
        let pools = Pools::read(&[
            pool("range", 2, &["192.0.2.20-192.0.2.10", "198.51.100.0/28"]),
            bad_selector,
        ]);
        let reasons: Vec<_> = pools
            .iter()
            .map(|p| p.problem().map(PoolProblem::reason))
            .collect();
        assert_eq!(reasons, [Some("InvalidAddresses"), Some("InvalidSelector")]);
        assert!(
            pools.covers("198.51.100.3".parse().unwrap()),
            "the readable ranges of an invalid pool are still Ferry's"
        );
        assert!(pools.offering("198.51.100.3".parse().unwrap()).is_none());
    }

    #[test]
    fn avoided_addresses_are_neither_offered_nor_counted() {
        let mut avoiding = pool("avoiding", 1, &["192.0.2.0/24", "2001:db8::/126"]);
        avoiding.spec.avoid_buggy_ips = true;
        let pools = Pools::read(&[avoiding]);
        let pool = pools.named("avoiding").expect("the pool");
        assert_eq!(pool.capacity(), 254 + 4);
        assert!(!pool.offers("192.0.2.0".parse().unwrap()));
        assert!(!pool.offers("192.0.2.255".parse().unwrap()));
        assert!(pool.offers("2001:db8::".parse().unwrap()));
        assert_eq!(
            pool.addresses(Family::V4).next(),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(pool.addresses(Family::V4).count(), 254);
    }
}
