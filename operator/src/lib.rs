//! Ferry operator library.

pub mod api;
pub mod app;
pub mod autoscaler;
pub mod config;
pub mod controllers;
pub mod http;
pub mod lbpool;
pub mod leader;
pub mod metrics;
pub mod metrics_source;
pub mod plugin;
