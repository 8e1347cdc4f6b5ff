//! Command-line flags. Every setting flag is optional so that a flag given overrides the file
//! and a flag left out does not.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use super::{Announcement, Mode};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Ferry's per-node service proxy: programs IPVS or nftables from the cluster's Services and
/// EndpointSlices.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferry-proxy", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML configuration file (camelCase fields; flags override it).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,

    /// Dataplane.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// Read Services, EndpointSlices and the Node from this YAML or JSON `List` instead of
    /// the API server; re-read on SIGHUP and when the file changes.
    #[arg(long)]
    pub from_file: Option<PathBuf>,

    /// Sync once, then exit (for tests).
    #[arg(long)]
    pub once: bool,

    /// This node's name (default: the config file's hostnameOverride, then $NODE_NAME,
    /// then the host name).
    #[arg(long)]
    pub hostname_override: Option<String>,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of /metrics (default 0.0.0.0:10249).
    #[arg(long)]
    pub metrics_bind_address: Option<String>,

    /// Address of /healthz and /livez (default 0.0.0.0:10256).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,

    /// Partial syncs are coalesced to at most one per period (default 1s).
    #[arg(long)]
    pub min_sync_period: Option<String>,

    /// Period of the full sync that repairs drift (default 30s).
    #[arg(long)]
    pub sync_period: Option<String>,

    /// Pod CIDRs, comma-separated: ClusterIP traffic from outside them is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,

    /// CIDRs selecting the node addresses that serve NodePorts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub node_port_addresses: Option<Vec<String>>,

    /// Default IPVS scheduler (rr, wrr, lc, wlc, sh, mh, sed, nq).
    #[arg(long)]
    pub ipvs_scheduler: Option<String>,

    /// How LoadBalancer IPs are announced: `l2` answers ARP/NDP for them from one node each
    /// (default none).
    #[arg(long, value_enum)]
    pub announce: Option<Announcement>,

    /// The interface that answers ARP/NDP in l2 mode (default: the one holding the node's
    /// InternalIP).
    #[arg(long)]
    pub announce_interface: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run,
    /// Remove everything Ferry installs in either mode (its IPVS virtual servers, the
    /// ferry-ipvs0 link, table inet ferry) and nothing else.
    Cleanup,
}
