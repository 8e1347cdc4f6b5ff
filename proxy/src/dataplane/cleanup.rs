//! `ferry-proxy cleanup` (and `cleanupOnExit`): removes everything Ferry installs in either
//! mode, and nothing else: the IPVS virtual servers it owns (see `diff::Ownership`: on an
//! address of `ferry-ipvs0`, or a NodePort on one of the node's addresses), the
//! `ferry-ipvs0` link with its addresses, and table `inet ferry`.

use std::collections::BTreeSet;
use std::fmt;

use tracing::info;

use super::DataplaneError;
use crate::diff::Ownership;
use crate::ipvs::Ipvs;
use crate::link::{Link, LinkError};
use crate::nft::{Batch, NftDataplane};

/// What could not be removed; each step runs whatever the others did.
#[derive(Debug, thiserror::Error)]
pub struct CleanupError(pub Vec<DataplaneError>);

impl fmt::Display for CleanupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cleanup incomplete")?;
        for error in &self.0 {
            write!(f, "; {error}")?;
        }
        Ok(())
    }
}

/// Removes Ferry's kernel state. `ipvs` is `None` on a kernel without IPVS: there is nothing
/// of Ferry's in it then. `loopback_node_ports`: 127.0.0.1 served NodePorts (configured).
pub async fn cleanup(
    ipvs: Option<&impl Ipvs>,
    link: &impl Link,
    nft: &mut impl NftDataplane,
    loopback_node_ports: bool,
) -> Result<(), CleanupError> {
    let mut failures = remove_ipvs_mode(ipvs, link, loopback_node_ports)
        .await
        .err()
        .map_or_else(Vec::new, |error| error.0);
    if let Err(error) = nft.apply(&Batch::remove_table()) {
        failures.push(error.into());
    }
    if failures.is_empty() {
        info!("removed Ferry's kernel state");
        Ok(())
    } else {
        Err(CleanupError(failures))
    }
}

/// Removes what only the IPVS mode installs (its virtual servers, `ferry-ipvs0`): all of
/// the cleanup, and what the nftables mode clears at start on a node that ran the IPVS mode,
/// whose virtual servers and addresses would still take traffic.
pub async fn remove_ipvs_mode(
    ipvs: Option<&impl Ipvs>,
    link: &impl Link,
    loopback_node_ports: bool,
) -> Result<(), CleanupError> {
    let mut failures = Vec::new();
    match ipvs {
        Some(ipvs) => {
            if let Err(error) = delete_owned_virtual_servers(ipvs, link, loopback_node_ports).await
            {
                failures.push(error);
            }
        }
        None => info!("this kernel has no IPVS, so no virtual server of Ferry's"),
    }
    if let Err(error) = link.delete_link().await {
        failures.push(error.into());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CleanupError(failures))
    }
}

async fn delete_owned_virtual_servers(
    ipvs: &impl Ipvs,
    link: &impl Link,
    loopback_node_ports: bool,
) -> Result<(), DataplaneError> {
    let bound = match link.list_addresses().await {
        Err(LinkError::LinkNotFound) => BTreeSet::new(),
        other => other?,
    };
    let host = link.host_addresses().await?;
    let ownership = Ownership {
        node_port_addresses: host
            .into_iter()
            .filter(|address| loopback_node_ports || !address.is_loopback())
            .collect(),
        ..Ownership::default()
    };
    let listed = ipvs.list_virtual_servers().await?;
    let owned = listed
        .keys()
        .filter(|key| ownership.owns(key, bound.contains(&key.address)));
    let mut deleted = 0;
    for key in owned {
        ipvs.delete_virtual_server(*key).await?;
        deleted += 1;
    }
    info!(
        deleted,
        kept = listed.len() - deleted,
        "deleted Ferry's IPVS virtual servers"
    );
    Ok(())
}
