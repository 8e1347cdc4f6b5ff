//! The proxy's configuration: one typed struct from flags and an optional YAML file (flags
//! win), validated at start with an error that names the bad field.

mod cli;
mod duration;
mod file;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use ipnet::IpNet;
use serde::Deserialize;

pub use cli::{Cli, Command, LogFormat};
pub use file::{FileConfig, IpvsFile, L2File};

use crate::model::ModelConfig;
use crate::model::types::Scheduler;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ipvs,
    Nftables,
}

/// How LoadBalancer IPs are announced on the node's links (LoadBalancerPool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Announcement {
    #[default]
    None,
    /// One node answers ARP/NDP for each LoadBalancer IP.
    L2,
}

/// Where the cluster's objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    ApiServer,
    /// A `List` of Services, EndpointSlices and optionally the Node.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsConfig {
    /// For Services without the `ferry.dev/ipvs-scheduler` annotation.
    pub scheduler: Scheduler,
    /// How long a removed TCP/SCTP real server keeps draining at weight 0.
    pub graceful_termination: Duration,
    /// Answer ARP only for addresses of the receiving link, so the addresses on ferry-ipvs0
    /// (LoadBalancer IPs among them) are not claimed on every segment.
    pub strict_arp: bool,
}

/// Settings of the l2 announcement (see [`crate::announce`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Config {
    /// `None`: the interface holding the node's InternalIP.
    pub interface: Option<String>,
    pub lease_duration: Duration,
    /// Where the heartbeat Leases live: `$POD_NAMESPACE`, else `kube-system`, which exists
    /// in every cluster (a proxy run outside a pod still works).
    pub namespace: String,
}

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub command: Command,
    pub mode: Mode,
    pub source: Source,
    pub once: bool,
    pub node_name: String,
    pub log_format: LogFormat,
    pub metrics_bind_address: SocketAddr,
    pub healthz_bind_address: SocketAddr,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    pub ipvs: IpvsConfig,
    pub model: ModelConfig,
    pub load_balancer_announcement: Announcement,
    pub l2: L2Config,
    pub sysctl_root: PathBuf,
    pub cleanup_on_exit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// What the environment contributes: the node name the pod spec passes in, and the host name.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub node_name: Option<String>,
    pub host_name: Option<String>,
    pub pod_namespace: Option<String>,
}

impl Environment {
    pub fn read() -> Self {
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        Self {
            node_name: std::env::var("NODE_NAME").ok(),
            host_name: host_name.map(|name| name.trim().to_owned()),
            pod_namespace: std::env::var("POD_NAMESPACE").ok(),
        }
    }
}

impl Config {
    /// Parses the command line, reads the file it names, and validates the result.
    pub fn load() -> Result<Self, ConfigError> {
        let cli = <Cli as clap::Parser>::parse();
        let file = match &cli.config {
            None => FileConfig::default(),
            Some(path) => read_file(path)?,
        };
        Self::resolve(cli, file, Environment::read())
    }

    /// Merges flags over the file over the defaults, and validates.
    pub fn resolve(cli: Cli, file: FileConfig, env: Environment) -> Result<Self, ConfigError> {
        let ipvs_file = file.ipvs.clone().unwrap_or_default();
        let min_sync_period = duration(
            "minSyncPeriod",
            cli.min_sync_period.or(file.min_sync_period),
            "1s",
        )?;
        let sync_period = duration("syncPeriod", cli.sync_period.or(file.sync_period), "30s")?;
        if sync_period.is_zero() {
            return Err(invalid("syncPeriod", "must be longer than 0"));
        }
        if min_sync_period > sync_period {
            return Err(invalid(
                "minSyncPeriod",
                format!("{min_sync_period:?} is longer than syncPeriod ({sync_period:?})"),
            ));
        }
        let announcement = cli
            .announce
            .or(file.load_balancer_announcement)
            .unwrap_or_default();
        let l2_file = file.l2.clone().unwrap_or_default();
        let lease_duration = duration("l2.leaseDuration", l2_file.lease_duration, "6s")?;
        if lease_duration < Duration::from_secs(3) {
            return Err(invalid(
                "l2.leaseDuration",
                format!(
                    "{lease_duration:?} is shorter than 3s (Leases count whole seconds, renewed every third)"
                ),
            ));
        }
        let l2 = L2Config {
            interface: cli
                .announce_interface
                .or(l2_file.interface)
                .filter(|name| !name.trim().is_empty()),
            lease_duration,
            namespace: env
                .pod_namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| "kube-system".to_owned()),
        };
        let node_name = [
            cli.hostname_override,
            file.hostname_override,
            env.node_name,
            env.host_name,
        ]
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .ok_or_else(|| invalid("hostnameOverride", "no node name: set it or NODE_NAME"))?;
        Ok(Self {
            command: cli.command.unwrap_or(Command::Run),
            mode: cli.mode.or(file.mode).unwrap_or(Mode::Ipvs),
            source: cli.from_file.map_or(Source::ApiServer, Source::File),
            once: cli.once,
            node_name,
            log_format: cli.log_format,
            metrics_bind_address: address(
                "metricsBindAddress",
                cli.metrics_bind_address.or(file.metrics_bind_address),
                "0.0.0.0:10249",
            )?,
            healthz_bind_address: address(
                "healthzBindAddress",
                cli.healthz_bind_address.or(file.healthz_bind_address),
                "0.0.0.0:10256",
            )?,
            min_sync_period,
            sync_period,
            ipvs: IpvsConfig {
                scheduler: scheduler(cli.ipvs_scheduler.or(ipvs_file.scheduler))?,
                graceful_termination: Duration::from_secs(
                    ipvs_file.graceful_termination_seconds.unwrap_or(30),
                ),
                strict_arp: ipvs_file.strict_arp.unwrap_or(false)
                    || announcement == Announcement::L2,
            },
            model: ModelConfig {
                node_port_addresses: node_port_addresses(
                    cli.node_port_addresses.or(file.node_port_addresses),
                )?,
                cluster_cidrs: cluster_cidrs(cli.cluster_cidr.or(file.cluster_cidr))?,
                masquerade_all: file.masquerade_all.unwrap_or(false),
            },
            load_balancer_announcement: announcement,
            l2,
            sysctl_root: file
                .sysctl_root
                .unwrap_or_else(|| PathBuf::from("/proc/sys")),
            cleanup_on_exit: file.cleanup_on_exit.unwrap_or(false),
        })
    }
}

impl Config {
    /// Whether 127.0.0.1 serves NodePorts, which needs `route_localnet` (see [`ModelConfig`]).
    pub fn loopback_node_ports(&self) -> bool {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let cidrs = self.model.node_port_addresses.iter().flatten();
        cidrs
            .into_iter()
            .any(|cidr| cidr.prefix_len() >= 8 && cidr.contains(&localhost))
    }
}

fn read_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    FileConfig::parse(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source,
    })
}

fn duration(
    field: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    duration::parse(&text).ok_or_else(|| {
        invalid(
            field,
            format!("{text:?} is not a duration such as \"500ms\", \"1s\" or \"1m30s\""),
        )
    })
}

fn address(
    field: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    SocketAddr::from_str(text.trim())
        .map_err(|_| invalid(field, format!("{text:?} is not an address:port")))
}

fn scheduler(value: Option<String>) -> Result<Scheduler, ConfigError> {
    let Some(name) = value else {
        return Ok(Scheduler::default());
    };
    Scheduler::from_kernel_name(name.trim()).ok_or_else(|| {
        invalid(
            "ipvs.scheduler",
            format!("unknown scheduler {name:?} (rr, wrr, lc, wlc, sh, mh, sed, nq)"),
        )
    })
}

fn cidr(field: &'static str, text: &str) -> Result<IpNet, ConfigError> {
    IpNet::from_str(text.trim())
        .map(|net| net.trunc())
        .map_err(|_| invalid(field, format!("{text:?} is not a CIDR")))
}

fn node_port_addresses(value: Option<Vec<String>>) -> Result<Option<Vec<IpNet>>, ConfigError> {
    let cidrs = value.unwrap_or_default();
    if cidrs.is_empty() {
        return Ok(None);
    }
    let parsed = cidrs.iter().map(|text| cidr("nodePortAddresses", text));
    parsed.collect::<Result<_, _>>().map(Some)
}

fn cluster_cidrs(value: Option<String>) -> Result<Vec<IpNet>, ConfigError> {
    let text = value.unwrap_or_default();
    let cidrs: Vec<IpNet> = text
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| cidr("clusterCIDR", part))
        .collect::<Result<_, _>>()?;
    if cidrs.len() > 2 {
        return Err(invalid(
            "clusterCIDR",
            "at most one CIDR per IP family (two for dual stack)",
        ));
    }
    Ok(cidrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ferry-proxy").chain(args.iter().copied())).unwrap()
    }

    fn env() -> Environment {
        Environment {
            node_name: Some("node-a".into()),
            host_name: Some("host".into()),
            pod_namespace: None,
        }
    }

    fn resolve(args: &[&str], yaml: &str) -> Result<Config, ConfigError> {
        Config::resolve(cli(args), FileConfig::parse(yaml).unwrap(), env())
    }

    #[track_caller]
    fn rejected_field(args: &[&str], yaml: &str) -> &'static str {
        match resolve(args, yaml) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// The file the Helm chart renders with its default values.
    const CHART_DEFAULTS: &str = r#"
# ferry-proxy configuration, generated by the Ferry Helm chart.
mode: ipvs
ipvs:
  scheduler: rr
  gracefulTerminationSeconds: 30
minSyncPeriod: "1s"
syncPeriod: "30s"
nodePortAddresses: []
clusterCIDR: ""
metricsBindAddress: "0.0.0.0:10249"
healthzBindAddress: "0.0.0.0:10256"
loadBalancerAnnouncement: none
l2:
  interface: ""
  leaseDuration: "6s"
sysctlRoot: /host/proc/sys
cleanupOnExit: false
"#;

    #[test]
    fn the_charts_file_is_accepted_with_kube_proxy_like_defaults() {
        let config = resolve(&[], CHART_DEFAULTS).unwrap();
        assert_eq!(config.mode, Mode::Ipvs);
        assert_eq!(config.command, Command::Run);
        assert_eq!(config.node_name, "node-a");
        assert_eq!(config.min_sync_period, Duration::from_secs(1));
        assert_eq!(config.sync_period, Duration::from_secs(30));
        assert_eq!(config.metrics_bind_address.port(), 10249);
        assert_eq!(config.healthz_bind_address.port(), 10256);
        assert_eq!(config.model, ModelConfig::default());
        assert_eq!(config.sysctl_root, PathBuf::from("/host/proc/sys"));
        assert!(!config.ipvs.strict_arp);
        let empty = resolve(&[], "").unwrap();
        let chart_root = config.sysctl_root.clone();
        assert_eq!(
            Config {
                sysctl_root: chart_root,
                ..empty
            },
            config,
            "the chart's values are the defaults"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let config = resolve(
            &[
                "--mode=nftables",
                "--min-sync-period=200ms",
                "--cluster-cidr=10.244.0.0/16,fd00:244::/56",
                "--hostname-override=vm",
                "--from-file=/etc/ferry/snapshot.yaml",
                "--node-port-addresses=192.168.10.0/24",
                "cleanup",
            ],
            "mode: ipvs\nminSyncPeriod: 5s\nclusterCIDR: 10.1.0.0/16\nhostnameOverride: other\n",
        )
        .unwrap();
        assert_eq!(config.mode, Mode::Nftables);
        assert_eq!(config.command, Command::Cleanup);
        assert_eq!(config.min_sync_period, Duration::from_millis(200));
        assert_eq!(config.node_name, "vm");
        assert_eq!(config.model.cluster_cidrs.len(), 2);
        assert_eq!(
            config.source,
            Source::File("/etc/ferry/snapshot.yaml".into())
        );
        assert_eq!(
            config.model.node_port_addresses,
            Some(vec!["192.168.10.0/24".parse().unwrap()])
        );
    }

    #[test]
    fn the_node_name_falls_back_from_the_file_to_the_environment() {
        let from_file = resolve(&[], "hostnameOverride: from-file").unwrap();
        assert_eq!(from_file.node_name, "from-file");
        let no_env = Config::resolve(cli(&[]), FileConfig::default(), Environment::default());
        assert!(matches!(
            no_env,
            Err(ConfigError::Invalid {
                field: "hostnameOverride",
                ..
            })
        ));
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(rejected_field(&[], "minSyncPeriod: soon"), "minSyncPeriod");
        assert_eq!(rejected_field(&[], "syncPeriod: 0s"), "syncPeriod");
        assert_eq!(
            rejected_field(&[], "minSyncPeriod: 1m\nsyncPeriod: 30s"),
            "minSyncPeriod"
        );
        assert_eq!(
            rejected_field(&[], "metricsBindAddress: localhost"),
            "metricsBindAddress"
        );
        assert_eq!(
            rejected_field(&[], "ipvs: {scheduler: fifo}"),
            "ipvs.scheduler"
        );
        assert_eq!(
            rejected_field(&[], "clusterCIDR: 10.244.0.0"),
            "clusterCIDR"
        );
        assert_eq!(
            rejected_field(&[], "nodePortAddresses: [192.168.0.0/33]"),
            "nodePortAddresses"
        );
    }

    #[test]
    fn unknown_and_mistyped_file_fields_are_named() {
        let typo = FileConfig::parse("minSyncPerod: 1s")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("minSyncPerod"), "{typo}");
        let mode = FileConfig::parse("mode: userspace")
            .unwrap_err()
            .to_string();
        assert!(mode.contains("userspace"), "{mode}");
    }

    #[test]
    fn only_a_loopback_cidr_serves_node_ports_on_localhost() {
        let serves = |cidrs: &str| {
            resolve(&[&format!("--node-port-addresses={cidrs}")], "")
                .unwrap()
                .loopback_node_ports()
        };
        assert!(serves("127.0.0.1/32"));
        assert!(serves("192.168.0.0/16,127.0.0.0/8"));
        assert!(!serves("0.0.0.0/0"), "a wide CIDR does not open localhost");
        assert!(!resolve(&[], "").unwrap().loopback_node_ports());
    }

    #[test]
    fn l2_announcement_needs_strict_arp() {
        let config = resolve(&[], "loadBalancerAnnouncement: l2").unwrap();
        assert!(config.ipvs.strict_arp);
    }

    #[test]
    fn l2_settings_come_from_flags_the_file_and_the_environment() {
        let defaults = resolve(&[], "").unwrap();
        assert_eq!(defaults.load_balancer_announcement, Announcement::None);
        assert_eq!(
            defaults.l2,
            L2Config {
                interface: None,
                lease_duration: Duration::from_secs(6),
                namespace: "kube-system".into(),
            }
        );
        let file = "loadBalancerAnnouncement: none\nl2: {interface: eth1, leaseDuration: 15s}";
        let config = resolve(&["--announce=l2", "--announce-interface=eth0"], file).unwrap();
        assert_eq!(config.load_balancer_announcement, Announcement::L2);
        assert_eq!(config.l2.interface.as_deref(), Some("eth0"));
        assert_eq!(config.l2.lease_duration, Duration::from_secs(15));
        let in_pod = Environment {
            pod_namespace: Some("ferry".into()),
            ..env()
        };
        let config = Config::resolve(cli(&[]), FileConfig::default(), in_pod).unwrap();
        assert_eq!(config.l2.namespace, "ferry");
        assert_eq!(
            rejected_field(&[], "l2: {leaseDuration: 1s}"),
            "l2.leaseDuration"
        );
        assert_eq!(
            rejected_field(&[], "l2: {leaseDuration: soon}"),
            "l2.leaseDuration"
        );
    }
}
