//! Fixtures for the Autoscaler algorithm tests, written the way the cluster reads: pods that
//! are running and ready unless a test says otherwise, CPU requests of one core, and a clock
//! that starts at `T0` and is moved in whole seconds.
#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::collections::BTreeMap;

use ferry_operator::api::{
    AutoscalerSpec, ConnectionsMetric, MetricSpec, MetricType, ResourceMetric, ResourceName,
    ResourceTarget, ResourceTargetType, ScaleTargetRef, ScalingBehavior,
};
use ferry_operator::autoscaler::{
    History, Input, Missing, Observed, PodPhase, PodSample, PodUsage, Readiness, Recommendation,
    recommend,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The instant every test starts at.
pub fn t0() -> Timestamp {
    Timestamp::from_second(1_750_000_000).expect("a valid instant")
}

/// `seconds` after `T0` (negative: before).
pub fn at(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

pub fn cpu_utilization(percent: i32) -> MetricSpec {
    resource(
        ResourceName::Cpu,
        ResourceTarget {
            type_: ResourceTargetType::Utilization,
            average_utilization: Some(percent),
            average_value: None,
        },
    )
}

pub fn memory_utilization(percent: i32) -> MetricSpec {
    resource(
        ResourceName::Memory,
        ResourceTarget {
            type_: ResourceTargetType::Utilization,
            average_utilization: Some(percent),
            average_value: None,
        },
    )
}

pub fn cpu_average(value: &str) -> MetricSpec {
    resource(
        ResourceName::Cpu,
        ResourceTarget {
            type_: ResourceTargetType::AverageValue,
            average_utilization: None,
            average_value: Some(Quantity(value.to_owned())),
        },
    )
}

fn resource(name: ResourceName, target: ResourceTarget) -> MetricSpec {
    MetricSpec {
        type_: MetricType::Resource,
        resource: Some(ResourceMetric { name, target }),
        connections: None,
    }
}

/// New connections per second to `service`, `per_replica` per ready replica.
pub fn connections(service: &str, per_replica: &str) -> MetricSpec {
    MetricSpec {
        type_: MetricType::Connections,
        resource: None,
        connections: Some(ConnectionsMetric {
            service: service.to_owned(),
            target_per_replica: Quantity(per_replica.to_owned()),
        }),
    }
}

/// An Autoscaler of `min..=max` replicas on `metrics`, with default behavior and tolerance.
pub fn spec(min: i32, max: i32, metrics: Vec<MetricSpec>) -> AutoscalerSpec {
    AutoscalerSpec {
        scale_target_ref: ScaleTargetRef {
            api_version: "ferry.dev/v1alpha1".to_owned(),
            kind: "App".to_owned(),
            name: "web".to_owned(),
        },
        min_replicas: Some(min),
        max_replicas: max,
        metrics,
        behavior: None,
        tolerance: None,
    }
}

/// A pod that has run for ten minutes, ready since it started, requesting one core and 1Gi.
pub fn pod(name: &str) -> PodSample {
    PodSample {
        name: name.to_owned(),
        phase: PodPhase::Running,
        deleting: false,
        start_time: Some(at(-600)),
        ready: Some(Readiness {
            ready: true,
            last_transition: at(-600),
        }),
        cpu_request_milli: Some(1000),
        memory_request_milli: Some(1 << 40),
    }
}

/// `pod(name)` changed by `change`.
pub fn pod_with(name: &str, change: impl FnOnce(&mut PodSample)) -> PodSample {
    let mut pod = pod(name);
    change(&mut pod);
    pod
}

/// A 30-second CPU sample ending now.
pub fn cpu_usage(milli: i64) -> PodUsage {
    PodUsage {
        cpu_milli: milli,
        memory_milli: 0,
        timestamp: t0(),
        window: SignedDuration::from_secs(30),
    }
}

/// Observations of pods `p0, p1, ...`; `None` usage means metrics-server has no sample.
pub fn pods_using(cpu_milli: &[Option<i64>]) -> Observed {
    let pods: Vec<PodSample> = (0..cpu_milli.len())
        .map(|i| pod(&format!("p{i}")))
        .collect();
    observe(pods, cpu_milli)
}

/// `pods` with CPU usage by position.
pub fn observe(pods: Vec<PodSample>, cpu_milli: &[Option<i64>]) -> Observed {
    let usage = pods
        .iter()
        .zip(cpu_milli)
        .filter_map(|(pod, milli)| milli.map(|m| (pod.name.clone(), cpu_usage(m))))
        .collect();
    Observed {
        pods,
        pod_usage: Ok(usage),
        connections: BTreeMap::new(),
    }
}

/// `ready` serving pods and a connection rate (or why it is missing) for `service`.
pub fn connection_rate(service: &str, ready: usize, rate: Result<f64, &str>) -> Observed {
    Observed {
        pods: (0..ready).map(|i| pod(&format!("p{i}"))).collect(),
        pod_usage: Err(Missing("not asked for".to_owned())),
        connections: BTreeMap::from([(
            service.to_owned(),
            rate.map_err(|m| Missing(m.to_owned())),
        )]),
    }
}

/// One decision at `T0` with an empty history.
pub fn decide(spec: &AutoscalerSpec, current: i32, observed: Observed) -> Recommendation {
    recommend(&Input::from_spec(
        spec,
        current,
        observed,
        History::default(),
        t0(),
    ))
}

/// The Autoscaler over time: each step asks for a number of replicas through the connection
/// rate (one connection per second per replica, tolerance zero), applies the decision to the
/// target as the controller would, and returns it.
pub struct Simulation {
    pub spec: AutoscalerSpec,
    pub current: i32,
    pub history: History,
}

impl Simulation {
    pub fn new(min: i32, max: i32, current: i32, behavior: Option<ScalingBehavior>) -> Self {
        let mut spec = spec(min, max, vec![connections("web", "1")]);
        spec.behavior = behavior;
        spec.tolerance = Some(0.0);
        Self {
            spec,
            current,
            history: History::default(),
        }
    }

    /// At `seconds` after T0 the load asks for `wanted` replicas: returns the decision.
    #[track_caller]
    pub fn step(&mut self, seconds: i64, wanted: i32) -> Recommendation {
        let observed = connection_rate(
            "web",
            usize::try_from(self.current).unwrap_or(0),
            Ok(f64::from(wanted)),
        );
        let input = Input::from_spec(
            &self.spec,
            self.current,
            observed,
            self.history.clone(),
            at(seconds),
        );
        let decision = recommend(&input);
        self.history = decision.history.clone();
        if decision.desired_replicas != self.current {
            self.history.record_rescale(
                &input.behavior,
                at(seconds),
                self.current,
                decision.desired_replicas,
            );
            self.current = decision.desired_replicas;
        }
        decision
    }

    /// Runs `(seconds, wanted)` steps and returns the replicas after each.
    #[track_caller]
    pub fn run(&mut self, steps: &[(i64, i32)]) -> Vec<i32> {
        steps
            .iter()
            .map(|&(seconds, wanted)| self.step(seconds, wanted).desired_replicas)
            .collect()
    }
}

/// The condition of `type_` in a decision, as (status, reason).
#[track_caller]
pub fn condition(decision: &Recommendation, type_: &str) -> (bool, String) {
    let found = decision
        .conditions
        .iter()
        .find(|c| c.type_.as_str() == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", decision.conditions));
    (found.status, found.reason.as_str().to_owned())
}
