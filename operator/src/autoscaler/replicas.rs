//! Per-metric replica proposals: HPA's replica calculator for resource metrics (tolerance,
//! missing samples, pods not yet ready) and the per-replica rule for the connection rate.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::conditions::Reason;
use super::pods::{self, PodGroups, PodSample, ReadinessDelays};
use super::quantity::{from_milli, milli_value};
use super::{Missing, Observed};
use crate::api::{
    ConnectionsMetric, MetricSpec, MetricStatus, MetricType, ResourceMetric, ResourceName,
    ResourceTarget, ResourceTargetType,
};

/// What the calculation needs besides the metric itself.
pub(super) struct Context<'a> {
    /// The target's desired replicas (its scale's spec.replicas).
    pub current: i32,
    pub tolerance: f64,
    pub now: Timestamp,
    pub delays: &'a ReadinessDelays,
    pub observed: &'a Observed,
}

/// A metric's replica count, with what it observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    pub status: MetricStatus,
    /// Names the metric, as HPA names it in rescale reasons.
    pub name: String,
    /// The observed value against its target, for events.
    pub observation: String,
}

/// Why a metric gave no replica count.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(Reason::InvalidMetricSourceType, message)
    }
}

/// The replica count one metric asks for.
pub(super) fn propose(spec: &MetricSpec, ctx: &Context<'_>) -> Result<Proposal, Failure> {
    match (spec.type_, &spec.resource, &spec.connections) {
        (MetricType::Resource, Some(resource), None) => propose_resource(resource, ctx),
        (MetricType::Connections, None, Some(connections)) => propose_connections(connections, ctx),
        (type_, _, _) => Err(Failure::invalid(format!(
            "a {type_:?} metric must set exactly its own member ({})",
            match type_ {
                MetricType::Resource => "resource",
                MetricType::Connections => "connections",
            }
        ))),
    }
}

/// A resource target as a number the calculation can divide by.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Thousandths of the resource per pod.
    AverageMilli(i64),
}

impl Target {
    fn from_spec(target: &ResourceTarget) -> Result<Self, Failure> {
        match target.type_ {
            ResourceTargetType::Utilization => match target.average_utilization {
                Some(percent) if percent > 0 => Ok(Self::Utilization(percent)),
                _ => Err(Failure::invalid(
                    "target.averageUtilization must be a percentage greater than zero",
                )),
            },
            ResourceTargetType::AverageValue => {
                let value = target.average_value.as_ref().ok_or_else(|| {
                    Failure::invalid("target.averageValue is required for type AverageValue")
                })?;
                match milli_value(value) {
                    Ok(milli) if milli > 0 => Ok(Self::AverageMilli(milli)),
                    Ok(_) => Err(Failure::invalid(
                        "target.averageValue must be greater than zero",
                    )),
                    Err(error) => Err(Failure::invalid(format!("target.averageValue: {error}"))),
                }
            }
        }
    }
}

/// A pod's sample paired with its request (the request only matters for utilization).
#[derive(Debug, Clone, Copy)]
struct Sample {
    value: i64,
    request: i64,
}

/// The metric over a set of samples: the usage ratio and the figures status reports.
#[derive(Debug, Clone, Copy)]
struct Measurement {
    ratio: f64,
    utilization: Option<i32>,
    average_milli: i64,
}

fn measure(samples: &[Sample], target: Target) -> Result<Measurement, Failure> {
    let total: i64 = samples.iter().map(|s| s.value).fold(0, i64::saturating_add);
    let count = i64::try_from(samples.len()).unwrap_or(i64::MAX).max(1);
    let average_milli = total / count;
    match target {
        Target::Utilization(percent) => {
            let requested: i64 = samples
                .iter()
                .map(|s| s.request)
                .fold(0, i64::saturating_add);
            if requested <= 0 {
                return Err(Failure::new(
                    Reason::FailedGetResourceMetric,
                    "the pods' requests add up to zero, so utilization is undefined",
                ));
            }
            // Whole percent, truncated, as HPA computes it.
            let utilization =
                (i128::from(total) * 100 / i128::from(requested)).clamp(0, i128::from(i32::MAX));
            let utilization = i32::try_from(utilization).unwrap_or(i32::MAX);
            Ok(Measurement {
                ratio: f64::from(utilization) / f64::from(percent),
                utilization: Some(utilization),
                average_milli,
            })
        }
        Target::AverageMilli(milli) => Ok(Measurement {
            ratio: average_milli as f64 / milli as f64,
            utilization: None,
            average_milli,
        }),
    }
}

fn propose_resource(metric: &ResourceMetric, ctx: &Context<'_>) -> Result<Proposal, Failure> {
    let resource = resource_word(metric.name);
    let target = Target::from_spec(&metric.target)?;
    let usage = ctx.observed.pod_usage.as_ref().map_err(|missing| {
        Failure::new(
            Reason::FailedGetResourceMetric,
            format!(
                "unable to get metrics for resource {resource}: {}",
                missing.0
            ),
        )
    })?;
    if ctx.observed.pods.is_empty() {
        return Err(Failure::new(
            Reason::FailedGetResourceMetric,
            "no pods returned by selector while calculating replica count",
        ));
    }
    let groups = pods::group(&ctx.observed.pods, usage, metric.name, ctx.delays, ctx.now);
    let requests = Requests::collect(&groups, metric.name, target)?;
    let counted: Vec<Sample> = groups
        .counted
        .iter()
        .map(|&(pod, value)| Sample {
            value,
            request: requests.get(pod),
        })
        .collect();
    if counted.is_empty() {
        return Err(Failure::new(
            Reason::FailedGetResourceMetric,
            format!(
                "failed to get {resource} usage: did not receive metrics for targeted pods (pods might be unready)"
            ),
        ));
    }
    let measured = measure(&counted, target)?;
    let replicas = rebalanced_replicas(ctx, &groups, counted, measured.ratio, target, &requests)?;
    Ok(resource_proposal(metric.name, target, measured, replicas))
}

/// HPA's handling of missing samples and of pods not yet ready. Without either, the count is
/// `ceil(ratio × counted pods)`. Otherwise missing pods are assumed at target (100% of their
/// request) when the metric says scale down and idle when it says scale up, ignored pods are
/// assumed idle on a scale-up, and the ratio is recomputed; if that recomputation reverses the
/// direction or falls within tolerance, nothing changes.
fn rebalanced_replicas(
    ctx: &Context<'_>,
    groups: &PodGroups<'_>,
    mut samples: Vec<Sample>,
    ratio: f64,
    target: Target,
    requests: &Requests,
) -> Result<i32, Failure> {
    let scaling_up = ratio > 1.0;
    let rebalance_ignored = scaling_up && !groups.ignored.is_empty();
    if !rebalance_ignored && groups.missing.is_empty() {
        if within_tolerance(ratio, ctx.tolerance) {
            return Ok(ctx.current);
        }
        return Ok(ceil_replicas(ratio * samples.len() as f64));
    }
    if ratio < 1.0 {
        samples.extend(groups.missing.iter().map(|pod| {
            let request = requests.get(pod);
            let at_target = match target {
                Target::Utilization(_) => request,
                Target::AverageMilli(milli) => milli,
            };
            Sample {
                value: at_target,
                request,
            }
        }));
    } else if scaling_up {
        samples.extend(groups.missing.iter().map(|pod| Sample {
            value: 0,
            request: requests.get(pod),
        }));
    }
    if rebalance_ignored {
        samples.extend(groups.ignored.iter().map(|pod| Sample {
            value: 0,
            request: requests.get(pod),
        }));
    }
    let new_ratio = measure(&samples, target)?.ratio;
    let reversed = (ratio < 1.0 && new_ratio > 1.0) || (scaling_up && new_ratio < 1.0);
    if within_tolerance(new_ratio, ctx.tolerance) || reversed {
        return Ok(ctx.current);
    }
    let replicas = ceil_replicas(new_ratio * samples.len() as f64);
    // More pods in the calculation than replicas can still flip the direction.
    let flipped =
        (new_ratio < 1.0 && replicas > ctx.current) || (new_ratio > 1.0 && replicas < ctx.current);
    Ok(if flipped { ctx.current } else { replicas })
}

/// Requests per pod, required of every pod that takes part when the target is a utilization.
struct Requests(BTreeMap<String, i64>);

impl Requests {
    fn taking_part<'a>(groups: &'a PodGroups<'a>) -> impl Iterator<Item = &'a PodSample> {
        groups
            .counted
            .iter()
            .map(|&(pod, _)| pod)
            .chain(groups.ignored.iter().copied())
            .chain(groups.missing.iter().copied())
    }

    fn collect(
        groups: &PodGroups<'_>,
        resource: ResourceName,
        target: Target,
    ) -> Result<Self, Failure> {
        let mut requests = BTreeMap::new();
        for pod in Self::taking_part(groups) {
            let request = match (pod.request_milli(resource), target) {
                (Some(request), _) => request,
                (None, Target::AverageMilli(_)) => 0,
                (None, Target::Utilization(_)) => {
                    return Err(Failure::new(
                        Reason::FailedGetResourceMetric,
                        format!(
                            "failed to get {} utilization: missing request for {} in a container of pod {}",
                            resource_word(resource),
                            resource_word(resource),
                            pod.name
                        ),
                    ));
                }
            };
            requests.insert(pod.name.clone(), request);
        }
        Ok(Self(requests))
    }

    fn get(&self, pod: &PodSample) -> i64 {
        self.0.get(&pod.name).copied().unwrap_or(0)
    }
}

fn resource_proposal(
    resource: ResourceName,
    target: Target,
    measured: Measurement,
    replicas: i32,
) -> Proposal {
    let word = resource_word(resource);
    let (name, observation) = match target {
        Target::Utilization(percent) => (
            format!("{word} resource utilization (percentage of request)"),
            format!(
                "{word} utilization {}% of request (target {percent}%)",
                measured.utilization.unwrap_or(0)
            ),
        ),
        Target::AverageMilli(milli) => (
            format!("{word} resource"),
            format!(
                "{word} {} per pod (target {})",
                from_milli(measured.average_milli).0,
                from_milli(milli).0
            ),
        ),
    };
    Proposal {
        replicas,
        status: MetricStatus {
            type_: MetricType::Resource,
            resource: Some(resource),
            service: None,
            average_utilization: measured.utilization,
            average_value: Some(from_milli(measured.average_milli)),
        },
        name,
        observation,
    }
}

/// Connections: `ceil(rate / target per replica)`, compared against the ready replicas for
/// tolerance. With no ready replica to average over, the rate may raise the count but never
/// lower it.
fn propose_connections(metric: &ConnectionsMetric, ctx: &Context<'_>) -> Result<Proposal, Failure> {
    let service = &metric.service;
    let target_milli = match milli_value(&metric.target_per_replica) {
        Ok(milli) if milli > 0 => milli,
        Ok(_) => {
            return Err(Failure::invalid(
                "connections.targetPerReplica must be greater than zero",
            ));
        }
        Err(error) => {
            return Err(Failure::invalid(format!(
                "connections.targetPerReplica: {error}"
            )));
        }
    };
    let rate = connection_rate(&ctx.observed.connections, service)?;
    let target = target_milli as f64 / 1000.0;
    let ready = ctx.observed.pods.iter().filter(|p| p.is_serving()).count();
    let wanted = ceil_replicas(rate / target);
    let replicas = if ready == 0 {
        wanted.max(ctx.current)
    } else {
        let ratio = rate / (target * ready as f64);
        let against_ratio =
            (ratio > 1.0 && wanted < ctx.current) || (ratio < 1.0 && wanted > ctx.current);
        if within_tolerance(ratio, ctx.tolerance) || against_ratio {
            ctx.current
        } else {
            wanted
        }
    };
    let per_replica = rate / ready.max(1) as f64;
    Ok(Proposal {
        replicas,
        status: MetricStatus {
            type_: MetricType::Connections,
            resource: None,
            service: Some(service.clone()),
            average_utilization: None,
            average_value: Some(from_milli(ceil_to_milli(per_replica))),
        },
        name: format!("connections to service {service}"),
        observation: format!(
            "connections to {service} {rate:.1}/s, {per_replica:.1}/s per ready replica over {ready} (target {target}/s)"
        ),
    })
}

fn connection_rate(
    rates: &BTreeMap<String, Result<f64, Missing>>,
    service: &str,
) -> Result<f64, Failure> {
    let failed = |message: String| Failure::new(Reason::FailedGetConnectionsMetric, message);
    match rates.get(service) {
        None => Err(failed(format!(
            "no connection rate for service {service} yet"
        ))),
        Some(Err(missing)) => Err(failed(format!(
            "unable to get connections for service {service}: {}",
            missing.0
        ))),
        Some(Ok(rate)) if rate.is_finite() && *rate >= 0.0 => Ok(*rate),
        Some(Ok(rate)) => Err(failed(format!(
            "connection rate for service {service} is not a valid number: {rate}"
        ))),
    }
}

fn within_tolerance(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

/// Rounds a replica count up into `0..=i32::MAX`; NaN becomes 0 (callers keep inputs finite).
fn ceil_replicas(value: f64) -> i32 {
    value.ceil().clamp(0.0, f64::from(i32::MAX)) as i32
}

fn ceil_to_milli(value: f64) -> i64 {
    (value * 1000.0).ceil() as i64
}

fn resource_word(resource: ResourceName) -> &'static str {
    match resource {
        ResourceName::Cpu => "cpu",
        ResourceName::Memory => "memory",
    }
}
