//! An in-memory IPVS that fails the way `ip_vs_genl_set_cmd` does.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    Ipvs, IpvsError, ObservedRealServer, ObservedVirtualServer, Target, VirtualServerStats,
};
use crate::model::types::{RealServerKey, Scheduler, VirtualServerKey, VirtualServerParams};

/// In-memory IPVS for tests of everything above the kernel edge.
#[derive(Debug, Default)]
pub struct FakeIpvs {
    virtual_servers: Mutex<BTreeMap<VirtualServerKey, ObservedVirtualServer>>,
    missing_schedulers: BTreeSet<Scheduler>,
}

impl FakeIpvs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kernel built without these schedulers' modules: using them fails like ENOENT does.
    pub fn without_schedulers(schedulers: impl IntoIterator<Item = Scheduler>) -> Self {
        Self {
            missing_schedulers: schedulers.into_iter().collect(),
            ..Self::default()
        }
    }

    /// What `list_virtual_servers` would return, without a runtime.
    pub fn snapshot(&self) -> BTreeMap<VirtualServerKey, ObservedVirtualServer> {
        self.lock().clone()
    }

    /// Simulates traffic: sets a real server's connection counts (drain logic reads them).
    pub fn set_connections(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        active: u32,
        inactive: u32,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        let observed = real_server_mut(&mut state, virtual_server, real_server)?;
        observed.active_connections = active;
        observed.inactive_connections = inactive;
        Ok(())
    }

    /// Simulates traffic: sets a virtual server's counters (the autoscaler reads them).
    pub fn set_stats(
        &self,
        virtual_server: VirtualServerKey,
        stats: VirtualServerStats,
    ) -> Result<(), IpvsError> {
        virtual_server_mut(&mut self.lock(), virtual_server)?.stats = stats;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<VirtualServerKey, ObservedVirtualServer>> {
        // A test that panicked while holding the lock leaves consistent data behind.
        self.virtual_servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn check_scheduler(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> Result<(), IpvsError> {
        if self.missing_schedulers.contains(&params.scheduler) {
            return Err(IpvsError::UnknownScheduler {
                target: Target::VirtualServer(key),
                scheduler: params.scheduler.kernel_name(),
            });
        }
        Ok(())
    }
}

fn virtual_server_mut(
    state: &mut BTreeMap<VirtualServerKey, ObservedVirtualServer>,
    key: VirtualServerKey,
) -> Result<&mut ObservedVirtualServer, IpvsError> {
    state.get_mut(&key).ok_or(IpvsError::NotFound {
        target: Target::VirtualServer(key),
    })
}

fn real_server_mut(
    state: &mut BTreeMap<VirtualServerKey, ObservedVirtualServer>,
    virtual_server: VirtualServerKey,
    real_server: RealServerKey,
) -> Result<&mut ObservedRealServer, IpvsError> {
    virtual_server_mut(state, virtual_server)?
        .real_servers
        .get_mut(&real_server)
        .ok_or(IpvsError::NotFound {
            target: Target::RealServer {
                virtual_server,
                real_server,
            },
        })
}

/// The checks `ip_vs_genl_set_cmd` and `ip_vs_add_dest`/`ip_vs_edit_dest` make before looking
/// the destination up: masquerading needs one address family, and the weight is an `int`.
fn check_real_server(
    virtual_server: VirtualServerKey,
    real_server: RealServerKey,
    weight: u32,
) -> Result<(), IpvsError> {
    let errno = if virtual_server.address.is_ipv4() != real_server.address.is_ipv4() {
        libc::EINVAL
    } else if i32::try_from(weight).is_err() {
        libc::ERANGE
    } else {
        return Ok(());
    };
    Err(IpvsError::Rejected {
        target: Target::RealServer {
            virtual_server,
            real_server,
        },
        source: io::Error::from_raw_os_error(errno),
    })
}

impl Ipvs for FakeIpvs {
    async fn list_virtual_servers(
        &self,
    ) -> Result<BTreeMap<VirtualServerKey, ObservedVirtualServer>, IpvsError> {
        Ok(self.snapshot())
    }

    async fn list_real_servers(
        &self,
        key: VirtualServerKey,
    ) -> Result<BTreeMap<RealServerKey, ObservedRealServer>, IpvsError> {
        Ok(virtual_server_mut(&mut self.lock(), key)?
            .real_servers
            .clone())
    }

    async fn list_stats(
        &self,
    ) -> Result<BTreeMap<VirtualServerKey, VirtualServerStats>, IpvsError> {
        Ok(self
            .lock()
            .iter()
            .map(|(key, vs)| (*key, vs.stats))
            .collect())
    }

    async fn add_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        if state.contains_key(&key) {
            return Err(IpvsError::AlreadyExists {
                target: Target::VirtualServer(key),
            });
        }
        self.check_scheduler(key, params)?;
        let observed = ObservedVirtualServer {
            params: Some(params.clone()),
            ..ObservedVirtualServer::default()
        };
        state.insert(key, observed);
        Ok(())
    }

    async fn update_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        let observed = virtual_server_mut(&mut state, key)?;
        self.check_scheduler(key, params)?;
        observed.params = Some(params.clone());
        Ok(())
    }

    async fn delete_virtual_server(&self, key: VirtualServerKey) -> Result<(), IpvsError> {
        self.lock()
            .remove(&key)
            .map(drop)
            .ok_or(IpvsError::NotFound {
                target: Target::VirtualServer(key),
            })
    }

    async fn add_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        let observed = virtual_server_mut(&mut state, virtual_server)?;
        check_real_server(virtual_server, real_server, weight)?;
        if observed.real_servers.contains_key(&real_server) {
            return Err(IpvsError::AlreadyExists {
                target: Target::RealServer {
                    virtual_server,
                    real_server,
                },
            });
        }
        observed.real_servers.insert(
            real_server,
            ObservedRealServer {
                weight,
                active_connections: 0,
                inactive_connections: 0,
                masquerade: true,
            },
        );
        Ok(())
    }

    async fn update_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        virtual_server_mut(&mut state, virtual_server)?;
        check_real_server(virtual_server, real_server, weight)?;
        let observed = real_server_mut(&mut state, virtual_server, real_server)?;
        observed.weight = weight;
        observed.masquerade = true;
        Ok(())
    }

    async fn delete_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
    ) -> Result<(), IpvsError> {
        let mut state = self.lock();
        virtual_server_mut(&mut state, virtual_server)?
            .real_servers
            .remove(&real_server)
            .map(drop)
            .ok_or(IpvsError::NotFound {
                target: Target::RealServer {
                    virtual_server,
                    real_server,
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::Protocol;

    fn vs() -> VirtualServerKey {
        VirtualServerKey {
            protocol: Protocol::Tcp,
            address: "10.96.0.1".parse().unwrap(),
            port: 443,
        }
    }

    fn rs() -> RealServerKey {
        RealServerKey {
            address: "10.244.1.5".parse().unwrap(),
            port: 8443,
        }
    }

    fn params(scheduler: Scheduler) -> VirtualServerParams {
        VirtualServerParams {
            scheduler,
            persistence: None,
        }
    }

    #[tokio::test]
    async fn a_missing_scheduler_module_fails_add_and_update() {
        let ipvs = FakeIpvs::without_schedulers([Scheduler::MaglevHashing]);
        let error = ipvs
            .add_virtual_server(vs(), &params(Scheduler::MaglevHashing))
            .await;
        assert!(
            matches!(
                error,
                Err(IpvsError::UnknownScheduler {
                    scheduler: "mh",
                    ..
                })
            ),
            "{error:?}"
        );
        ipvs.add_virtual_server(vs(), &params(Scheduler::RoundRobin))
            .await
            .unwrap();
        let error = ipvs
            .update_virtual_server(vs(), &params(Scheduler::MaglevHashing))
            .await;
        assert!(
            matches!(error, Err(IpvsError::UnknownScheduler { .. })),
            "{error:?}"
        );
        assert_eq!(
            ipvs.snapshot()[&vs()].params,
            Some(params(Scheduler::RoundRobin))
        );
    }

    #[tokio::test]
    async fn traffic_can_be_simulated() {
        let ipvs = FakeIpvs::new();
        ipvs.add_virtual_server(vs(), &params(Scheduler::RoundRobin))
            .await
            .unwrap();
        assert!(matches!(
            ipvs.set_connections(vs(), rs(), 1, 1),
            Err(IpvsError::NotFound { .. })
        ));
        ipvs.add_real_server(vs(), rs(), 1).await.unwrap();
        ipvs.set_connections(vs(), rs(), 3, 2).unwrap();
        let stats = VirtualServerStats {
            connections: 5,
            ..VirtualServerStats::default()
        };
        ipvs.set_stats(vs(), stats).unwrap();
        let listed = ipvs.list_virtual_servers().await.unwrap();
        let real_server = listed[&vs()].real_servers[&rs()];
        assert_eq!(
            (
                real_server.active_connections,
                real_server.inactive_connections
            ),
            (3, 2)
        );
        assert_eq!(listed[&vs()].stats.connections, 5);
    }
}
