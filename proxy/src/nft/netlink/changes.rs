//! Which tables other programs changed while Ferry read its own.
//!
//! A reading is one ruleset generation's, but the generation belongs to the whole network
//! namespace: iptables-nft rules a CNI plugin adds per pod, or another agent's table, bump it
//! too. At 10k Services a reading takes seconds, so on a busy node every attempt would see a
//! new generation and the full sync would never succeed. nf_tables announces each committed
//! change to `NFNLGRP_NFTABLES` listeners, naming the table it touched, so a reading whose
//! generations differ is still whole when no announcement names Ferry's table.

use std::io;

use netlink_packet_core::NetlinkBuffer;
use netlink_sys::Socket;

use super::attr::Attrs;
use super::socket::size_buffer;
use super::uapi::{NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFNLGRP_NFTABLES, msg};
use crate::nft::NftError;

/// Room for the announcements of a large foreign transaction; beyond it the kernel drops
/// them and the watch reports a possible change.
const ANNOUNCEMENT_BUFFER: usize = 8 * 1024 * 1024;
const DATAGRAM: usize = 256 * 1024;

/// A socket that listens to nf_tables' change announcements between [`ChangeWatch::start`]
/// and [`ChangeWatch::touched`]: listening all the time would make the kernel build an
/// announcement for every object of every sync.
pub struct ChangeWatch {
    socket: Socket,
}

impl ChangeWatch {
    /// A socket in the calling thread's network namespace, which must be the one whose
    /// ruleset is read (a socket stays in the namespace it was opened in).
    pub fn open() -> Result<Self, NftError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        size_buffer(
            &socket,
            [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF],
            ANNOUNCEMENT_BUFFER,
        );
        socket.set_non_blocking(true).map_err(NftError::Socket)?;
        Ok(Self { socket })
    }

    /// Starts listening, forgetting what an earlier, abandoned watch left queued.
    pub fn start(&self) -> Result<(), NftError> {
        self.socket
            .add_membership(NFNLGRP_NFTABLES)
            .map_err(NftError::Socket)?;
        self.drain(|_| {}).map(|_| ())
    }

    /// Stops listening and says whether a change since [`ChangeWatch::start`] may have
    /// touched table `table` of `family`: one was announced, or announcements were lost or
    /// unreadable.
    pub fn touched(&self, family: u8, table: &str) -> Result<bool, NftError> {
        let mut touched = false;
        let lost =
            self.drain(|datagram| touched |= announces_change_to(datagram, family, table))?;
        self.socket
            .drop_membership(NFNLGRP_NFTABLES)
            .map_err(NftError::Socket)?;
        Ok(touched || lost)
    }

    /// Passes every queued datagram to `each`; true when the kernel dropped some.
    fn drain(&self, mut each: impl FnMut(&[u8])) -> Result<bool, NftError> {
        let mut lost = false;
        loop {
            let mut buffer = Vec::with_capacity(DATAGRAM);
            match self.socket.recv(&mut buffer, 0) {
                Ok(_) => each(&buffer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(lost),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) => return Err(NftError::Socket(e)),
            }
        }
    }
}

/// Whether a datagram of announcements names table `table` of `family`; true as well when it
/// cannot be read, since then it might.
pub fn announces_change_to(datagram: &[u8], family: u8, table: &str) -> bool {
    let mut offset = 0;
    while offset < datagram.len() {
        let Ok(message) = NetlinkBuffer::new_checked(&datagram[offset..]) else {
            return true;
        };
        let kind = message.message_type();
        if kind >> 8 == NFNL_SUBSYS_NFTABLES
            && kind & 0xff != u16::from(msg::NEWGEN)
            && names_table(message.payload(), family, table)
        {
            return true;
        }
        offset += (message.length() as usize).next_multiple_of(4).max(16);
    }
    false
}

/// The payload is `nfgenmsg` (family first), then attributes; every announcement but
/// `NEWGEN` carries its table's name as attribute 1.
fn names_table(payload: &[u8], family: u8, table: &str) -> bool {
    const TABLE: u16 = 1;
    let Some((&announced_family, attributes)) = payload.split_first() else {
        return true;
    };
    let Some(attributes) = attributes.get(3..) else {
        return true;
    };
    match Attrs::parse(attributes).and_then(|attrs| attrs.string(TABLE, "table")) {
        Ok(Some(name)) => announced_family == family && name == table,
        Ok(None) | Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::netlink::uapi::{AF_UNSPEC, NFPROTO_INET, NFTA_RULE_TABLE};

    const NFPROTO_IPV4: u8 = 2;

    /// One announcement as the kernel frames it: netlink header, nfgenmsg, attributes.
    fn announcement(kind: u8, family: u8, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 7];
        for (attribute, value) in attributes {
            let length = 4 + value.len();
            payload.extend_from_slice(&(length as u16).to_ne_bytes());
            payload.extend_from_slice(&attribute.to_ne_bytes());
            payload.extend_from_slice(value);
            payload.resize(payload.len().next_multiple_of(4), 0);
        }
        let mut message = Vec::new();
        message.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind)).to_ne_bytes());
        message.extend_from_slice(&[0; 10]);
        message.extend_from_slice(&payload);
        message
    }

    fn rule_in(family: u8, table: &str) -> Vec<u8> {
        let name = format!("{table}\0");
        announcement(msg::NEWRULE, family, &[(NFTA_RULE_TABLE, name.as_bytes())])
    }

    #[test]
    fn a_change_to_another_table_leaves_the_reading_whole() {
        let mut datagram = rule_in(NFPROTO_IPV4, "kube-proxy");
        datagram.extend(rule_in(NFPROTO_INET, "filter"));
        datagram.extend(announcement(
            msg::NEWGEN,
            AF_UNSPEC,
            &[(1, &7u32.to_be_bytes())],
        ));
        assert!(!announces_change_to(&datagram, NFPROTO_INET, "ferry"));
    }

    #[test]
    fn a_change_to_ferrys_table_tears_the_reading() {
        let mut datagram = rule_in(NFPROTO_IPV4, "kube-proxy");
        datagram.extend(announcement(
            msg::DELTABLE,
            NFPROTO_INET,
            &[(1, b"ferry\0")],
        ));
        assert!(announces_change_to(&datagram, NFPROTO_INET, "ferry"));
    }

    #[test]
    fn a_table_of_the_same_name_in_another_family_is_another_table() {
        assert!(!announces_change_to(
            &rule_in(NFPROTO_IPV4, "ferry"),
            NFPROTO_INET,
            "ferry"
        ));
    }

    #[test]
    fn what_cannot_be_read_counts_as_a_change() {
        assert!(announces_change_to(&[1, 2, 3], NFPROTO_INET, "ferry"));
        let nameless = announcement(msg::NEWCHAIN, NFPROTO_INET, &[]);
        assert!(announces_change_to(&nameless, NFPROTO_INET, "ferry"));
        let mut truncated = rule_in(NFPROTO_IPV4, "kube-proxy");
        truncated.truncate(22);
        assert!(announces_change_to(&truncated, NFPROTO_INET, "ferry"));
    }
}
