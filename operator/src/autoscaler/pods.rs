//! The target's pods as the replica calculation sees them, and HPA's sorting of them into
//! pods whose samples count, pods ignored for now (pending, or not yet ready for CPU), and pods
//! with no sample at all.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::ResourceName;

/// A pod matched by the target's scale selector.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub name: String,
    pub phase: PodPhase,
    /// Has a deletion timestamp.
    pub deleting: bool,
    pub start_time: Option<Timestamp>,
    /// The Ready condition, if the pod reports one.
    pub ready: Option<Readiness>,
    /// Sum of the containers' requests; `None` when any container has no request for it.
    pub cpu_request_milli: Option<i64>,
    pub memory_request_milli: Option<i64>,
}

/// The pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// The Ready condition: its status and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub last_transition: Timestamp,
}

/// One pod's usage from metrics.k8s.io, summed over its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodUsage {
    pub cpu_milli: i64,
    pub memory_milli: i64,
    /// End of the sampling window.
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// The controller-wide readiness delays HPA applies to CPU samples (its
/// `--horizontal-pod-autoscaler-cpu-initialization-period` and `-initial-readiness-delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessDelays {
    /// After a pod starts, its CPU counts only while ready and sampled entirely since then.
    pub cpu_initialization_period: SignedDuration,
    /// After that, an unready pod whose readiness never changed after this delay is ignored.
    pub initial_readiness_delay: SignedDuration,
}

impl Default for ReadinessDelays {
    fn default() -> Self {
        Self {
            cpu_initialization_period: SignedDuration::from_mins(5),
            initial_readiness_delay: SignedDuration::from_secs(30),
        }
    }
}

impl PodSample {
    /// Requests of `resource`, as `cpu_request_milli` or `memory_request_milli`.
    pub fn request_milli(&self, resource: ResourceName) -> Option<i64> {
        match resource {
            ResourceName::Cpu => self.cpu_request_milli,
            ResourceName::Memory => self.memory_request_milli,
        }
    }

    /// Running and Ready: counts as a replica serving traffic.
    pub fn is_serving(&self) -> bool {
        !self.deleting && self.phase == PodPhase::Running && self.ready.is_some_and(|r| r.ready)
    }

    fn is_finished(&self) -> bool {
        self.deleting || matches!(self.phase, PodPhase::Failed | PodPhase::Succeeded)
    }

    /// HPA's rule for pods whose CPU cannot be trusted yet: during the initialization period
    /// only a ready pod sampled entirely after becoming ready counts; afterwards only an
    /// unready pod that has never been ready (readiness last changed within the initial delay
    /// after start) is ignored.
    fn cpu_not_yet_ready(
        &self,
        usage: &PodUsage,
        delays: &ReadinessDelays,
        now: Timestamp,
    ) -> bool {
        let (Some(ready), Some(started)) = (self.ready, self.start_time) else {
            return true;
        };
        let initializing = started
            .checked_add(delays.cpu_initialization_period)
            .is_ok_and(|end| end > now);
        if initializing {
            let sampled_since_ready = ready
                .last_transition
                .checked_add(usage.window)
                .is_ok_and(|first_full_sample| usage.timestamp >= first_full_sample);
            !ready.ready || !sampled_since_ready
        } else {
            let never_ready = started
                .checked_add(delays.initial_readiness_delay)
                .is_ok_and(|delay_end| delay_end > ready.last_transition);
            !ready.ready && never_ready
        }
    }
}

impl PodUsage {
    pub fn milli(&self, resource: ResourceName) -> i64 {
        match resource {
            ResourceName::Cpu => self.cpu_milli,
            ResourceName::Memory => self.memory_milli,
        }
    }
}

/// Pods sorted by how their samples are used.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PodGroups<'a> {
    /// Pods whose sample counts, with the sample.
    pub counted: Vec<(&'a PodSample, i64)>,
    /// Pending pods, and for CPU pods not yet ready: assumed idle if the metric says scale up.
    pub ignored: Vec<&'a PodSample>,
    /// Pods with no sample: assumed idle on a scale-up and at target on a scale-down.
    pub missing: Vec<&'a PodSample>,
}

/// Sorts the pods as HPA's replica calculator does; deleted and finished pods are left out.
pub(super) fn group<'a>(
    pods: &'a [PodSample],
    usage: &BTreeMap<String, PodUsage>,
    resource: ResourceName,
    delays: &ReadinessDelays,
    now: Timestamp,
) -> PodGroups<'a> {
    let mut groups = PodGroups::default();
    for pod in pods.iter().filter(|p| !p.is_finished()) {
        if pod.phase == PodPhase::Pending {
            groups.ignored.push(pod);
            continue;
        }
        let Some(sample) = usage.get(&pod.name) else {
            groups.missing.push(pod);
            continue;
        };
        if resource == ResourceName::Cpu && pod.cpu_not_yet_ready(sample, delays, now) {
            groups.ignored.push(pod);
            continue;
        }
        groups.counted.push((pod, sample.milli(resource)));
    }
    groups
}
