//! The settings the model depends on, and what they mean for this node.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::cluster::{NodeAddressKind, NodeInfo};
use super::frontend::Masquerade;

/// The part of Ferry's configuration that shapes the desired dataplane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelConfig {
    /// CIDRs selecting which node addresses serve NodePorts; `None` means the node's
    /// InternalIPs.
    ///
    /// A loopback CIDR (within 127.0.0.0/8, such as `127.0.0.1/32`) adds NodePorts on
    /// 127.0.0.1; a wider one such as `0.0.0.0/0` does not, on purpose. That needs
    /// `net.ipv4.conf.all.route_localnet=1`, which lets hosts on the node's links reach the
    /// node's loopback services by sending packets to 127.0.0.1 (CVE-2020-8558); so it is
    /// never a default. IPv6 has no equivalent, so ::1 never serves NodePorts.
    pub node_port_addresses: Option<Vec<IpNet>>,
    /// The pod CIDRs: traffic to a ClusterIP from outside them is masqueraded so replies come
    /// back through this node. Empty means "unknown", and then all of it is masqueraded.
    pub cluster_cidrs: Vec<IpNet>,
    /// Masquerade every service connection, whatever its source.
    pub masquerade_all: bool,
}

/// What every Service's frontends share on this node: computed once per model build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    pub node_name: String,
    /// Where NodePort frontends listen, in a stable order.
    pub node_port_addresses: Vec<IpAddr>,
    /// How ClusterIP traffic is masqueraded.
    pub cluster_ip_masquerade: Masquerade,
}

impl NodeContext {
    pub fn new(node: &NodeInfo, config: &ModelConfig) -> Self {
        let cluster_ip_masquerade = if config.masquerade_all || config.cluster_cidrs.is_empty() {
            Masquerade::Always
        } else {
            Masquerade::FromOutsideCluster
        };
        Self {
            node_name: node.name.clone(),
            node_port_addresses: node_port_addresses(node, config),
            cluster_ip_masquerade,
        }
    }
}

fn node_port_addresses(node: &NodeInfo, config: &ModelConfig) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = match &config.node_port_addresses {
        None => node
            .addresses
            .iter()
            .filter(|a| a.kind == NodeAddressKind::InternalIp)
            .map(|a| a.address)
            .collect(),
        Some(cidrs) => {
            let loopback_asked = cidrs
                .iter()
                .any(|cidr| cidr.prefix_len() >= 8 && cidr.network().is_loopback());
            let loopback = loopback_asked.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            node.addresses
                .iter()
                .map(|a| a.address)
                .chain(loopback)
                .filter(|address| cidrs.iter().any(|cidr| cidr.contains(address)))
                .collect()
        }
    };
    addresses.sort();
    addresses.dedup();
    addresses
}
