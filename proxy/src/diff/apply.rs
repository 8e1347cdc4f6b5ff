//! Ops applied to a [`KernelState`] value, failing where the kernel would fail.
//!
//! The diff's property tests use it to check that the ops reach the desired state, and an
//! in-memory kernel fake can reuse it so both agree on what each op means.

use std::net::IpAddr;

use crate::model::types::{
    KernelRealServer, KernelState, KernelVirtualServer, RealServerKey, VirtualServerKey,
};

use super::op::Op;

/// The kernel's answer to an op that does not fit the state (EEXIST, ENOENT, EADDRNOTAVAIL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("virtual server {0} already exists")]
    VirtualServerExists(VirtualServerKey),
    #[error("no virtual server {0}")]
    NoVirtualServer(VirtualServerKey),
    #[error("real server {1} of {0} already exists")]
    RealServerExists(VirtualServerKey, RealServerKey),
    #[error("no real server {1} in {0}")]
    NoRealServer(VirtualServerKey, RealServerKey),
    #[error("address {0} is already bound")]
    AddressBound(IpAddr),
    #[error("address {0} is not bound")]
    AddressNotBound(IpAddr),
}

/// Applies `ops` in order; stops at the first that the kernel would refuse.
/// New real servers start without connections; updates set masquerading as the kernel edge
/// does; conntrack ops change nothing here.
pub fn apply(state: &mut KernelState, ops: &[Op]) -> Result<(), ApplyError> {
    ops.iter().try_for_each(|op| apply_one(state, op))
}

fn apply_one(state: &mut KernelState, op: &Op) -> Result<(), ApplyError> {
    match op {
        Op::AddVirtualServer { key, params } => {
            if state.virtual_servers.contains_key(key) {
                return Err(ApplyError::VirtualServerExists(*key));
            }
            let server = KernelVirtualServer {
                params: Some(params.clone()),
                real_servers: Default::default(),
            };
            state.virtual_servers.insert(*key, server);
        }
        Op::UpdateVirtualServer { key, params } => {
            virtual_server(state, key)?.params = Some(params.clone());
        }
        Op::DeleteVirtualServer { key } => {
            state
                .virtual_servers
                .remove(key)
                .ok_or(ApplyError::NoVirtualServer(*key))?;
        }
        Op::AddRealServer {
            key,
            real_server,
            weight,
        } => {
            let real_servers = &mut virtual_server(state, key)?.real_servers;
            if real_servers.contains_key(real_server) {
                return Err(ApplyError::RealServerExists(*key, *real_server));
            }
            let new = KernelRealServer {
                weight: *weight,
                active_connections: 0,
                inactive_connections: 0,
                masquerade: true,
            };
            real_servers.insert(*real_server, new);
        }
        Op::UpdateRealServer {
            key,
            real_server,
            weight,
        } => {
            let kernel = virtual_server(state, key)?
                .real_servers
                .get_mut(real_server)
                .ok_or(ApplyError::NoRealServer(*key, *real_server))?;
            kernel.weight = *weight;
            kernel.masquerade = true;
        }
        Op::DeleteRealServer { key, real_server } => {
            virtual_server(state, key)?
                .real_servers
                .remove(real_server)
                .ok_or(ApplyError::NoRealServer(*key, *real_server))?;
        }
        Op::BindAddress { address } => {
            if !state.bound_addresses.insert(*address) {
                return Err(ApplyError::AddressBound(*address));
            }
        }
        Op::UnbindAddress { address } => {
            if !state.bound_addresses.remove(address) {
                return Err(ApplyError::AddressNotBound(*address));
            }
        }
        Op::DeleteConntrackToBackend { .. } | Op::DeleteConntrackToFrontend { .. } => {}
    }
    Ok(())
}

fn virtual_server<'a>(
    state: &'a mut KernelState,
    key: &VirtualServerKey,
) -> Result<&'a mut KernelVirtualServer, ApplyError> {
    state
        .virtual_servers
        .get_mut(key)
        .ok_or(ApplyError::NoVirtualServer(*key))
}
