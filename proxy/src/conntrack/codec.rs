//! ctnetlink requests and replies, through `netlink-packet-netfilter`'s conntrack types.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{DecodeError, DefaultNla, Nla, ParseableParametrized};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use super::{Flow, FlowTuple};

/// `CTA_ZONE` (`enum ctattr_type` in `nfnetlink_conntrack.h`): a `__be16`.
const CTA_ZONE: u16 = 18;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`: how the kernel sends dumped entries.
const CT_NEW_MESSAGE: u16 = 1 << 8;
/// `NFNETLINK_V0`, the only nfnetlink version.
const NFNETLINK_V0: u8 = 0;

fn header(ipv4: bool) -> NetfilterHeader {
    let family = if ipv4 {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    NetfilterHeader::new(family, NFNETLINK_V0, 0)
}

/// `IPCTNL_MSG_CT_GET` as a dump of one address family.
pub fn dump_request(ipv4: bool) -> NetfilterMessage {
    NetfilterMessage::new(header(ipv4), ConntrackMessage::Get(vec![]))
}

/// `IPCTNL_MSG_CT_DELETE` of the entry whose original tuple (and zone) is `flow`'s.
pub fn delete_request(flow: &Flow) -> NetfilterMessage {
    let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(tuple_attributes(
        flow.protocol,
        &flow.original,
    ))];
    if flow.zone != 0 {
        let zone = DefaultNla::new(CTA_ZONE, flow.zone.to_be_bytes().to_vec());
        attributes.push(ConntrackAttribute::Other(zone));
    }
    NetfilterMessage::new(
        header(flow.original.source.is_ipv4()),
        ConntrackMessage::Delete(attributes),
    )
}

fn tuple_attributes(protocol: u8, tuple: &FlowTuple) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(tuple.source.ip()),
            IPTuple::DestinationAddress(tuple.destination.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(protocol.into()),
            ProtoTuple::SourcePort(tuple.source.port()),
            ProtoTuple::DestinationPort(tuple.destination.port()),
        ]),
    ]
}

/// Decodes one dumped entry (`payload` is everything after the netlink header). `None` for
/// entries without ports (ICMP and the like) and for other nfnetlink messages.
pub fn decode_flow(message_type: u16, payload: &[u8]) -> Result<Option<Flow>, DecodeError> {
    // Only conntrack entries reach the crate's parser: its nftables parsers can panic on
    // malformed input (found by fuzzing), and nothing else belongs in a conntrack dump.
    if message_type != CT_NEW_MESSAGE {
        return Ok(None);
    }
    let message = NetfilterMessage::parse_with_param(payload, message_type)?;
    let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = message.inner else {
        return Ok(None);
    };
    let mut original = None;
    let mut reply = None;
    let mut zone = 0;
    for attribute in &attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuples) => original = Some(parse_tuple(tuples)?),
            ConntrackAttribute::CtaTupleReply(tuples) => reply = Some(parse_tuple(tuples)?),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => zone = parse_zone(nla)?,
            _ => {}
        }
    }
    let (Some(original), Some(reply)) = (original, reply) else {
        return Err(DecodeError::from("conntrack entry without both tuples"));
    };
    let (Some((protocol, original)), Some((_, reply))) = (original, reply) else {
        return Ok(None);
    };
    Ok(Some(Flow {
        protocol,
        original,
        reply,
        zone,
    }))
}

/// A tuple's protocol and endpoints, or `None` when it has no ports.
fn parse_tuple(tuples: &[Tuple]) -> Result<Option<(u8, FlowTuple)>, DecodeError> {
    let (mut source, mut destination) = (None, None);
    let (mut protocol, mut source_port, mut destination_port) = (None, None, None);
    for tuple in tuples {
        match tuple {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(address) => source = Some(*address),
                        IPTuple::DestinationAddress(address) => destination = Some(*address),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for proto in protos {
                    match proto {
                        ProtoTuple::Protocol(number) => protocol = Some(u8::from(*number)),
                        ProtoTuple::SourcePort(port) => source_port = Some(*port),
                        ProtoTuple::DestinationPort(port) => destination_port = Some(*port),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (Some(source), Some(destination)): (Option<IpAddr>, Option<IpAddr>) = (source, destination)
    else {
        return Err(DecodeError::from("conntrack tuple without addresses"));
    };
    let protocol = protocol.ok_or("conntrack tuple without a protocol")?;
    let (Some(source_port), Some(destination_port)) = (source_port, destination_port) else {
        return Ok(None);
    };
    Ok(Some((
        protocol,
        FlowTuple {
            source: SocketAddr::new(source, source_port),
            destination: SocketAddr::new(destination, destination_port),
        },
    )))
}

fn parse_zone(nla: &DefaultNla) -> Result<u16, DecodeError> {
    let mut value = [0; 2];
    if nla.value_len() != value.len() {
        return Err(DecodeError::from("CTA_ZONE is not 2 bytes"));
    }
    nla.emit_value(&mut value);
    Ok(u16::from_be_bytes(value))
}

#[cfg(test)]
mod tests;
