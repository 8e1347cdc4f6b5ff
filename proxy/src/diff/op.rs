//! The operations a diff emits, in the order they must be applied.

use std::net::IpAddr;

use crate::model::types::{RealServerKey, VirtualServerKey, VirtualServerParams};

/// One change to the kernel. IPVS ops name the virtual server by `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddVirtualServer {
        key: VirtualServerKey,
        params: VirtualServerParams,
    },
    UpdateVirtualServer {
        key: VirtualServerKey,
        params: VirtualServerParams,
    },
    /// IPVS deletes the virtual server's real servers with it.
    DeleteVirtualServer { key: VirtualServerKey },
    AddRealServer {
        key: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    },
    /// Also how a real server is drained: weight 0 takes no new connections.
    UpdateRealServer {
        key: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    },
    DeleteRealServer {
        key: VirtualServerKey,
        real_server: RealServerKey,
    },
    /// Add the address to `ferry-ipvs0`.
    BindAddress { address: IpAddr },
    /// Remove the address from `ferry-ipvs0`.
    UnbindAddress { address: IpAddr },
    /// Delete UDP conntrack entries from `frontend` to a removed backend, so clients with a
    /// fixed source port move to a live one instead of blackholing until the entry expires.
    DeleteConntrackToBackend {
        frontend: VirtualServerKey,
        backend: RealServerKey,
    },
    /// Delete UDP conntrack entries to `frontend`: it just got endpoints (entries made while it
    /// had none point nowhere) or it went away.
    DeleteConntrackToFrontend { frontend: VirtualServerKey },
}

impl Op {
    /// Whether the op changes a real server (the unit of an endpoint change).
    pub fn is_real_server_op(&self) -> bool {
        matches!(
            self,
            Op::AddRealServer { .. } | Op::UpdateRealServer { .. } | Op::DeleteRealServer { .. }
        )
    }
}
