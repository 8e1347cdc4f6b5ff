//! An in-memory `ferry-ipvs0` that fails like rtnetlink does.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Link, LinkError};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Missing,
    Up(BTreeSet<IpAddr>),
}

/// The dummy link for tests.
#[derive(Debug)]
pub struct FakeLink {
    state: Mutex<State>,
    dummy_supported: bool,
    host_addresses: Mutex<BTreeSet<IpAddr>>,
}

impl Default for FakeLink {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeLink {
    /// No link yet, on a kernel that can create dummy links.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::Missing),
            dummy_supported: true,
            host_addresses: Mutex::default(),
        }
    }

    /// A kernel without the dummy driver, like the development hosts.
    pub fn without_dummy_support() -> Self {
        Self {
            dummy_supported: false,
            ..Self::new()
        }
    }

    /// Whether the link exists, as `ip link show ferry-ipvs0` would say.
    pub fn exists(&self) -> bool {
        *self.lock() != State::Missing
    }

    /// Someone ran `ip link del ferry-ipvs0`: the link and its addresses are gone.
    pub fn remove_link(&self) {
        *self.lock() = State::Missing;
    }

    /// Gives the node's other links these addresses.
    pub fn set_host_addresses(&self, addresses: impl IntoIterator<Item = IpAddr>) {
        *lock(&self.host_addresses) = addresses.into_iter().collect();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn with_addresses<T>(
        &self,
        change: impl FnOnce(&mut BTreeSet<IpAddr>) -> Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        match &mut *self.lock() {
            State::Missing => Err(LinkError::LinkNotFound),
            State::Up(addresses) => change(addresses),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link for FakeLink {
    async fn ensure_link(&self) -> Result<(), LinkError> {
        let mut state = self.lock();
        if *state == State::Missing {
            if !self.dummy_supported {
                return Err(LinkError::DummyUnsupported);
            }
            *state = State::Up(BTreeSet::new());
        }
        Ok(())
    }

    async fn list_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        self.with_addresses(|addresses| Ok(addresses.clone()))
    }

    async fn add_address(&self, address: IpAddr) -> Result<(), LinkError> {
        self.with_addresses(|addresses| {
            addresses
                .insert(address)
                .then_some(())
                .ok_or(LinkError::AddressExists { address })
        })
    }

    async fn delete_address(&self, address: IpAddr) -> Result<(), LinkError> {
        self.with_addresses(|addresses| {
            addresses
                .remove(&address)
                .then_some(())
                .ok_or(LinkError::AddressNotFound { address })
        })
    }

    async fn delete_link(&self) -> Result<(), LinkError> {
        self.remove_link();
        Ok(())
    }

    async fn host_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        Ok(lock(&self.host_addresses).clone())
    }
}
