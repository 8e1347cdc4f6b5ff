//! Where the Autoscaler's numbers come from: pod usage from the resource metrics API, and
//! per-Service new-connection rates scraped from every ferry-proxy.

pub mod connection_rates;
pub mod pod_metrics;
pub mod prometheus_text;
pub mod proxy_scraper;

pub use connection_rates::RateSnapshot;
pub use prometheus_text::ServiceKey;
pub use proxy_scraper::{ProxyEndpoints, ScrapeSettings};
