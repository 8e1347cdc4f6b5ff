//! The configuration file, as written (`--config /etc/ferry/proxy.yaml`). The Helm chart's
//! README documents these fields: they are the contract with the chart.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Announcement, Mode};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    pub mode: Option<Mode>,
    pub ipvs: Option<IpvsFile>,
    pub min_sync_period: Option<String>,
    pub sync_period: Option<String>,
    /// Empty means the node's InternalIPs, like absent.
    pub node_port_addresses: Option<Vec<String>>,
    /// Comma-separated for dual stack; empty masquerades every service connection.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub masquerade_all: Option<bool>,
    pub metrics_bind_address: Option<String>,
    pub healthz_bind_address: Option<String>,
    pub hostname_override: Option<String>,
    pub load_balancer_announcement: Option<Announcement>,
    pub l2: Option<L2File>,
    /// Directory standing for the node's /proc/sys, for the `net.*` keys.
    pub sysctl_root: Option<PathBuf>,
    pub cleanup_on_exit: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpvsFile {
    pub scheduler: Option<String>,
    pub graceful_termination_seconds: Option<u64>,
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
}

/// Settings of `loadBalancerAnnouncement: l2`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2File {
    /// Empty means the interface holding the node's InternalIP.
    pub interface: Option<String>,
    /// How long a proxy's heartbeat Lease lasts without renewal: a crashed node's addresses
    /// move after this long.
    pub lease_duration: Option<String>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        // An empty file (or one with only comments) is an empty configuration.
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }
}
