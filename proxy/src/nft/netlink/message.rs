//! nf_tables messages: a [`Batch`] encoded as one nfnetlink batch, dump requests, and the
//! decoding of replies (acknowledgements, errors and dumped objects).

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};

use super::attr::{Attr, Attrs, DecodeError, encode};
use super::expr::{ElementData, Expr, SetRef, SetSpec, decode_verdict, verdict_attr};
use super::lower::{element_key, lower_rule, set_spec, verdict_data};
use super::snapshot::{HookSnapshot, Object};
use super::uapi::*;
use crate::nft::diff::{Batch, Op};
use crate::nft::ruleset::TABLE_NAME;

/// One nfnetlink message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Full netlink type: subsystem in the high byte for nf_tables messages.
    pub message_type: u16,
    pub flags: u16,
    pub family: u8,
    /// `nfgenmsg.res_id`: the subsystem for batch delimiters, 0 otherwise.
    pub res_id: u16,
    pub attrs: Vec<Attr>,
}

impl Request {
    fn nftables(kind: u8, flags: u16, attrs: Vec<Attr>) -> Self {
        Self {
            message_type: (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind),
            flags: NLM_F_REQUEST | flags,
            family: NFPROTO_INET,
            res_id: 0,
            attrs,
        }
    }

    fn batch_delimiter(message_type: u16) -> Self {
        Self {
            message_type,
            flags: NLM_F_REQUEST,
            family: AF_UNSPEC,
            res_id: NFNL_SUBSYS_NFTABLES,
            attrs: Vec::new(),
        }
    }

    /// The message with its netlink header.
    pub fn to_bytes(&self, sequence: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = self.flags;
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(self.clone()));
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        self.message_type
    }

    fn buffer_len(&self) -> usize {
        4 + self.attrs.iter().map(Attr::encoded_len).sum::<usize>()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = NFNETLINK_V0;
        buffer[2..4].copy_from_slice(&self.res_id.to_be_bytes());
        let attrs = encode(&self.attrs);
        buffer[4..4 + attrs.len()].copy_from_slice(&attrs);
    }
}

/// A batch ready to send: `BATCH_BEGIN`, one or more messages per operation (each asking for
/// an acknowledgement), `BATCH_END`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    /// Sequence number of the first operation message (`BATCH_BEGIN` has the one before).
    pub first_sequence: u32,
    /// For each operation message, in sequence order, the index of its operation.
    pub operation_of_message: Vec<usize>,
}

impl EncodedBatch {
    /// The operation a reply with `sequence` is about.
    pub fn operation(&self, sequence: u32) -> Option<usize> {
        let offset = sequence.checked_sub(self.first_sequence)?;
        self.operation_of_message.get(offset as usize).copied()
    }
}

pub fn encode_batch(batch: &Batch, begin_sequence: u32) -> EncodedBatch {
    let mut requests = Vec::new();
    let mut set_ids = SetIds::default();
    for (index, op) in batch.ops.iter().enumerate() {
        for request in op_requests(op, &mut set_ids) {
            requests.push((index, request));
        }
    }
    let mut bytes = Request::batch_delimiter(NFNL_MSG_BATCH_BEGIN).to_bytes(begin_sequence);
    let mut sequence = begin_sequence;
    for (_, request) in &requests {
        sequence = sequence.wrapping_add(1);
        bytes.extend(request.to_bytes(sequence));
    }
    bytes.extend(Request::batch_delimiter(NFNL_MSG_BATCH_END).to_bytes(sequence.wrapping_add(1)));
    EncodedBatch {
        bytes,
        first_sequence: begin_sequence.wrapping_add(1),
        operation_of_message: requests.iter().map(|(index, _)| *index).collect(),
    }
}

/// Ids that tie anonymous sets to the rule that uses them within one batch.
#[derive(Default)]
struct SetIds(u32);

impl SetIds {
    fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

const CREATE: u16 = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
const DELETE: u16 = NLM_F_ACK;
/// Anonymous sets get their final name (`__map0`…) from the kernel.
const ANONYMOUS_MAP_NAME: &str = "__map%d";
/// Elements per message are bounded by size: a netlink attribute holds at most 64 KiB.
const ELEMENTS_BYTES_PER_MESSAGE: usize = 32 * 1024;

fn table() -> Attr {
    Attr::string(NFTA_TABLE_NAME, TABLE_NAME)
}

fn op_requests(op: &Op, set_ids: &mut SetIds) -> Vec<Request> {
    use super::uapi::msg::*;
    let named = |kind: u8, flags, table_kind: u16, name_kind: u16, name: &str| {
        Request::nftables(kind, flags, vec![Attr::string(table_kind, TABLE_NAME), Attr::string(name_kind, name)])
    };
    match op {
        // Creating first makes the deletion valid whether or not the table exists.
        Op::RemoveTable => vec![
            Request::nftables(NEWTABLE, NLM_F_ACK | NLM_F_CREATE, vec![table(), Attr::u32(NFTA_TABLE_FLAGS, 0)]),
            Request::nftables(DELTABLE, DELETE, vec![table()]),
        ],
        Op::AddTable => vec![Request::nftables(NEWTABLE, CREATE, vec![table(), Attr::u32(NFTA_TABLE_FLAGS, 0)])],
        Op::AddSet { name, kind } => vec![new_set(name, &set_spec(*kind), None)],
        Op::DeleteSet(name) => vec![named(DELSET, DELETE, NFTA_SET_TABLE, NFTA_SET_NAME, name)],
        Op::FlushSet(name) => vec![named(DELSETELEM, DELETE, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, name)],
        Op::AddElements { set, elements } => {
            let encoded = elements.iter().map(|(element, data)| {
                let data = data.as_ref().map(|v| ElementData::Verdict(verdict_data(v)));
                element_attr(&element_key(element), data.as_ref())
            });
            element_requests(NEWSETELEM, set, None, encoded.collect())
        }
        Op::DeleteElements { set, elements } => {
            let encoded = elements.iter().map(|element| element_attr(&element_key(element), None));
            element_requests(DELSETELEM, set, None, encoded.collect())
        }
        Op::AddChain { name, base } => {
            let mut attrs = vec![Attr::string(NFTA_CHAIN_TABLE, TABLE_NAME), Attr::string(NFTA_CHAIN_NAME, name)];
            if let Some(base) = base {
                let hook = HookSnapshot::of(*base);
                attrs.push(Attr::nested(
                    NFTA_CHAIN_HOOK,
                    vec![Attr::u32(NFTA_HOOK_HOOKNUM, hook.hook), Attr::i32(NFTA_HOOK_PRIORITY, hook.priority)],
                ));
                attrs.push(Attr::i32(NFTA_CHAIN_POLICY, NF_ACCEPT));
                attrs.push(Attr::string(NFTA_CHAIN_TYPE, &hook.kind));
            }
            vec![Request::nftables(NEWCHAIN, CREATE, attrs)]
        }
        Op::DeleteChain(name) => vec![named(DELCHAIN, DELETE, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, name)],
        Op::FlushChain(name) => vec![named(DELRULE, DELETE, NFTA_RULE_TABLE, NFTA_RULE_CHAIN, name)],
        Op::AddRule { chain, rule } => rule_requests(chain, &lower_rule(rule), set_ids),
    }
}

fn new_set(name: &str, spec: &SetSpec, id: Option<u32>) -> Request {
    let mut attrs = vec![
        Attr::string(NFTA_SET_TABLE, TABLE_NAME),
        Attr::string(NFTA_SET_NAME, name),
        Attr::u32(NFTA_SET_FLAGS, spec.flags),
        Attr::u32(NFTA_SET_KEY_TYPE, spec.key_type),
        Attr::u32(NFTA_SET_KEY_LEN, spec.key_len),
    ];
    if let Some((data_type, data_len)) = spec.data {
        attrs.push(Attr::u32(NFTA_SET_DATA_TYPE, data_type));
        attrs.push(Attr::u32(NFTA_SET_DATA_LEN, data_len));
    }
    if let Some(size) = spec.size {
        attrs.push(Attr::nested(NFTA_SET_DESC, vec![Attr::u32(NFTA_SET_DESC_SIZE, size)]));
    }
    if let Some(id) = id {
        attrs.push(Attr::u32(NFTA_SET_ID, id));
    }
    if let Some(timeout) = spec.timeout_ms {
        attrs.push(Attr::u64(NFTA_SET_TIMEOUT, timeout));
    }
    if spec.key_type == datatype::INTEGER {
        attrs.push(Attr::bytes(NFTA_SET_USERDATA, &HOST_ORDER_KEY_USERDATA));
    }
    Request::nftables(super::uapi::msg::NEWSET, CREATE, attrs)
}

/// nft's set user data saying the key is in host byte order (the `numgen` result), so
/// `nft list` prints `0, 1, 2` rather than byte-swapped numbers: one TLV, type 0
/// (key byte order), length 4, value 1 (host endian) in host order.
const HOST_ORDER_KEY_USERDATA: [u8; 6] = {
    let one = 1u32.to_ne_bytes();
    [0, 4, one[0], one[1], one[2], one[3]]
};

/// `NFTA_LIST_ELEM { KEY { VALUE }, DATA { … } }`.
fn element_attr(key: &[u8], data: Option<&ElementData>) -> Attr {
    let mut children = vec![Attr::nested(NFTA_SET_ELEM_KEY, vec![Attr::bytes(NFTA_DATA_VALUE, key)])];
    match data {
        Some(ElementData::Verdict(verdict)) => {
            children.push(Attr::nested(NFTA_SET_ELEM_DATA, vec![verdict_attr(verdict)]));
        }
        Some(ElementData::Value(value)) => {
            children.push(Attr::nested(NFTA_SET_ELEM_DATA, vec![Attr::bytes(NFTA_DATA_VALUE, value)]));
        }
        None => {}
    }
    Attr::nested(NFTA_LIST_ELEM, children)
}

/// Element messages of at most [`ELEMENTS_BYTES_PER_MESSAGE`] each.
fn element_requests(kind: u8, set: &str, set_id: Option<u32>, elements: Vec<Attr>) -> Vec<Request> {
    let flags = if kind == super::uapi::msg::NEWSETELEM { CREATE } else { DELETE };
    let mut chunks: Vec<Vec<Attr>> = Vec::new();
    let mut size = 0;
    for element in elements {
        let len = element.encoded_len();
        match chunks.last_mut() {
            Some(chunk) if size + len <= ELEMENTS_BYTES_PER_MESSAGE => chunk.push(element),
            _ => {
                size = 0;
                chunks.push(vec![element]);
            }
        }
        size += len;
    }
    chunks
        .into_iter()
        .map(|chunk| {
            let mut attrs = vec![
                Attr::string(NFTA_SET_ELEM_LIST_TABLE, TABLE_NAME),
                Attr::string(NFTA_SET_ELEM_LIST_SET, set),
            ];
            if let Some(id) = set_id {
                attrs.push(Attr::u32(NFTA_SET_ELEM_LIST_SET_ID, id));
            }
            attrs.push(Attr::nested(NFTA_SET_ELEM_LIST_ELEMENTS, chunk));
            Request::nftables(kind, flags, attrs)
        })
        .collect()
}

/// The anonymous sets of a rule (created and filled first), then the rule.
fn rule_requests(chain: &str, exprs: &[Expr], set_ids: &mut SetIds) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut encoded = Vec::with_capacity(exprs.len());
    for expr in exprs {
        let mut anonymous = None;
        if let Expr::Lookup { set: SetRef::Anonymous(set), .. } = expr {
            let id = set_ids.next();
            requests.push(new_set(ANONYMOUS_MAP_NAME, &set.spec, Some(id)));
            let elements = set.elements.iter().map(|(key, data)| element_attr(key, data.as_ref()));
            requests.extend(element_requests(
                super::uapi::msg::NEWSETELEM,
                ANONYMOUS_MAP_NAME,
                Some(id),
                elements.collect(),
            ));
            anonymous = Some((ANONYMOUS_MAP_NAME, id));
        }
        encoded.push(expr.encode(anonymous));
    }
    let attrs = vec![
        Attr::string(NFTA_RULE_TABLE, TABLE_NAME),
        Attr::string(NFTA_RULE_CHAIN, chain),
        Attr::nested(NFTA_RULE_EXPRESSIONS, encoded),
    ];
    requests.push(Request::nftables(super::uapi::msg::NEWRULE, NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, attrs));
    requests
}

/// A dump request for every object of one kind in the `inet` family (`attrs` narrow it).
pub fn dump_request(kind: u8, sequence: u32, attrs: Vec<Attr>) -> Vec<u8> {
    Request::nftables(kind, NLM_F_DUMP, attrs).to_bytes(sequence)
}

/// The dump request for the elements of one set of Ferry's table.
pub fn dump_elements_request(set: &str, sequence: u32) -> Vec<u8> {
    let attrs = vec![
        Attr::string(NFTA_SET_ELEM_LIST_TABLE, TABLE_NAME),
        Attr::string(NFTA_SET_ELEM_LIST_SET, set),
    ];
    dump_request(super::uapi::msg::GETSETELEM, sequence, attrs)
}

/// One message received from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An acknowledgement (`errno` 0) or an error for the request with `sequence`.
    Ack { sequence: u32, errno: i32 },
    /// The end of a dump.
    Done { sequence: u32 },
    Object { sequence: u32, object: Object },
}

/// Decodes every netlink message of one datagram.
pub fn decode_replies(datagram: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    let mut replies = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let buffer = NetlinkBuffer::new_checked(&datagram[offset..])
            .map_err(|e| DecodeError::new(format!("netlink header: {e}")))?;
        let length = buffer.length() as usize;
        let sequence = buffer.sequence_number();
        let payload = buffer.payload();
        match buffer.message_type() {
            NLMSG_ERROR => replies.push(Reply::Ack { sequence, errno: error_code(payload)? }),
            NLMSG_DONE => replies.push(Reply::Done { sequence }),
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => return Err(DecodeError::new("overrun")),
            message_type => {
                let object = decode_object(message_type, payload)?;
                replies.push(Reply::Object { sequence, object });
            }
        }
        offset += length.next_multiple_of(4).max(16);
    }
    Ok(replies)
}

/// `struct nlmsgerr`: a negative errno, or 0 for an acknowledgement.
fn error_code(payload: &[u8]) -> Result<i32, DecodeError> {
    let code: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::new("short error message"))?;
    Ok(-i32::from_ne_bytes(code))
}

/// Decodes a dumped nf_tables object from its message type and payload (`nfgenmsg` first).
pub fn decode_object(message_type: u16, payload: &[u8]) -> Result<Object, DecodeError> {
    use super::uapi::msg::*;
    if message_type >> 8 != NFNL_SUBSYS_NFTABLES {
        return Err(DecodeError::new(format!("message type {message_type:#x}")));
    }
    let attrs = Attrs::parse(payload.get(4..).ok_or_else(|| DecodeError::new("short nfgenmsg"))?)?;
    match (message_type & 0xff) as u8 {
        NEWTABLE => Ok(Object::Table { name: attrs.require_string(NFTA_TABLE_NAME, "table name")? }),
        NEWCHAIN => decode_chain(&attrs),
        NEWRULE => decode_rule(&attrs),
        NEWSET => decode_set(&attrs),
        NEWSETELEM => decode_elements(&attrs),
        other => Err(DecodeError::new(format!("nf_tables message {other}"))),
    }
}

fn decode_chain(attrs: &Attrs) -> Result<Object, DecodeError> {
    let hook = match attrs.nested(NFTA_CHAIN_HOOK, "hook")? {
        None => None,
        Some(hook) => Some(HookSnapshot {
            kind: attrs.require_string(NFTA_CHAIN_TYPE, "chain type")?,
            hook: hook.require_u32(NFTA_HOOK_HOOKNUM, "hook number")?,
            priority: hook.require_u32(NFTA_HOOK_PRIORITY, "priority")? as i32,
        }),
    };
    if hook.is_some() && attrs.u32(NFTA_CHAIN_POLICY, "policy")? != Some(NF_ACCEPT as u32) {
        return Err(DecodeError::new("base chain policy is not accept"));
    }
    Ok(Object::Chain {
        table: attrs.require_string(NFTA_CHAIN_TABLE, "chain table")?,
        name: attrs.require_string(NFTA_CHAIN_NAME, "chain name")?,
        hook,
    })
}

fn decode_rule(attrs: &Attrs) -> Result<Object, DecodeError> {
    let list = attrs.nested(NFTA_RULE_EXPRESSIONS, "expressions")?;
    let exprs = match list {
        None => Vec::new(),
        Some(list) => list.all(NFTA_LIST_ELEM).map(Expr::decode).collect::<Result<_, _>>()?,
    };
    Ok(Object::Rule {
        table: attrs.require_string(NFTA_RULE_TABLE, "rule table")?,
        chain: attrs.require_string(NFTA_RULE_CHAIN, "rule chain")?,
        exprs,
    })
}

fn decode_set(attrs: &Attrs) -> Result<Object, DecodeError> {
    let data = match attrs.u32(NFTA_SET_DATA_TYPE, "data type")? {
        None => None,
        Some(data_type) => Some((data_type, attrs.u32(NFTA_SET_DATA_LEN, "data length")?.unwrap_or(0))),
    };
    let size = match attrs.nested(NFTA_SET_DESC, "description")? {
        None => None,
        Some(desc) => desc.u32(NFTA_SET_DESC_SIZE, "size")?,
    };
    let spec = SetSpec {
        flags: attrs.u32(NFTA_SET_FLAGS, "flags")?.unwrap_or(0),
        key_type: attrs.u32(NFTA_SET_KEY_TYPE, "key type")?.unwrap_or(0),
        key_len: attrs.require_u32(NFTA_SET_KEY_LEN, "key length")?,
        data,
        timeout_ms: attrs.u64(NFTA_SET_TIMEOUT, "timeout")?,
        size,
    };
    Ok(Object::Set {
        table: attrs.require_string(NFTA_SET_TABLE, "set table")?,
        name: attrs.require_string(NFTA_SET_NAME, "set name")?,
        spec,
    })
}

fn decode_elements(attrs: &Attrs) -> Result<Object, DecodeError> {
    let mut elements = Vec::new();
    if let Some(list) = attrs.nested(NFTA_SET_ELEM_LIST_ELEMENTS, "elements")? {
        for element in list.all(NFTA_LIST_ELEM) {
            elements.push(decode_element(&Attrs::parse(element)?)?);
        }
    }
    Ok(Object::Elements {
        table: attrs.require_string(NFTA_SET_ELEM_LIST_TABLE, "elements table")?,
        set: attrs.require_string(NFTA_SET_ELEM_LIST_SET, "elements set")?,
        elements,
    })
}

fn decode_element(attrs: &Attrs) -> Result<(Vec<u8>, Option<ElementData>), DecodeError> {
    let key = attrs.require_nested(NFTA_SET_ELEM_KEY, "element key")?;
    let key = key.require(NFTA_DATA_VALUE, "element key value")?.to_vec();
    let data = match attrs.nested(NFTA_SET_ELEM_DATA, "element data")? {
        None => None,
        Some(data) => Some(match data.nested(NFTA_DATA_VERDICT, "verdict")? {
            Some(verdict) => ElementData::Verdict(decode_verdict(&verdict)?),
            None => ElementData::Value(data.require(NFTA_DATA_VALUE, "element data value")?.to_vec()),
        }),
    };
    Ok((key, data))
}
