//! The helper table of the IPVS mode: Ferry's nftables layout without its DNAT dispatch.
//!
//! In IPVS mode IPVS itself picks the endpoint and rewrites the destination, but it does not
//! masquerade, filter sources or drop; those come from the same `inet ferry` table the
//! nftables mode uses. So the helper is [`nft::build`]'s ruleset with the dispatch and
//! affinity maps emptied and whatever only they reached (per-Service chains, affinity sets)
//! pruned: the source-range and no-endpoint checks, the masquerade marking and the hairpin
//! rules stay exactly as the nftables mode has them, tested by the same tracer.

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::model::Desired;
use crate::nft::build::names;
use crate::nft::ruleset::{Family, Ruleset};
use crate::nft::{self};

/// The helper ruleset for `desired`.
pub fn ruleset(desired: &Desired, cluster_cidrs: &[IpNet]) -> Ruleset {
    let mut ruleset = nft::build(desired, cluster_cidrs);
    // The DNAT dispatch, and the affinity bookkeeping that follows it (IPVS persistence
    // keeps clients on their real server instead).
    let dispatch = Family::BOTH
        .into_iter()
        .flat_map(|family| [names::services(family), names::remember_clients(family)]);
    for map in dispatch {
        if let Some(map) = ruleset.sets.get_mut(&map) {
            map.elements.clear();
        }
    }
    prune_unreachable(&mut ruleset);
    ruleset
}

/// Removes regular chains nothing jumps to and sets no rule uses.
fn prune_unreachable(ruleset: &mut Ruleset) {
    loop {
        let reached = referenced_chains(ruleset);
        let before = ruleset.chains.len();
        ruleset
            .chains
            .retain(|name, chain| chain.base.is_some() || reached.contains(name));
        if ruleset.chains.len() == before {
            break;
        }
    }
    let used: BTreeSet<String> = ruleset
        .chains
        .values()
        .flat_map(|chain| &chain.rules)
        .flat_map(|rule| rule.referenced_sets())
        .map(str::to_owned)
        .collect();
    ruleset.sets.retain(|name, _| used.contains(name));
}

fn referenced_chains(ruleset: &Ruleset) -> BTreeSet<String> {
    let from_rules = ruleset
        .chains
        .values()
        .flat_map(|chain| &chain.rules)
        .flat_map(|rule| rule.referenced_chains());
    let from_maps = ruleset
        .sets
        .values()
        .flat_map(|set| set.elements.values().flatten())
        .filter_map(|verdict| verdict.target_chain());
    from_rules.chain(from_maps).map(str::to_owned).collect()
}
