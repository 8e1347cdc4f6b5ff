//! How the Autoscaler controller runs, with command-line flags for main to flatten in.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use kube::runtime::events::Reporter;

use crate::autoscaler::ReadinessDelays;
use crate::metrics_source::{ProxyEndpoints, ScrapeSettings};

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Autoscalers reconciled at once.
    pub concurrency: u16,
    /// Who publishes the Events.
    pub reporter: Reporter,
    /// How the ferry-proxies' connection counters are scraped.
    pub scrape: ScrapeSettings,
    /// HPA's readiness delays for CPU samples.
    pub delays: ReadinessDelays,
}

/// How to find the ferry-proxies' metrics endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyDiscovery {
    /// Pods matching --autoscaler-proxy-selector in --autoscaler-proxy-namespace.
    Pods,
    /// Every node's InternalIP.
    Nodes,
}

/// Command-line flags of the Autoscaler controller (`#[command(flatten)]` them).
#[derive(Clone, Debug, clap::Args)]
pub struct AutoscalerArgs {
    /// How to find the ferry-proxies whose connection counters are scraped.
    #[arg(
        long = "autoscaler-proxy-discovery",
        env = "FERRY_AUTOSCALER_PROXY_DISCOVERY",
        value_enum,
        default_value = "pods"
    )]
    pub proxy_discovery: ProxyDiscovery,
    /// Namespace of the ferry-proxy pods (with --autoscaler-proxy-discovery=pods).
    #[arg(
        long = "autoscaler-proxy-namespace",
        env = "POD_NAMESPACE",
        default_value = "ferry-system"
    )]
    pub proxy_namespace: String,
    /// Label selector of the ferry-proxy pods (with --autoscaler-proxy-discovery=pods).
    #[arg(
        long = "autoscaler-proxy-selector",
        default_value = "app.kubernetes.io/name=ferry-proxy"
    )]
    pub proxy_selector: String,
    /// Port of the ferry-proxies' metrics endpoint.
    #[arg(long = "autoscaler-proxy-metrics-port", default_value_t = 10249)]
    pub proxy_metrics_port: u16,
    /// Milliseconds between scrapes of the ferry-proxies.
    #[arg(long = "autoscaler-scrape-interval-ms", default_value_t = 2000)]
    pub scrape_interval_ms: u64,
    /// Seconds after a pod starts during which its CPU counts only when sampled while ready.
    #[arg(
        long = "autoscaler-cpu-initialization-period-seconds",
        default_value_t = 300
    )]
    pub cpu_initialization_period_seconds: u32,
    /// Seconds after a pod starts within which a readiness change means it was never ready.
    #[arg(
        long = "autoscaler-initial-readiness-delay-seconds",
        default_value_t = 30
    )]
    pub initial_readiness_delay_seconds: u32,
    /// Autoscalers reconciled at once.
    #[arg(long = "autoscaler-concurrency", default_value_t = 4)]
    pub concurrency: u16,
}

/// A flag with an unusable value, named as on the command line.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {problem}")]
pub struct SettingsError {
    pub flag: &'static str,
    pub problem: &'static str,
}

impl AutoscalerArgs {
    /// Validated settings; `reporter` names who publishes the Events.
    pub fn into_settings(self, reporter: Reporter) -> Result<Settings, SettingsError> {
        let invalid = |flag, problem| Err(SettingsError { flag, problem });
        if self.proxy_metrics_port == 0 {
            return invalid("autoscaler-proxy-metrics-port", "must not be 0");
        }
        if !(100..=60_000).contains(&self.scrape_interval_ms) {
            return invalid(
                "autoscaler-scrape-interval-ms",
                "must be between 100 and 60000",
            );
        }
        if self.proxy_discovery == ProxyDiscovery::Pods
            && (self.proxy_namespace.is_empty() || self.proxy_selector.is_empty())
        {
            return invalid(
                "autoscaler-proxy-selector",
                "pod discovery needs a namespace and a selector",
            );
        }
        if self.concurrency == 0 {
            return invalid("autoscaler-concurrency", "must be at least 1");
        }
        let interval = Duration::from_millis(self.scrape_interval_ms);
        let endpoints = match self.proxy_discovery {
            ProxyDiscovery::Pods => ProxyEndpoints::Pods {
                namespace: self.proxy_namespace,
                selector: self.proxy_selector,
            },
            ProxyDiscovery::Nodes => ProxyEndpoints::Nodes,
        };
        Ok(Settings {
            concurrency: self.concurrency,
            reporter,
            // A proxy that takes most of an interval to answer is too slow to count on.
            scrape: ScrapeSettings {
                endpoints,
                port: self.proxy_metrics_port,
                interval,
                timeout: interval * 3 / 4,
            },
            delays: ReadinessDelays {
                cpu_initialization_period: SignedDuration::from_secs(
                    self.cpu_initialization_period_seconds.into(),
                ),
                initial_readiness_delay: SignedDuration::from_secs(
                    self.initial_readiness_delay_seconds.into(),
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        autoscaler: AutoscalerArgs,
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "ferry-autoscaler".to_owned(),
            instance: None,
        }
    }

    #[test]
    fn defaults_scrape_proxy_pods_every_two_seconds() {
        let settings = Cli::parse_from(["ferry-operator"])
            .autoscaler
            .into_settings(reporter())
            .expect("valid");
        assert_eq!(settings.scrape.interval, Duration::from_secs(2));
        assert_eq!(settings.scrape.port, 10249);
        assert!(
            matches!(settings.scrape.endpoints, ProxyEndpoints::Pods { ref selector, .. } if selector == "app.kubernetes.io/name=ferry-proxy")
        );
        assert_eq!(settings.delays, ReadinessDelays::default());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let args =
            Cli::parse_from(["ferry-operator", "--autoscaler-scrape-interval-ms", "5"]).autoscaler;
        let error = args.into_settings(reporter()).expect_err("too fast");
        assert_eq!(
            error.to_string(),
            "--autoscaler-scrape-interval-ms: must be between 100 and 60000"
        );
        let nodes =
            Cli::parse_from(["ferry-operator", "--autoscaler-proxy-discovery", "nodes"]).autoscaler;
        assert_eq!(
            nodes
                .into_settings(reporter())
                .expect("valid")
                .scrape
                .endpoints,
            ProxyEndpoints::Nodes
        );
    }
}
