//! The packet edge: an `AF_PACKET` socket on one interface that receives ARP requests and
//! Neighbor Solicitations, and sends whole Ethernet frames.
//!
//! The kernel cannot answer for LoadBalancer IPs: in IPVS mode they sit on `ferry-ipvs0`
//! under strict ARP (`arp_ignore=1`), in nftables mode on no interface at all. So the proxy
//! answers itself, as MetalLB's speaker does. A classic BPF filter keeps every other frame in
//! the kernel; the raw `libc` calls are few and confined to this file (`nix` would need its
//! `socket` feature, which this workspace does not build).

use std::io;
use std::mem::{size_of, size_of_val};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::interface::Interface;

/// `ETH_P_ALL` in network byte order, as `socket` and `bind` want it.
const ALL_PROTOCOLS: u16 = (libc::ETH_P_ALL as u16).to_be();

/// Passes ARP, and ICMPv6 Neighbor Solicitations without IPv6 extension headers (RFC 4861
/// senders use none); drops everything else in the kernel.
const FILTER: [libc::sock_filter; 9] = [
    instruction(0x28, 0, 0, 12),     // ldh [12]            ethertype
    instruction(0x15, 5, 0, 0x0806), // jeq ARP             -> accept
    instruction(0x15, 0, 5, 0x86dd), // jeq IPv6, else      -> drop
    instruction(0x30, 0, 0, 20),     // ldb [20]            next header
    instruction(0x15, 0, 3, 58),     // jeq ICMPv6, else    -> drop
    instruction(0x30, 0, 0, 54),     // ldb [54]            ICMPv6 type
    instruction(0x15, 0, 1, 135),    // jeq solicitation, else -> drop
    instruction(0x06, 0, 0, 0xffff), // accept
    instruction(0x06, 0, 0, 0),      // drop
];

const fn instruction(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

impl PacketSocket {
    /// Opens the socket on `interface`, filtered, non-blocking, and receiving all multicast
    /// (Neighbor Solicitations go to per-address solicited-node groups).
    pub fn open(interface: &Interface) -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ALL_PROTOCOLS),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let program = libc::sock_fprog {
            len: FILTER.len() as u16,
            filter: FILTER.as_ptr().cast_mut(),
        };
        set_option(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)?;
        let membership = libc::packet_mreq {
            mr_ifindex: interface.index,
            mr_type: libc::PACKET_MR_ALLMULTI as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        set_option(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &membership,
        )?;
        let address = link_address(interface.index);
        // SAFETY: `address` is a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of_val(&address) as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is owned by the AsyncFd and closed only when it drops.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Self { fd })
    }

    /// The next frame that arrived on the interface (the filter passed it; frames this host
    /// sent are skipped).
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| receive_incoming(fd.get_ref(), buffer)) {
                Ok(Ok(Some(length))) => return Ok(length),
                Ok(Ok(None)) => continue,
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one whole Ethernet frame. Frames are small and the socket's buffer is empty
    /// between bursts, so a full buffer is an error rather than a wait.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for its length; the socket is bound, so no address.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// One frame; `None` for a frame going out (this host's own replies, seen on the way out).
fn receive_incoming(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_length = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the buffer and the address are valid for the lengths given.
    let received = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
            (&raw mut from).cast(),
            &raw mut from_length,
        )
    };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
    // `received` is non-negative here.
    Ok((!outgoing).then_some(received as usize))
}

fn link_address(index: i32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ALL_PROTOCOLS;
    address.sll_ifindex = index;
    address
}

fn set_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T for the option and lives across the call.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
