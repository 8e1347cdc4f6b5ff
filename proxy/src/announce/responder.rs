//! Answers ARP requests and Neighbor Solicitations for the addresses this node announces, and
//! announces an address it takes over.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::frame::{self, Mac};
use super::socket::PacketSocket;

/// Room for any frame the filter passes on a standard MTU (larger ones are truncated, and a
/// truncated query is ignored).
const FRAME_BUFFER: usize = 1600;
/// RFC 5227's ANNOUNCE_NUM and ANNOUNCE_INTERVAL: a takeover is announced twice, 2 s apart,
/// in case the first frame is lost.
const ANNOUNCEMENTS: u32 = 2;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

/// The addresses this node answers for, as the announcer publishes them.
pub type Announced = watch::Receiver<BTreeSet<IpAddr>>;

/// Answers queries for `announced` until the socket fails.
pub async fn answer(socket: Arc<PacketSocket>, mac: Mac, announced: Announced) -> std::io::Error {
    let mut buffer = vec![0; FRAME_BUFFER];
    loop {
        let length = match socket.receive(&mut buffer).await {
            Ok(length) => length,
            Err(error) => return error,
        };
        let Some(query) = frame::parse(&buffer[..length]) else {
            continue;
        };
        if !announced.borrow().contains(&query.target()) {
            continue;
        }
        debug!(address = %query.target(), "answering");
        if let Err(error) = socket.send(&frame::reply(&query, mac)) {
            warn!(address = %query.target(), %error, "cannot send the answer");
        }
    }
}

/// Tells the segment that `address` moved here: a gratuitous ARP or an unsolicited Neighbor
/// Advertisement, repeated while this node still announces it.
pub async fn announce_takeover(
    socket: Arc<PacketSocket>,
    mac: Mac,
    address: IpAddr,
    announced: Announced,
) {
    let announcement = frame::announcement(address, mac);
    for round in 0..ANNOUNCEMENTS {
        if round > 0 {
            tokio::time::sleep(ANNOUNCE_INTERVAL).await;
        }
        if !announced.borrow().contains(&address) {
            return;
        }
        if let Err(error) = socket.send(&announcement) {
            warn!(%address, %error, "cannot announce the takeover");
        }
    }
}
