//! Reconciles one LoadBalancerPool: writes how many of its addresses are allocated and
//! available, and whether it is valid.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use super::Context;
use crate::api::{LoadBalancerPool, LoadBalancerPoolStatus};
use crate::controllers::Error;
use crate::lbpool::PoolReport;

const CONTROLLER: &str = "lbpool";
const VALID: &str = "Valid";
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(10);

pub async fn reconcile(pool: Arc<LoadBalancerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let span = info_span!("reconcile", controller = CONTROLLER, pool = pool.name_any());
    reconcile_pool(&pool, &ctx).instrument(span).await
}

pub fn error_policy(pool: Arc<LoadBalancerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(pool = pool.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(RETRY)
}

async fn reconcile_pool(pool: &LoadBalancerPool, ctx: &Context) -> Result<Action, Error> {
    ctx.inventory.synced().await;
    let snapshot = ctx.inventory.snapshot();
    let Some(report) = snapshot.assignments.pools.get(&pool.name_any()) else {
        // Deleted since the reconcile was queued.
        return Ok(Action::await_change());
    };
    let status = status(pool, report, Timestamp::now());
    if pool.status.as_ref() == Some(&status) {
        return Ok(Action::await_change());
    }
    Api::<LoadBalancerPool>::all(ctx.client.clone())
        .patch_status(
            &pool.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    info!(
        allocated = status.allocated,
        available = status.available,
        valid = report.problem.is_none(),
        "status written"
    );
    Ok(Action::await_change())
}

/// The pool's status for `report`; the `Valid` condition keeps its transition time while its
/// status stays the same.
fn status(pool: &LoadBalancerPool, report: &PoolReport, now: Timestamp) -> LoadBalancerPoolStatus {
    let generation = pool.metadata.generation;
    let (state, reason, message) = match &report.problem {
        None => ("True", VALID, "no other pool overlaps it".to_owned()),
        Some(problem) => ("False", problem.reason(), problem.to_string()),
    };
    let previous = pool
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == VALID);
    let last_transition_time = previous
        .filter(|c| c.status == state)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    LoadBalancerPoolStatus {
        observed_generation: generation,
        allocated: saturate(report.allocated),
        available: saturate(report.available()),
        conditions: vec![Condition {
            type_: VALID.into(),
            status: state.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: generation,
        }],
    }
}

/// Counts of enormous IPv6 pools do not fit the status's integers.
fn saturate(count: u128) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LoadBalancerPoolSpec;
    use crate::lbpool::{AddressRange, PoolProblem};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid instant")
    }

    fn pool() -> LoadBalancerPool {
        let mut pool = LoadBalancerPool::new(
            "edge",
            LoadBalancerPoolSpec {
                addresses: vec!["192.0.2.0/28".into()],
                avoid_buggy_ips: false,
                auto_assign: true,
                default: false,
                service_selector: None,
                namespace_selector: None,
            },
        );
        pool.metadata.generation = Some(3);
        pool
    }

    #[test]
    fn an_overlapping_pool_is_not_valid_and_says_why() {
        let range = |text| AddressRange::parse(text).expect("a range");
        let report = PoolReport {
            capacity: 16,
            allocated: 0,
            problem: Some(PoolProblem::Overlap {
                other: "core".into(),
                mine: range("192.0.2.0/28"),
                theirs: range("192.0.2.8/29"),
            }),
        };
        let status = status(&pool(), &report, at(10));
        let valid = &status.conditions[0];
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", "Overlap")
        );
        assert!(
            valid.message.contains("of the older pool core"),
            "{}",
            valid.message
        );
        assert_eq!(valid.observed_generation, Some(3));
    }

    #[test]
    fn counts_saturate_and_the_transition_time_holds_while_nothing_changes() {
        let report = PoolReport {
            capacity: 1 << 96,
            allocated: 2,
            problem: None,
        };
        let mut pool = pool();
        let first = status(&pool, &report, at(10));
        assert_eq!((first.allocated, first.available), (2, i64::MAX));
        pool.status = Some(first.clone());
        let again = status(&pool, &report, at(99));
        assert_eq!(again, first, "an unchanged status is not rewritten");
    }
}
