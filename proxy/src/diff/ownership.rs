//! Which IPVS virtual servers are Ferry's to delete.
//!
//! IPVS has no owner field, and other software (a second proxy, keepalived, a person with
//! ipvsadm) may have virtual servers on the same node. Ferry deletes only those it can prove
//! are its own: on an address of its dummy interface (bound, or wanted there: a Service owns
//! that address now), or on a NodePort address with a port in the cluster's NodePort range.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::model::types::VirtualServerKey;

/// The API server's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;
/// How long a removed TCP/SCTP real server may keep its connections.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub node_port_range: RangeInclusive<u16>,
    /// Addresses NodePorts were or are served on. Give every local address the node has
    /// (plus 127.0.0.1 when configured), not only today's NodePort addresses, so NodePorts on
    /// an address that stopped serving them are still cleaned up.
    pub node_port_addresses: BTreeSet<IpAddr>,
}

impl Default for Ownership {
    fn default() -> Self {
        Self {
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            node_port_addresses: BTreeSet::new(),
        }
    }
}

impl Ownership {
    /// Whether Ferry created the virtual server `key`, given whether its address is on Ferry's
    /// dummy interface (bound, or about to be).
    pub fn owns(&self, key: &VirtualServerKey, on_dummy_interface: bool) -> bool {
        on_dummy_interface
            || (self.node_port_addresses.contains(&key.address)
                && self.node_port_range.contains(&key.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffConfig {
    pub grace_period: Duration,
    pub ownership: Ownership,
}

impl Default for DiffConfig {
    fn default() -> Self {
        Self {
            grace_period: DEFAULT_GRACE_PERIOD,
            ownership: Ownership::default(),
        }
    }
}
