//! `Ipvs` over a generic-netlink socket.

use std::collections::BTreeMap;
use std::io;

use netlink_sys::protocols::NETLINK_GENERIC;
use tokio::sync::Mutex;
use tracing::{debug, trace};

use super::codec::{
    self, CONN_F_MASQ, DestinationEntry, Request, decode_destination, decode_family_id,
    decode_service,
};
use super::socket::{Kind, NetlinkSocket, Reply, RequestError};
use super::{
    Ipvs, IpvsError, ObservedRealServer, ObservedVirtualServer, Target, VirtualServerStats,
};
use crate::model::types::{RealServerKey, VirtualServerKey, VirtualServerParams};

/// The kernel's IPVS, in the network namespace the socket was opened in.
pub struct NetlinkIpvs {
    family_id: u16,
    socket: Mutex<NetlinkSocket>,
}

impl NetlinkIpvs {
    /// Opens a generic-netlink socket in the calling thread's network namespace and resolves
    /// the "IPVS" family. Needs a Tokio runtime. `IpvsError::Unavailable` when the kernel has
    /// no IPVS (or the module is not loaded).
    pub async fn connect() -> Result<Self, IpvsError> {
        let target = Target::Family;
        let mut socket = NetlinkSocket::open(NETLINK_GENERIC)
            .map_err(|source| IpvsError::Socket { target, source })?;
        let replies = socket
            .request(codec::family_request(), Kind::Do)
            .await
            .map_err(|error| match error {
                RequestError::Kernel(libc::ENOENT) => IpvsError::Unavailable,
                other => transport_error(other, target),
            })?;
        let reply = replies.first().ok_or_else(|| IpvsError::Decode {
            target,
            source: "no reply to CTRL_CMD_GETFAMILY".into(),
        })?;
        let family_id = decode_family_id(&reply.payload)
            .map_err(|source| IpvsError::Decode { target, source })?;
        debug!(family_id, "resolved the IPVS generic netlink family");
        Ok(Self {
            family_id,
            socket: Mutex::new(socket),
        })
    }

    async fn execute(&self, request: Request) -> Result<Vec<Reply>, IpvsError> {
        let mut socket = self.socket.lock().await;
        execute(&mut socket, self.family_id, request).await
    }
}

async fn execute(
    socket: &mut NetlinkSocket,
    family_id: u16,
    request: Request,
) -> Result<Vec<Reply>, IpvsError> {
    let kind = if request.is_dump() {
        Kind::Dump
    } else {
        Kind::Do
    };
    let message = request.clone().into_message(family_id);
    socket
        .request(message, kind)
        .await
        .map_err(|error| match error {
            RequestError::Kernel(errno) => classify(errno, &request),
            other => transport_error(other, target_of(&request)),
        })
}

fn target_of(request: &Request) -> Target {
    match *request {
        Request::ListServices => Target::Listing,
        Request::ListDestinations(vs)
        | Request::NewService(vs, _)
        | Request::SetService(vs, _)
        | Request::DelService(vs) => Target::VirtualServer(vs),
        Request::NewDestination(vs, rs, _)
        | Request::SetDestination(vs, rs, _)
        | Request::DelDestination(vs, rs) => Target::RealServer {
            virtual_server: vs,
            real_server: rs,
        },
    }
}

/// Maps an errno the way `ip_vs_genl_set_cmd` produces it.
fn classify(errno: i32, request: &Request) -> IpvsError {
    let target = target_of(request);
    match (errno, request) {
        (libc::EEXIST, _) => IpvsError::AlreadyExists { target },
        // ESRCH always means the service is missing, even for a destination command.
        (libc::ESRCH, _) => IpvsError::NotFound {
            target: match target {
                Target::RealServer { virtual_server, .. } => Target::VirtualServer(virtual_server),
                other => other,
            },
        },
        // ip_vs_add_service/ip_vs_edit_service: no ip_vs_<sched> module.
        (libc::ENOENT, Request::NewService(_, params) | Request::SetService(_, params)) => {
            IpvsError::UnknownScheduler {
                target,
                scheduler: params.scheduler.kernel_name(),
            }
        }
        (libc::ENOENT, _) => IpvsError::NotFound { target },
        (libc::EPERM, _) => IpvsError::PermissionDenied { target },
        (errno, _) => IpvsError::Rejected {
            target,
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

fn transport_error(error: RequestError, target: Target) -> IpvsError {
    match error {
        RequestError::Io(source) => IpvsError::Socket { target, source },
        RequestError::Kernel(errno) => IpvsError::Rejected {
            target,
            source: io::Error::from_raw_os_error(errno),
        },
        RequestError::Decode(source) => IpvsError::Decode { target, source },
        RequestError::Interrupted => IpvsError::Interrupted { target },
    }
}

/// The real servers of one virtual server (`family`: its address family).
async fn list_destinations(
    socket: &mut NetlinkSocket,
    family_id: u16,
    key: VirtualServerKey,
    family: u16,
) -> Result<BTreeMap<RealServerKey, ObservedRealServer>, IpvsError> {
    let destinations = execute(socket, family_id, Request::ListDestinations(key)).await?;
    destinations
        .iter()
        .map(|reply| decode_destination(&reply.payload, family).map(observed_real_server))
        .collect::<Result<_, _>>()
        .map_err(|source| IpvsError::Decode {
            target: Target::VirtualServer(key),
            source,
        })
}

fn observed_real_server(entry: DestinationEntry) -> (RealServerKey, ObservedRealServer) {
    let key = RealServerKey {
        address: entry.address,
        port: entry.port,
    };
    let observed = ObservedRealServer {
        weight: entry.weight,
        active_connections: entry.active_connections,
        inactive_connections: entry.inactive_connections,
        masquerade: entry.forwarding == CONN_F_MASQ,
    };
    (key, observed)
}

impl Ipvs for NetlinkIpvs {
    async fn list_virtual_servers(
        &self,
    ) -> Result<BTreeMap<VirtualServerKey, ObservedVirtualServer>, IpvsError> {
        // One lock for the whole listing keeps other requests from interleaving with it.
        let mut socket = self.socket.lock().await;
        let services = execute(&mut socket, self.family_id, Request::ListServices).await?;
        let mut listing = BTreeMap::new();
        for reply in services {
            let entry = decode_service(&reply.payload).map_err(|source| IpvsError::Decode {
                target: Target::Listing,
                source,
            })?;
            let Some(key) = entry.key() else {
                debug!(
                    protocol = entry.protocol,
                    firewall_mark = entry.firewall_mark,
                    "ignoring a virtual server that is not address-keyed TCP, UDP or SCTP"
                );
                continue;
            };
            let real_servers =
                list_destinations(&mut socket, self.family_id, key, entry.family).await?;
            listing.insert(
                key,
                ObservedVirtualServer {
                    params: entry.params(),
                    stats: entry.stats,
                    real_servers,
                },
            );
        }
        trace!(virtual_servers = listing.len(), "listed IPVS");
        Ok(listing)
    }

    async fn list_real_servers(
        &self,
        key: VirtualServerKey,
    ) -> Result<BTreeMap<RealServerKey, ObservedRealServer>, IpvsError> {
        let mut socket = self.socket.lock().await;
        let family = codec::family(key.address);
        list_destinations(&mut socket, self.family_id, key, family).await
    }

    async fn list_stats(
        &self,
    ) -> Result<BTreeMap<VirtualServerKey, VirtualServerStats>, IpvsError> {
        let services = self.execute(Request::ListServices).await?;
        let mut stats = BTreeMap::new();
        for reply in services {
            let entry = decode_service(&reply.payload).map_err(|source| IpvsError::Decode {
                target: Target::Listing,
                source,
            })?;
            if let Some(key) = entry.key() {
                stats.insert(key, entry.stats);
            }
        }
        Ok(stats)
    }

    async fn add_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> Result<(), IpvsError> {
        debug!(virtual_server = %key, scheduler = params.scheduler.kernel_name(), persistence = ?params.persistence, "adding virtual server");
        self.execute(Request::NewService(key, params.clone()))
            .await
            .map(drop)
    }

    async fn update_virtual_server(
        &self,
        key: VirtualServerKey,
        params: &VirtualServerParams,
    ) -> Result<(), IpvsError> {
        debug!(virtual_server = %key, scheduler = params.scheduler.kernel_name(), persistence = ?params.persistence, "updating virtual server");
        self.execute(Request::SetService(key, params.clone()))
            .await
            .map(drop)
    }

    async fn delete_virtual_server(&self, key: VirtualServerKey) -> Result<(), IpvsError> {
        debug!(virtual_server = %key, "deleting virtual server");
        self.execute(Request::DelService(key)).await.map(drop)
    }

    async fn add_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> Result<(), IpvsError> {
        debug!(%virtual_server, %real_server, weight, "adding real server");
        self.execute(Request::NewDestination(virtual_server, real_server, weight))
            .await
            .map(drop)
    }

    async fn update_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
        weight: u32,
    ) -> Result<(), IpvsError> {
        debug!(%virtual_server, %real_server, weight, "updating real server");
        self.execute(Request::SetDestination(virtual_server, real_server, weight))
            .await
            .map(drop)
    }

    async fn delete_real_server(
        &self,
        virtual_server: VirtualServerKey,
        real_server: RealServerKey,
    ) -> Result<(), IpvsError> {
        debug!(%virtual_server, %real_server, "deleting real server");
        self.execute(Request::DelDestination(virtual_server, real_server))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::{Protocol, Scheduler};

    fn vs() -> VirtualServerKey {
        VirtualServerKey {
            protocol: Protocol::Udp,
            address: "10.96.0.10".parse().unwrap(),
            port: 53,
        }
    }

    fn rs() -> RealServerKey {
        RealServerKey {
            address: "10.244.1.5".parse().unwrap(),
            port: 53,
        }
    }

    #[test]
    fn errnos_map_to_what_the_kernel_meant() {
        let params = VirtualServerParams {
            scheduler: Scheduler::MaglevHashing,
            persistence: None,
        };
        let new_service = Request::NewService(vs(), params);
        let new_dest = Request::NewDestination(vs(), rs(), 1);
        let del_dest = Request::DelDestination(vs(), rs());
        assert!(matches!(
            classify(libc::EEXIST, &new_service),
            IpvsError::AlreadyExists {
                target: Target::VirtualServer(_)
            }
        ));
        assert!(matches!(
            classify(libc::EEXIST, &new_dest),
            IpvsError::AlreadyExists {
                target: Target::RealServer { .. }
            }
        ));
        assert!(matches!(
            classify(libc::ENOENT, &new_service),
            IpvsError::UnknownScheduler {
                scheduler: "mh",
                ..
            }
        ));
        assert!(matches!(
            classify(libc::ENOENT, &del_dest),
            IpvsError::NotFound {
                target: Target::RealServer { .. }
            }
        ));
        assert!(matches!(
            classify(libc::ESRCH, &del_dest),
            IpvsError::NotFound {
                target: Target::VirtualServer(_)
            }
        ));
        assert!(matches!(
            classify(libc::ESRCH, &Request::DelService(vs())),
            IpvsError::NotFound {
                target: Target::VirtualServer(_)
            }
        ));
        assert!(matches!(
            classify(libc::EPERM, &Request::ListServices),
            IpvsError::PermissionDenied {
                target: Target::Listing
            }
        ));
        assert!(matches!(
            classify(libc::ERANGE, &new_dest),
            IpvsError::Rejected { .. }
        ));
    }
}
