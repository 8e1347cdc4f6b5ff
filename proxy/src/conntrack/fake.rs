//! An in-memory conntrack table.

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Conntrack, ConntrackError, Flow, FlowFilter};
use crate::model::types::{RealServerKey, VirtualServerKey};

/// Conntrack for tests: insert the flows traffic would have created, then check which survive.
#[derive(Debug, Default)]
pub struct FakeConntrack {
    flows: Mutex<Vec<Flow>>,
}

impl FakeConntrack {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a flow, as a packet would. Like the kernel, one entry per original tuple and zone.
    pub fn insert(&self, flow: Flow) {
        let mut flows = self.lock();
        flows.retain(|f| (f.original, f.zone) != (flow.original, flow.zone));
        flows.push(flow);
    }

    pub fn flows(&self) -> Vec<Flow> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Flow>> {
        self.flows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn delete(&self, filter: FlowFilter) -> usize {
        let mut flows = self.lock();
        let before = flows.len();
        flows.retain(|flow| !filter.matches(flow));
        before - flows.len()
    }
}

impl Conntrack for FakeConntrack {
    async fn delete_udp_flows_to_backend(
        &self,
        frontend: VirtualServerKey,
        backend: RealServerKey,
    ) -> Result<usize, ConntrackError> {
        Ok(self.delete(FlowFilter::udp(frontend, Some(backend))?))
    }

    async fn delete_udp_flows_to_frontend(
        &self,
        frontend: VirtualServerKey,
    ) -> Result<usize, ConntrackError> {
        Ok(self.delete(FlowFilter::udp(frontend, None)?))
    }
}
