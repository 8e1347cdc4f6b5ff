//! The operator's configuration: one typed struct from flags and environment, checked at
//! start so a bad value is named before anything runs.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::controllers::autoscaler::AutoscalerArgs;
use crate::leader::LeaseSettings;

/// The controllers this operator can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ControllerName {
    App,
    Autoscaler,
    /// LoadBalancer addresses from LoadBalancerPools.
    Lbpool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Ferry's operator: reconciles Apps (and the other Ferry resources) while it holds the
/// leader lease.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferry-operator", version)]
pub struct Config {
    /// Address for /healthz, /readyz and /metrics.
    #[arg(
        long,
        aliases = ["http-addr", "http-bind-address"],
        env = "FERRY_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: SocketAddr,

    /// Elect a leader among the replicas through a Lease; `false` runs the controllers at once
    /// (one replica only).
    #[arg(long, env = "FERRY_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease (usually the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "ferry-system")]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, env = "FERRY_LEASE_NAME", default_value = "ferry-operator")]
    pub lease_name: String,

    /// This replica's identity in the Lease and in Events; defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Seconds a Lease lasts without renewal before a standby replica takes over.
    #[arg(long, env = "FERRY_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds the leader keeps trying to renew before it stops leading.
    #[arg(long, env = "FERRY_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub renew_deadline_seconds: u64,

    /// Seconds between attempts to acquire or renew the Lease.
    #[arg(long, env = "FERRY_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    pub retry_period_seconds: u64,

    /// The controllers to run, comma-separated.
    #[arg(long, env = "FERRY_CONTROLLERS", value_enum, value_delimiter = ',', default_values_t = [ControllerName::App, ControllerName::Autoscaler, ControllerName::Lbpool])]
    pub controllers: Vec<ControllerName>,

    /// Manage Apps in this namespace only (default: all namespaces).
    #[arg(long, env = "FERRY_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Apps reconciled at the same time.
    #[arg(long, env = "FERRY_APP_CONCURRENCY", default_value_t = 16)]
    pub app_concurrency: u16,

    /// Log line format.
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub autoscaler: AutoscalerArgs,
}

impl Config {
    /// Checks the values clap cannot; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.controllers.is_empty() {
            return Err("--controllers names no controller".into());
        }
        if self.app_concurrency == 0 {
            return Err("--app-concurrency must be at least 1".into());
        }
        if self.retry_period_seconds == 0 {
            return Err("--retry-period-seconds must be at least 1".into());
        }
        if self.renew_deadline_seconds <= self.retry_period_seconds {
            return Err(format!(
                "--renew-deadline-seconds ({}) must exceed --retry-period-seconds ({})",
                self.renew_deadline_seconds, self.retry_period_seconds
            ));
        }
        if self.lease_duration_seconds <= self.renew_deadline_seconds {
            return Err(format!(
                "--lease-duration-seconds ({}) must exceed --renew-deadline-seconds ({}): a leader that cannot renew must stop before another replica may take over",
                self.lease_duration_seconds, self.renew_deadline_seconds
            ));
        }
        for (flag, value) in [
            ("--lease-namespace", &self.lease_namespace),
            ("--lease-name", &self.lease_name),
        ] {
            if value.is_empty() {
                return Err(format!("{flag} must not be empty"));
            }
        }
        Ok(())
    }

    /// This replica's identity: the configured one, else host name and process id (two
    /// processes on one host must not share a lease identity).
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ferry-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn runs(&self, controller: ControllerName) -> bool {
        self.controllers.contains(&controller)
    }

    pub fn lease(&self) -> LeaseSettings {
        LeaseSettings {
            namespace: self.lease_namespace.clone(),
            name: self.lease_name.clone(),
            identity: self.identity(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.renew_deadline_seconds),
            retry_period: Duration::from_secs(self.retry_period_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("ferry-operator").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.lease().lease_duration, Duration::from_secs(15));
        assert!(config.runs(ControllerName::App) && config.runs(ControllerName::Autoscaler));
        assert!(!parse(&["--controllers", "app"]).runs(ControllerName::Autoscaler));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases = [
            (vec!["--app-concurrency", "0"], "--app-concurrency"),
            (
                vec!["--lease-duration-seconds", "10"],
                "--lease-duration-seconds (10)",
            ),
            (
                vec!["--renew-deadline-seconds", "2"],
                "--renew-deadline-seconds (2)",
            ),
            (vec!["--lease-name", ""], "--lease-name"),
        ];
        for (args, flag) in cases {
            let error = parse(&args).validate().expect_err("invalid");
            assert!(error.starts_with(flag), "{args:?}: {error}");
        }
    }
}
