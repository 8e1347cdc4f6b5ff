//! `Conntrack` over ctnetlink.

use netlink_sys::protocols::NETLINK_NETFILTER;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::codec::{decode_flow, delete_request, dump_request};
use super::{Conntrack, ConntrackError, FlowFilter};
use crate::ipvs::socket::{Kind, NetlinkSocket, RequestError};
use crate::model::types::{RealServerKey, VirtualServerKey};

const DUMP: &str = "conntrack dump";
const DELETE: &str = "conntrack delete";

/// The kernel's conntrack table, in the network namespace the socket was opened in.
pub struct NetlinkConntrack {
    socket: Mutex<NetlinkSocket>,
}

impl NetlinkConntrack {
    /// Opens a ctnetlink socket in the calling thread's network namespace; needs a Tokio runtime.
    pub fn connect() -> Result<Self, ConntrackError> {
        let socket =
            NetlinkSocket::open(NETLINK_NETFILTER).map_err(|source| ConntrackError::Socket {
                operation: "connect",
                source,
            })?;
        Ok(Self {
            socket: Mutex::new(socket),
        })
    }

    async fn delete_matching(&self, filter: FlowFilter) -> Result<usize, ConntrackError> {
        let mut socket = self.socket.lock().await;
        let replies = socket
            .request(dump_request(filter.is_ipv4()), Kind::Dump)
            .await
            .map_err(|error| request_error(error, DUMP))?;
        let mut undecodable = 0;
        let mut deleted = 0;
        for reply in &replies {
            let flow = match decode_flow(reply.message_type, &reply.payload) {
                Ok(Some(flow)) => flow,
                Ok(None) => continue,
                Err(error) => {
                    undecodable += 1;
                    debug!(%error, "skipping an undecodable conntrack entry");
                    continue;
                }
            };
            if !filter.matches(&flow) {
                continue;
            }
            match socket.request(delete_request(&flow), Kind::Do).await {
                Ok(_) => deleted += 1,
                // It expired or someone else deleted it between the dump and now.
                Err(RequestError::Kernel(libc::ENOENT)) => {}
                Err(error) => return Err(request_error(error, DELETE)),
            }
        }
        if undecodable > 0 {
            warn!(
                undecodable,
                "some conntrack entries could not be decoded and were not considered"
            );
        }
        debug!(
            ?filter,
            entries = replies.len(),
            deleted,
            "deleted stale UDP conntrack entries"
        );
        Ok(deleted)
    }
}

fn request_error(error: RequestError, operation: &'static str) -> ConntrackError {
    match error {
        RequestError::Kernel(libc::EPERM) => ConntrackError::PermissionDenied { operation },
        RequestError::Kernel(errno) => ConntrackError::Rejected {
            operation,
            source: std::io::Error::from_raw_os_error(errno),
        },
        RequestError::Io(source) => ConntrackError::Socket { operation, source },
        RequestError::Decode(source) => ConntrackError::Decode { operation, source },
        // ctnetlink does not flag its dumps today; if it starts to, the next sync retries.
        RequestError::Interrupted => ConntrackError::Rejected {
            operation,
            source: std::io::Error::other("dump interrupted"),
        },
    }
}

impl Conntrack for NetlinkConntrack {
    async fn delete_udp_flows_to_backend(
        &self,
        frontend: VirtualServerKey,
        backend: RealServerKey,
    ) -> Result<usize, ConntrackError> {
        self.delete_matching(FlowFilter::udp(frontend, Some(backend))?)
            .await
    }

    async fn delete_udp_flows_to_frontend(
        &self,
        frontend: VirtualServerKey,
    ) -> Result<usize, ConntrackError> {
        self.delete_matching(FlowFilter::udp(frontend, None)?).await
    }
}
