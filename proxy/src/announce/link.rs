//! The responder's side of the announcer: the socket on the interface, the task answering on
//! it, and the announcements of takeovers.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

use super::interface::{self, Interface};
use super::responder;
use super::socket::PacketSocket;

pub(super) struct Link {
    pub(super) socket: Arc<PacketSocket>,
    pub(super) interface: Interface,
    pub(super) responder: JoinHandle<()>,
}

impl Link {
    /// Tells the segment these addresses are here now (in the background: repeated).
    pub(super) fn announce_takeovers(
        &self,
        addresses: &[IpAddr],
        announced: &watch::Sender<BTreeSet<IpAddr>>,
    ) {
        for address in addresses {
            tokio::spawn(responder::announce_takeover(
                self.socket.clone(),
                self.interface.mac,
                *address,
                announced.subscribe(),
            ));
        }
    }
}

/// Opens the socket on the configured interface (or the one holding a node address) and
/// starts answering on it.
pub(super) fn open(
    configured: Option<&str>,
    node_addresses: &[IpAddr],
    announced: responder::Announced,
) -> Result<Link, String> {
    let interface = interface::find(configured, node_addresses).map_err(|e| e.to_string())?;
    let socket = PacketSocket::open(&interface)
        .map_err(|e| format!("AF_PACKET socket on {}: {e}", interface.name))?;
    let socket = Arc::new(socket);
    let answering = responder::answer(socket.clone(), interface.mac, announced);
    let name = interface.name.clone();
    let responder = tokio::spawn(async move {
        let error = answering.await;
        error!(interface = name, %error, "the ARP/NDP responder stopped; reopening");
    });
    Ok(Link {
        socket,
        interface,
        responder,
    })
}
