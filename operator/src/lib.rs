//! Ferry operator library.

pub mod api;
pub mod app;
pub mod autoscaler;
pub mod controllers;
pub mod leader;
pub mod metrics;
