//! Node → [`NodeInfo`].

use k8s_openapi::api::core::v1::Node;

use super::parse::address;
use super::{Converted, InputError};
use crate::model::cluster::{NodeAddress, NodeAddressKind, NodeInfo};

pub fn node_info(node: &Node) -> Result<Converted<NodeInfo>, InputError> {
    let name = node
        .metadata
        .name
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or(InputError::MissingName)?;
    let listed = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_deref())
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let mut addresses = Vec::new();
    for listed in listed {
        // Hostnames and anything newer carry no address the proxy can listen on.
        let kind = match listed.type_.as_str() {
            "InternalIP" => NodeAddressKind::InternalIp,
            "ExternalIP" => NodeAddressKind::ExternalIp,
            _ => continue,
        };
        match address("status.addresses[].address", &listed.address) {
            Ok(address) => addresses.push(NodeAddress { address, kind }),
            Err(error) => warnings.push(error),
        }
    }
    Ok(Converted {
        value: NodeInfo { name, addresses },
        warnings,
    })
}
