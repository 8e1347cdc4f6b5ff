//! ARP and IPv6 Neighbor Discovery frames: the queries the responder answers and the frames it
//! sends.
//!
//! Hand-written rather than `pnet_packet` or `etherparse`: the proxy needs exactly four
//! fixed-layout frames (ARP request in, ARP reply and announcement out, Neighbor Solicitation
//! in, Neighbor Advertisement out), about 150 lines with their checksum, while those crates
//! bring a proc-macro build (pnet) or a general parser for everything else on the wire. The
//! parser is total: any byte string yields a query or `None`, never a panic (a property test
//! feeds it garbage and truncations).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub type Mac = [u8; 6];

const BROADCAST: Mac = [0xff; 6];
/// `ff02::1` (all nodes) on Ethernet.
const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERNET_HEADER: usize = 14;
const ARP_LENGTH: usize = 28;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IPV6_HEADER: usize = 40;
const NEXT_HEADER_ICMPV6: u8 = 58;
/// RFC 4861: Neighbor Discovery messages must come with hop limit 255 (they never crossed a
/// router).
const ND_HOP_LIMIT: u8 = 255;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Type, code, checksum, reserved, target.
const ND_MESSAGE: usize = 24;
const OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
const OPTION_TARGET_LINK_ADDRESS: u8 = 2;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// Someone asks who has an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Arp {
        sender_mac: Mac,
        sender_ip: Ipv4Addr,
        target: Ipv4Addr,
    },
    NeighborSolicitation {
        /// The source link-layer option, or the Ethernet source without it.
        sender_mac: Mac,
        sender_ip: Ipv6Addr,
        target: Ipv6Addr,
    },
}

impl Query {
    /// The address asked for.
    pub fn target(&self) -> IpAddr {
        match self {
            Query::Arp { target, .. } => IpAddr::V4(*target),
            Query::NeighborSolicitation { target, .. } => IpAddr::V6(*target),
        }
    }
}

/// The query a frame carries, if it is one Ferry answers: an ARP request that is not itself an
/// announcement, or a Neighbor Solicitation that passes RFC 4861's checks and is not a
/// duplicate address probe (source `::`).
pub fn parse(frame: &[u8]) -> Option<Query> {
    let ethertype = u16::from_be_bytes(field(frame, 12)?);
    let payload = frame.get(ETHERNET_HEADER..)?;
    match ethertype {
        ETHERTYPE_ARP => parse_arp(payload),
        ETHERTYPE_IPV6 => parse_solicitation(payload, field(frame, 6)?),
        _ => None,
    }
}

fn parse_arp(arp: &[u8]) -> Option<Query> {
    let header: [u8; 8] = field(arp, 0)?;
    let ethernet_ipv4 = [0, 1, 0x08, 0x00, 6, 4];
    let operation = u16::from_be_bytes([header[6], header[7]]);
    if header[..6] != ethernet_ipv4 || operation != ARP_REQUEST {
        return None;
    }
    let sender_ip = Ipv4Addr::from(field::<4>(arp, 14)?);
    let target = Ipv4Addr::from(field::<4>(arp, 24)?);
    // Sender and target the same: a gratuitous announcement, not a question.
    (sender_ip != target).then_some(Query::Arp {
        sender_mac: field(arp, 8)?,
        sender_ip,
        target,
    })
}

fn parse_solicitation(packet: &[u8], ethernet_source: Mac) -> Option<Query> {
    let header: [u8; IPV6_HEADER] = field(packet, 0)?;
    let payload_length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let icmp = packet.get(IPV6_HEADER..IPV6_HEADER + payload_length)?;
    let well_formed = header[0] >> 4 == 6
        && header[6] == NEXT_HEADER_ICMPV6
        && header[7] == ND_HOP_LIMIT
        && icmp.len() >= ND_MESSAGE
        && icmp[0] == NEIGHBOR_SOLICITATION
        && icmp[1] == 0;
    if !well_formed {
        return None;
    }
    let sender_ip = Ipv6Addr::from(field::<16>(&header, 8)?);
    let destination = Ipv6Addr::from(field::<16>(&header, 24)?);
    let target = Ipv6Addr::from(field::<16>(icmp, 8)?);
    if sender_ip.is_unspecified() || target.is_multicast() {
        return None;
    }
    if checksum(sender_ip, destination, icmp) != 0 {
        return None;
    }
    let sender_mac = source_link_address(icmp.get(ND_MESSAGE..)?)?.unwrap_or(ethernet_source);
    Some(Query::NeighborSolicitation {
        sender_mac,
        sender_ip,
        target,
    })
}

/// The source link-layer address option; `None` (the frame is dropped) when an option has
/// length 0, which RFC 4861 says to discard.
fn source_link_address(mut options: &[u8]) -> Option<Option<Mac>> {
    while let [kind, units, ..] = *options {
        let length = usize::from(units) * 8;
        if length == 0 {
            return None;
        }
        let option = options.get(..length)?;
        if kind == OPTION_SOURCE_LINK_ADDRESS {
            return Some(Some(field(option, 2)?));
        }
        options = &options[length..];
    }
    Some(None)
}

/// The answer to `query`, claiming its target for `own_mac`.
pub fn reply(query: &Query, own_mac: Mac) -> Vec<u8> {
    match *query {
        Query::Arp {
            sender_mac,
            sender_ip,
            target,
        } => arp(
            ARP_REPLY, own_mac, target, sender_mac, sender_ip, sender_mac,
        ),
        Query::NeighborSolicitation {
            sender_mac,
            sender_ip,
            target,
        } => advertisement(own_mac, target, sender_mac, sender_ip, FLAG_SOLICITED),
    }
}

/// Tells the segment that `address` is now at `own_mac`: a gratuitous ARP request (RFC 5227's
/// announcement) or an unsolicited Neighbor Advertisement to all nodes.
pub fn announcement(address: IpAddr, own_mac: Mac) -> Vec<u8> {
    match address {
        IpAddr::V4(address) => arp(ARP_REQUEST, own_mac, address, [0; 6], address, BROADCAST),
        IpAddr::V6(address) => advertisement(own_mac, address, ALL_NODES_MAC, ALL_NODES, 0),
    }
}

fn arp(
    operation: u16,
    own_mac: Mac,
    own_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
    destination: Mac,
) -> Vec<u8> {
    let mut frame = ethernet(destination, own_mac, ETHERTYPE_ARP, ARP_LENGTH);
    frame.extend_from_slice(&[0, 1]);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&operation.to_be_bytes());
    frame.extend_from_slice(&own_mac);
    frame.extend_from_slice(&own_ip.octets());
    frame.extend_from_slice(&target_mac);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// A Neighbor Advertisement for `target`, sent from `target` itself: it is on no interface
/// of the node, and the receivers only check that the source is not multicast.
fn advertisement(
    own_mac: Mac,
    target: Ipv6Addr,
    destination_mac: Mac,
    destination: Ipv6Addr,
    solicited: u8,
) -> Vec<u8> {
    let mut icmp = vec![
        NEIGHBOR_ADVERTISEMENT,
        0,
        0,
        0,
        solicited | FLAG_OVERRIDE,
        0,
        0,
        0,
    ];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_ADDRESS, 1]);
    icmp.extend_from_slice(&own_mac);
    let sum = checksum(target, destination, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut frame = ethernet(
        destination_mac,
        own_mac,
        ETHERTYPE_IPV6,
        IPV6_HEADER + icmp.len(),
    );
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    // At most a few dozen bytes: the length always fits.
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[NEXT_HEADER_ICMPV6, ND_HOP_LIMIT]);
    frame.extend_from_slice(&target.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&icmp);
    frame
}

fn ethernet(destination: Mac, source: Mac, ethertype: u16, payload: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER + payload);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// The ICMPv6 checksum over the pseudo-header and `message`: 0 for a message whose checksum
/// field is right, the value to store for one whose field is 0.
fn checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let pseudo = [
        &source.octets()[..],
        &destination.octets()[..],
        &length.to_be_bytes()[..],
        &[0, 0, 0, NEXT_HEADER_ICMPV6][..],
    ];
    let mut sum: u32 = 0;
    for part in pseudo.into_iter().chain([message]) {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // `sum` fits 16 bits after folding.
    !(sum as u16)
}

/// `N` bytes at `offset`, if the frame is long enough.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset + N)?.try_into().ok()
}

#[cfg(test)]
mod tests;
