//! The IPVS generic-netlink messages Ferry sends and reads, laid out as
//! `include/uapi/linux/ip_vs.h` and `net/netfilter/ipvs/ip_vs_ctl.c` define them.
//!
//! Byte order is the kernel's, attribute by attribute: addresses and ports are network order
//! (`__be32`/`__be16` in the kernel structs), everything else is host order. The persistence
//! netmask is the odd one: a `__be32` mask for IPv4 but a plain prefix length for IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, Emitable, NLA_F_NESTED, NLA_HEADER_SIZE, Nla, NlaBuffer, NlasIterator, parse_u16,
    parse_u16_be, parse_u32, parse_u64,
};
use netlink_packet_generic::constants::GENL_HDRLEN;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use super::VirtualServerStats;
use crate::model::types::{
    Protocol, RealServerKey, Scheduler, VirtualServerKey, VirtualServerParams,
};

const FAMILY_NAME: &str = "IPVS";
const FAMILY_VERSION: u8 = 1;

const CMD_NEW_SERVICE: u8 = 1;
const CMD_SET_SERVICE: u8 = 2;
const CMD_DEL_SERVICE: u8 = 3;
const CMD_GET_SERVICE: u8 = 4;
const CMD_NEW_DEST: u8 = 5;
const CMD_SET_DEST: u8 = 6;
const CMD_DEL_DEST: u8 = 7;
const CMD_GET_DEST: u8 = 8;

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;

const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const SVC_ATTR_STATS: u16 = 10;
const SVC_ATTR_PE_NAME: u16 = 11;
const SVC_ATTR_STATS64: u16 = 12;

const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;

const STATS_ATTR_CONNS: u16 = 1;
const STATS_ATTR_INPKTS: u16 = 2;
const STATS_ATTR_OUTPKTS: u16 = 3;
const STATS_ATTR_INBYTES: u16 = 4;
const STATS_ATTR_OUTBYTES: u16 = 5;

const SVC_F_PERSISTENT: u32 = 0x1;
/// Set by the kernel on every hashed service; it says nothing about the configuration.
const SVC_F_HASHED: u32 = 0x2;
/// `IP_VS_CONN_F_MASQ`, the only forwarding method Ferry uses.
pub(crate) const CONN_F_MASQ: u32 = 0x0;
const CONN_F_FWD_MASK: u32 = 0x7;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// One IPVS request, as Ferry sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ListServices,
    ListDestinations(VirtualServerKey),
    NewService(VirtualServerKey, VirtualServerParams),
    SetService(VirtualServerKey, VirtualServerParams),
    DelService(VirtualServerKey),
    NewDestination(VirtualServerKey, RealServerKey, u32),
    SetDestination(VirtualServerKey, RealServerKey, u32),
    DelDestination(VirtualServerKey, RealServerKey),
}

impl Request {
    pub fn is_dump(&self) -> bool {
        matches!(self, Request::ListServices | Request::ListDestinations(_))
    }

    /// The generic-netlink message for the family id the kernel assigned to "IPVS".
    pub fn into_message(self, family_id: u16) -> GenlMessage<IpvsPayload> {
        let (command, attributes) = match self {
            // The kernel dumps services without looking at attributes.
            Request::ListServices => (CMD_GET_SERVICE, vec![]),
            Request::ListDestinations(vs) => (CMD_GET_DEST, vec![service_identity(vs)]),
            Request::NewService(vs, params) => (CMD_NEW_SERVICE, vec![service_full(vs, &params)]),
            Request::SetService(vs, params) => (CMD_SET_SERVICE, vec![service_full(vs, &params)]),
            Request::DelService(vs) => (CMD_DEL_SERVICE, vec![service_identity(vs)]),
            Request::NewDestination(vs, rs, weight) => (
                CMD_NEW_DEST,
                vec![service_identity(vs), destination_full(rs, weight)],
            ),
            Request::SetDestination(vs, rs, weight) => (
                CMD_SET_DEST,
                vec![service_identity(vs), destination_full(rs, weight)],
            ),
            Request::DelDestination(vs, rs) => (
                CMD_DEL_DEST,
                vec![service_identity(vs), destination_identity(rs)],
            ),
        };
        let payload = IpvsPayload {
            command,
            attributes,
        };
        let mut message = GenlMessage::from_payload(payload);
        message.set_resolved_family_id(family_id);
        message
    }
}

/// The `CTRL_CMD_GETFAMILY` request that resolves the IPVS family id.
pub fn family_request() -> GenlMessage<GenlCtrl> {
    GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_string())],
    })
}

/// Attributes and command of an IPVS message (the part after the genl header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsPayload {
    command: u8,
    attributes: Vec<Nested>,
}

impl GenlFamily for IpvsPayload {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.command
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for IpvsPayload {
    fn buffer_len(&self) -> usize {
        self.attributes.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attributes.as_slice().emit(buffer)
    }
}

/// `IPVS_CMD_ATTR_SERVICE` or `IPVS_CMD_ATTR_DEST` with their members.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Nested {
    kind: u16,
    members: Vec<Attr>,
}

impl Nla for Nested {
    fn value_len(&self) -> usize {
        self.members.as_slice().buffer_len()
    }

    fn kind(&self) -> u16 {
        // The kernel's own nla_nest_start sets the flag; its parser ignores it either way.
        self.kind | NLA_F_NESTED
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        self.members.as_slice().emit(buffer)
    }
}

/// A leaf attribute, already in the byte order the kernel expects.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    U16(u16),
    U32(u32),
    /// Network byte order (ports).
    Be16(u16),
    Address(IpAddr),
    /// NUL-terminated string.
    Name(&'static str),
    /// `struct ip_vs_flags { __u32 flags; __u32 mask; }`
    Flags(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attr {
    kind: u16,
    value: Value,
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self.value {
            Value::U16(_) | Value::Be16(_) => 2,
            Value::U32(_) => 4,
            Value::Address(IpAddr::V4(_)) => 4,
            Value::Address(IpAddr::V6(_)) => 16,
            Value::Name(name) => name.len() + 1,
            Value::Flags(_) => 8,
        }
    }

    fn kind(&self) -> u16 {
        self.kind
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self.value {
            Value::U16(value) => buffer.copy_from_slice(&value.to_ne_bytes()),
            Value::U32(value) => buffer.copy_from_slice(&value.to_ne_bytes()),
            Value::Be16(value) => buffer.copy_from_slice(&value.to_be_bytes()),
            Value::Address(IpAddr::V4(address)) => buffer.copy_from_slice(&address.octets()),
            Value::Address(IpAddr::V6(address)) => buffer.copy_from_slice(&address.octets()),
            Value::Name(name) => {
                let (text, nul) = buffer.split_at_mut(name.len());
                text.copy_from_slice(name.as_bytes());
                nul.fill(0);
            }
            Value::Flags(flags) => {
                let (value, mask) = buffer.split_at_mut(4);
                value.copy_from_slice(&flags.to_ne_bytes());
                // A full mask makes the kernel take every flag from us, like ipvsadm does.
                mask.copy_from_slice(&u32::MAX.to_ne_bytes());
            }
        }
    }
}

fn attr(kind: u16, value: Value) -> Attr {
    Attr { kind, value }
}

/// The address family (`AF_INET`, `AF_INET6`) of an address.
pub fn family(address: IpAddr) -> u16 {
    match address {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// The persistence netmask of a single client: /32 (as a `__be32` mask) or /128 (as a length).
/// The kernel requires the attribute on every full service, even without persistence.
fn host_netmask(address: IpAddr) -> u32 {
    match address {
        // All ones reads the same in either byte order.
        IpAddr::V4(_) => u32::MAX,
        IpAddr::V6(_) => 128,
    }
}

fn protocol_from_number(number: u16) -> Option<Protocol> {
    [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .into_iter()
        .find(|protocol| u16::from(protocol.number()) == number)
}

fn service_members(vs: VirtualServerKey) -> Vec<Attr> {
    vec![
        attr(SVC_ATTR_AF, Value::U16(family(vs.address))),
        attr(SVC_ATTR_PROTOCOL, Value::U16(vs.protocol.number().into())),
        attr(SVC_ATTR_ADDR, Value::Address(vs.address)),
        attr(SVC_ATTR_PORT, Value::Be16(vs.port)),
    ]
}

fn service_identity(vs: VirtualServerKey) -> Nested {
    Nested {
        kind: CMD_ATTR_SERVICE,
        members: service_members(vs),
    }
}

fn service_full(vs: VirtualServerKey, params: &VirtualServerParams) -> Nested {
    let (flags, timeout) = match params.persistence {
        Some(timeout) => (
            SVC_F_PERSISTENT,
            u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX),
        ),
        None => (0, 0),
    };
    let mut members = service_members(vs);
    members.extend([
        attr(
            SVC_ATTR_SCHED_NAME,
            Value::Name(params.scheduler.kernel_name()),
        ),
        attr(SVC_ATTR_FLAGS, Value::Flags(flags)),
        attr(SVC_ATTR_TIMEOUT, Value::U32(timeout)),
        attr(SVC_ATTR_NETMASK, Value::U32(host_netmask(vs.address))),
    ]);
    Nested {
        kind: CMD_ATTR_SERVICE,
        members,
    }
}

fn destination_members(rs: RealServerKey) -> Vec<Attr> {
    vec![
        attr(DEST_ATTR_ADDR, Value::Address(rs.address)),
        attr(DEST_ATTR_PORT, Value::Be16(rs.port)),
        attr(DEST_ATTR_ADDR_FAMILY, Value::U16(family(rs.address))),
    ]
}

fn destination_identity(rs: RealServerKey) -> Nested {
    Nested {
        kind: CMD_ATTR_DEST,
        members: destination_members(rs),
    }
}

fn destination_full(rs: RealServerKey, weight: u32) -> Nested {
    let mut members = destination_members(rs);
    members.extend([
        attr(DEST_ATTR_FWD_METHOD, Value::U32(CONN_F_MASQ)),
        attr(DEST_ATTR_WEIGHT, Value::U32(weight)),
        // No connection thresholds: 0 means unlimited.
        attr(DEST_ATTR_U_THRESH, Value::U32(0)),
        attr(DEST_ATTR_L_THRESH, Value::U32(0)),
    ]);
    Nested {
        kind: CMD_ATTR_DEST,
        members,
    }
}

/// A service as the kernel describes it, before Ferry interprets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceEntry {
    pub family: u16,
    pub protocol: u16,
    /// `None` for fwmark services.
    pub address: Option<IpAddr>,
    pub port: u16,
    pub firewall_mark: u32,
    pub scheduler: String,
    pub flags: u32,
    pub timeout: u32,
    pub netmask: u32,
    pub persistence_engine: Option<String>,
    pub stats: VirtualServerStats,
}

impl ServiceEntry {
    /// The key Ferry uses, if this is an address-keyed TCP, UDP or SCTP service.
    pub fn key(&self) -> Option<VirtualServerKey> {
        Some(VirtualServerKey {
            protocol: protocol_from_number(self.protocol)?,
            address: self.address?,
            port: self.port,
        })
    }

    /// The settings, if they are ones Ferry programs.
    pub fn params(&self) -> Option<VirtualServerParams> {
        let scheduler = Scheduler::from_kernel_name(&self.scheduler)?;
        let flags = self.flags & !SVC_F_HASHED;
        let persistence = match flags {
            0 => None,
            SVC_F_PERSISTENT if Some(self.netmask) == self.address.map(host_netmask) => {
                Some(Duration::from_secs(self.timeout.into()))
            }
            _ => return None,
        };
        if self.persistence_engine.is_some() {
            return None;
        }
        Some(VirtualServerParams {
            scheduler,
            persistence,
        })
    }
}

/// A real server as the kernel describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationEntry {
    pub address: IpAddr,
    pub port: u16,
    pub forwarding: u32,
    pub weight: u32,
    pub active_connections: u32,
    pub inactive_connections: u32,
}

/// Reads the attributes of a genl message: the genl header, then top-level attributes.
fn top_level(genl: &[u8]) -> Result<NlasIterator<&[u8]>, DecodeError> {
    GenlHeader::parse(genl)?;
    Ok(NlasIterator::new(&genl[GENL_HDRLEN..]))
}

/// The value of an attribute, borrowed from the message rather than from the `NlaBuffer`.
fn value_of(attribute: NlaBuffer<&[u8]>) -> &[u8] {
    // `NlasIterator` only yields buffers whose length field fits the data and the header.
    let length = usize::from(attribute.length());
    &attribute.into_inner()[NLA_HEADER_SIZE..length]
}

/// The members of the first nested attribute `kind`.
fn nested(genl: &[u8], kind: u16) -> Result<NlasIterator<&[u8]>, DecodeError> {
    for attribute in top_level(genl)? {
        let attribute = attribute?;
        if attribute.kind() == kind {
            return Ok(NlasIterator::new(value_of(attribute)));
        }
    }
    Err(DecodeError::from(format!("no nested attribute {kind}")))
}

/// Addresses arrive as a `union nf_inet_addr` (16 bytes, IPv4 in the first 4) or, in
/// requests, as exactly 4 or 16 bytes: the family says which.
fn parse_address(family: u16, bytes: &[u8]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => bytes
            .first_chunk::<4>()
            .map(|octets| IpAddr::V4(Ipv4Addr::from(*octets)))
            .ok_or_else(|| DecodeError::from("IPv4 address shorter than 4 bytes")),
        AF_INET6 => bytes
            .first_chunk::<16>()
            .map(|octets| IpAddr::V6(Ipv6Addr::from(*octets)))
            .ok_or_else(|| DecodeError::from("IPv6 address shorter than 16 bytes")),
        other => Err(DecodeError::from(format!("unknown address family {other}"))),
    }
}

/// NUL-terminated names; anything after the first NUL is ignored.
fn parse_name(bytes: &[u8]) -> Result<String, DecodeError> {
    let name = bytes.split(|byte| *byte == 0).next().unwrap_or_default();
    String::from_utf8(name.to_vec()).map_err(DecodeError::from)
}

/// Stats counters are u32 in `IPVS_*_ATTR_STATS` and u64 in `..._STATS64`.
fn parse_counter(bytes: &[u8]) -> Result<u64, DecodeError> {
    match bytes.len() {
        4 => parse_u32(bytes).map(u64::from),
        _ => parse_u64(bytes),
    }
}

fn parse_stats(bytes: &[u8]) -> Result<VirtualServerStats, DecodeError> {
    let mut stats = VirtualServerStats::default();
    for attribute in NlasIterator::new(bytes) {
        let attribute = attribute?;
        let field = match attribute.kind() {
            STATS_ATTR_CONNS => &mut stats.connections,
            STATS_ATTR_INPKTS => &mut stats.packets_in,
            STATS_ATTR_OUTPKTS => &mut stats.packets_out,
            STATS_ATTR_INBYTES => &mut stats.bytes_in,
            STATS_ATTR_OUTBYTES => &mut stats.bytes_out,
            // Rates and the 64-bit alignment padding (IPVS_STATS_ATTR_PAD).
            _ => continue,
        };
        *field = parse_counter(attribute.value())?;
    }
    Ok(stats)
}

/// Decodes an `IPVS_CMD_NEW_SERVICE` message (a dump reply, or a request Ferry built).
/// `genl` is everything after the netlink header.
pub fn decode_service(genl: &[u8]) -> Result<ServiceEntry, DecodeError> {
    let mut entry = ServiceEntry::default();
    let mut address = None;
    let mut stats64 = None;
    for attribute in nested(genl, CMD_ATTR_SERVICE)? {
        let attribute = attribute?;
        let kind = attribute.kind();
        let value = value_of(attribute);
        match kind {
            SVC_ATTR_AF => entry.family = parse_u16(value)?,
            SVC_ATTR_PROTOCOL => entry.protocol = parse_u16(value)?,
            SVC_ATTR_ADDR => address = Some(value),
            SVC_ATTR_PORT => entry.port = parse_u16_be(value)?,
            SVC_ATTR_FWMARK => entry.firewall_mark = parse_u32(value)?,
            SVC_ATTR_SCHED_NAME => entry.scheduler = parse_name(value)?,
            SVC_ATTR_FLAGS => {
                let flags = value.get(..4).ok_or("IPVS_SVC_ATTR_FLAGS too short")?;
                entry.flags = parse_u32(flags)?;
            }
            SVC_ATTR_TIMEOUT => entry.timeout = parse_u32(value)?,
            SVC_ATTR_NETMASK => entry.netmask = parse_u32(value)?,
            SVC_ATTR_PE_NAME => entry.persistence_engine = Some(parse_name(value)?),
            SVC_ATTR_STATS => entry.stats = parse_stats(value)?,
            SVC_ATTR_STATS64 => stats64 = Some(parse_stats(value)?),
            _ => {}
        }
    }
    // Kernels since 4.x send both; the 64-bit counters do not wrap.
    if let Some(stats) = stats64 {
        entry.stats = stats;
    }
    entry.address = address
        .map(|bytes| parse_address(entry.family, bytes))
        .transpose()?;
    Ok(entry)
}

/// Decodes an `IPVS_CMD_NEW_DEST` message. Kernels before 3.18 omit the destination's family;
/// it is then the service's.
pub fn decode_destination(
    genl: &[u8],
    service_family: u16,
) -> Result<DestinationEntry, DecodeError> {
    let mut family = service_family;
    let mut address = None;
    let mut port = None;
    let mut entry = DestinationEntry {
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        forwarding: 0,
        weight: 0,
        active_connections: 0,
        inactive_connections: 0,
    };
    for attribute in nested(genl, CMD_ATTR_DEST)? {
        let attribute = attribute?;
        let kind = attribute.kind();
        let value = value_of(attribute);
        match kind {
            DEST_ATTR_ADDR => address = Some(value),
            DEST_ATTR_PORT => port = Some(parse_u16_be(value)?),
            DEST_ATTR_FWD_METHOD => entry.forwarding = parse_u32(value)? & CONN_F_FWD_MASK,
            DEST_ATTR_WEIGHT => entry.weight = parse_u32(value)?,
            DEST_ATTR_ACTIVE_CONNS => entry.active_connections = parse_u32(value)?,
            DEST_ATTR_INACT_CONNS => entry.inactive_connections = parse_u32(value)?,
            DEST_ATTR_ADDR_FAMILY => family = parse_u16(value)?,
            _ => {}
        }
    }
    let address = address.ok_or("IPVS_DEST_ATTR_ADDR missing")?;
    entry.address = parse_address(family, address)?;
    entry.port = port.ok_or("IPVS_DEST_ATTR_PORT missing")?;
    Ok(entry)
}

/// Reads `CTRL_ATTR_FAMILY_ID` from the reply to `family_request`. Only that attribute is
/// parsed: the reply also lists operations and policies that need not concern us.
pub fn decode_family_id(genl: &[u8]) -> Result<u16, DecodeError> {
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    for attribute in top_level(genl)? {
        let attribute = attribute?;
        if attribute.kind() == CTRL_ATTR_FAMILY_ID {
            return parse_u16(attribute.value());
        }
    }
    Err(DecodeError::from("CTRL_ATTR_FAMILY_ID missing"))
}

#[cfg(test)]
mod tests;
