//! nf_tables messages: a [`Batch`] encoded as one nfnetlink batch, dump requests, and the
//! decoding of replies (acknowledgements, errors and dumped objects).

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};

use super::attr::{Attr, Attrs, DecodeError, encode};
use super::expr::{
    ElementData, Expr, SetRef, SetSpec, counted_packets, decode_verdict, verdict_attr,
};
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

/// A batch ready to send: `BATCH_BEGIN`, one or more messages per operation, `BATCH_END`.
///
/// Only the last operation message asks for an acknowledgement. nf_tables reports every
/// message it refuses, asked or not (`nfnetlink_rcv_batch`; `nft` itself asks for none), and a
/// failed commit as an error on `BATCH_BEGIN`. The one acknowledgement then proves the kernel
/// processed the batch to its end, without queueing one per message (a full sync sends tens
/// of thousands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    /// Sequence number of the first operation message (`BATCH_BEGIN` has the one before).
    pub first_sequence: u32,
    /// For each operation message, in sequence order, the index of its operation.
    pub operation_of_message: Vec<usize>,
}

/// What the replies to a batch say happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Committed,
    /// The kernel refused operation `index` (the first it refused) and rolled everything back.
    Refused {
        index: usize,
        errno: i32,
    },
    /// The kernel refused the batch as a whole (its commit, or the batch framing).
    Failed {
        errno: i32,
    },
    /// Neither an error nor the final acknowledgement arrived.
    Unconfirmed,
}

impl EncodedBatch {
    /// The operation a reply with `sequence` is about.
    pub fn operation(&self, sequence: u32) -> Option<usize> {
        let offset = sequence.checked_sub(self.first_sequence)?;
        self.operation_of_message.get(offset as usize).copied()
    }

    /// The sequence number of the message that asks for the acknowledgement.
    fn acknowledged_sequence(&self) -> Option<u32> {
        let messages = u32::try_from(self.operation_of_message.len()).ok()?;
        messages
            .checked_sub(1)
            .map(|last| self.first_sequence.wrapping_add(last))
    }

    /// Reads the replies to this batch. Errors come in message order, so the first one names
    /// the first refused operation even when a full receive queue lost later ones.
    pub fn outcome(&self, replies: &[Reply]) -> BatchOutcome {
        let mut acknowledged = false;
        for reply in replies {
            let Reply::Ack { sequence, errno } = *reply else {
                continue;
            };
            if errno == 0 {
                acknowledged |= Some(sequence) == self.acknowledged_sequence();
                continue;
            }
            return match self.operation(sequence) {
                Some(index) => BatchOutcome::Refused { index, errno },
                None => BatchOutcome::Failed { errno },
            };
        }
        if acknowledged {
            BatchOutcome::Committed
        } else {
            BatchOutcome::Unconfirmed
        }
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
    if let Some((_, last)) = requests.last_mut() {
        last.flags |= NLM_F_ACK;
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

/// Ids of the sets created in one batch; they tie anonymous sets to the rule that uses them.
#[derive(Default)]
struct SetIds(u32);

impl SetIds {
    fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
const DELETE: u16 = 0;
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
        Request::nftables(
            kind,
            flags,
            vec![
                Attr::string(table_kind, TABLE_NAME),
                Attr::string(name_kind, name),
            ],
        )
    };
    match op {
        // Creating first makes the deletion valid whether or not the table exists.
        Op::RemoveTable => vec![
            Request::nftables(
                NEWTABLE,
                NLM_F_CREATE,
                vec![table(), Attr::u32(NFTA_TABLE_FLAGS, 0)],
            ),
            Request::nftables(DELTABLE, DELETE, vec![table()]),
        ],
        Op::AddTable => vec![Request::nftables(
            NEWTABLE,
            CREATE,
            vec![table(), Attr::u32(NFTA_TABLE_FLAGS, 0)],
        )],
        Op::AddSet { name, kind } => vec![new_set(name, &set_spec(*kind), set_ids.next())],
        Op::DeleteSet(name) => vec![named(DELSET, DELETE, NFTA_SET_TABLE, NFTA_SET_NAME, name)],
        Op::FlushSet(name) => vec![named(
            DELSETELEM,
            DELETE,
            NFTA_SET_ELEM_LIST_TABLE,
            NFTA_SET_ELEM_LIST_SET,
            name,
        )],
        Op::AddElements { set, elements } => {
            let encoded = elements.iter().map(|(element, data)| {
                let data = data.as_ref().map(|v| ElementData::Verdict(verdict_data(v)));
                element_attr(&element_key(element), data.as_ref())
            });
            element_requests(NEWSETELEM, set, None, encoded.collect())
        }
        Op::DeleteElements { set, elements } => {
            let encoded = elements
                .iter()
                .map(|element| element_attr(&element_key(element), None));
            element_requests(DELSETELEM, set, None, encoded.collect())
        }
        Op::AddChain { name, base } => {
            let mut attrs = vec![
                Attr::string(NFTA_CHAIN_TABLE, TABLE_NAME),
                Attr::string(NFTA_CHAIN_NAME, name),
            ];
            if let Some(base) = base {
                let hook = HookSnapshot::of(*base);
                attrs.push(Attr::nested(
                    NFTA_CHAIN_HOOK,
                    vec![
                        Attr::u32(NFTA_HOOK_HOOKNUM, hook.hook),
                        Attr::i32(NFTA_HOOK_PRIORITY, hook.priority),
                    ],
                ));
                attrs.push(Attr::i32(NFTA_CHAIN_POLICY, NF_ACCEPT));
                attrs.push(Attr::string(NFTA_CHAIN_TYPE, &hook.kind));
            }
            vec![Request::nftables(NEWCHAIN, CREATE, attrs)]
        }
        Op::DeleteChain(name) => vec![named(
            DELCHAIN,
            DELETE,
            NFTA_CHAIN_TABLE,
            NFTA_CHAIN_NAME,
            name,
        )],
        Op::FlushChain(name) => vec![named(
            DELRULE,
            DELETE,
            NFTA_RULE_TABLE,
            NFTA_RULE_CHAIN,
            name,
        )],
        Op::AddRule { chain, rule } => rule_requests(chain, &lower_rule(rule), set_ids),
    }
}

/// `NFTA_SET_ID` is mandatory: it names the set within the batch.
fn new_set(name: &str, spec: &SetSpec, id: u32) -> Request {
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
        attrs.push(Attr::nested(
            NFTA_SET_DESC,
            vec![Attr::u32(NFTA_SET_DESC_SIZE, size)],
        ));
    }
    attrs.push(Attr::u32(NFTA_SET_ID, id));
    if let Some(timeout) = spec.timeout_ms {
        attrs.push(Attr::u64(NFTA_SET_TIMEOUT, timeout));
    }
    let userdata = byte_order_userdata(spec);
    if !userdata.is_empty() {
        attrs.push(Attr::bytes(NFTA_SET_USERDATA, &userdata));
    }
    Request::nftables(super::uapi::msg::NEWSET, CREATE, attrs)
}

/// nft's set user data saying which integers are in host byte order (`numgen` results), so
/// `nft list` prints `0, 1, 2` rather than byte-swapped numbers. TLVs of libnftnl's format:
/// type (0 key byte order, 1 data byte order), length 4, value 1 (host endian) in host order.
fn byte_order_userdata(spec: &SetSpec) -> Vec<u8> {
    let host_order = |kind: u8| [[kind, 4].as_slice(), &1u32.to_ne_bytes()].concat();
    let mut userdata = Vec::new();
    if spec.key_type == datatype::INTEGER {
        userdata.extend(host_order(0));
    }
    if spec
        .data
        .is_some_and(|(data_type, _)| data_type == datatype::INTEGER)
    {
        userdata.extend(host_order(1));
    }
    userdata
}

/// `NFTA_LIST_ELEM { KEY { VALUE }, DATA { … } }`.
fn element_attr(key: &[u8], data: Option<&ElementData>) -> Attr {
    let mut children = vec![Attr::nested(
        NFTA_SET_ELEM_KEY,
        vec![Attr::bytes(NFTA_DATA_VALUE, key)],
    )];
    match data {
        Some(ElementData::Verdict(verdict)) => {
            children.push(Attr::nested(
                NFTA_SET_ELEM_DATA,
                vec![verdict_attr(verdict)],
            ));
        }
        Some(ElementData::Value(value)) => {
            children.push(Attr::nested(
                NFTA_SET_ELEM_DATA,
                vec![Attr::bytes(NFTA_DATA_VALUE, value)],
            ));
        }
        None => {}
    }
    Attr::nested(NFTA_LIST_ELEM, children)
}

/// Element messages of at most [`ELEMENTS_BYTES_PER_MESSAGE`] each.
fn element_requests(kind: u8, set: &str, set_id: Option<u32>, elements: Vec<Attr>) -> Vec<Request> {
    let flags = if kind == super::uapi::msg::NEWSETELEM {
        CREATE
    } else {
        DELETE
    };
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
        if let Expr::Lookup {
            set: SetRef::Anonymous(set),
            ..
        } = expr
        {
            let id = set_ids.next();
            requests.push(new_set(ANONYMOUS_MAP_NAME, &set.spec, id));
            let elements = set
                .elements
                .iter()
                .map(|(key, data)| element_attr(key, data.as_ref()));
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
    requests.push(Request::nftables(
        super::uapi::msg::NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        attrs,
    ));
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
    /// The dump with `sequence` saw the ruleset change (`NLM_F_DUMP_INTR` on one of its
    /// messages, reported before that message): what it returned may be inconsistent.
    Interrupted { sequence: u32 },
    /// A dumped object; `generation` is the low 16 bits of the ruleset generation it was read
    /// from (`nfgenmsg.res_id`), the same for every object of an unchanged ruleset.
    Object {
        sequence: u32,
        generation: u16,
        object: Object,
    },
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
        if buffer.flags() & NLM_F_DUMP_INTR != 0 {
            replies.push(Reply::Interrupted { sequence });
        }
        match buffer.message_type() {
            NLMSG_ERROR => replies.push(Reply::Ack {
                sequence,
                errno: error_code(payload)?,
            }),
            NLMSG_DONE => replies.push(Reply::Done { sequence }),
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => return Err(DecodeError::new("overrun")),
            message_type => {
                let object = decode_object(message_type, payload)?;
                replies.push(Reply::Object {
                    sequence,
                    generation: generation(payload)?,
                    object,
                });
            }
        }
        offset += length.next_multiple_of(4).max(16);
    }
    Ok(replies)
}

/// `nfgenmsg.res_id`, big-endian, which nf_tables fills with its generation in dumps.
fn generation(payload: &[u8]) -> Result<u16, DecodeError> {
    let bytes: [u8; 2] = payload
        .get(2..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::new("short nfgenmsg"))?;
    Ok(u16::from_be_bytes(bytes))
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
    let attrs = Attrs::parse(
        payload
            .get(4..)
            .ok_or_else(|| DecodeError::new("short nfgenmsg"))?,
    )?;
    match (message_type & 0xff) as u8 {
        NEWTABLE => Ok(Object::Table {
            name: attrs.require_string(NFTA_TABLE_NAME, "table name")?,
        }),
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
    let elements: Vec<&[u8]> = match attrs.nested(NFTA_RULE_EXPRESSIONS, "expressions")? {
        None => Vec::new(),
        Some(list) => list.all(NFTA_LIST_ELEM).collect(),
    };
    let exprs = elements
        .iter()
        .map(|element| Expr::decode(element))
        .collect::<Result<_, _>>()?;
    let mut packets = None;
    for element in &elements {
        if let Some(counted) = counted_packets(element)? {
            *packets.get_or_insert(0) += counted;
        }
    }
    Ok(Object::Rule {
        table: attrs.require_string(NFTA_RULE_TABLE, "rule table")?,
        chain: attrs.require_string(NFTA_RULE_CHAIN, "rule chain")?,
        exprs,
        packets,
    })
}

fn decode_set(attrs: &Attrs) -> Result<Object, DecodeError> {
    let data = match attrs.u32(NFTA_SET_DATA_TYPE, "data type")? {
        None => None,
        Some(data_type) => Some((
            data_type,
            attrs.u32(NFTA_SET_DATA_LEN, "data length")?.unwrap_or(0),
        )),
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
            None => ElementData::Value(
                data.require(NFTA_DATA_VALUE, "element data value")?
                    .to_vec(),
            ),
        }),
    };
    Ok((key, data))
}

#[cfg(test)]
mod tests {
    //! Golden bytes written out from the uapi layout (`struct nlmsghdr`, `struct nfgenmsg`,
    //! netlink attributes with big-endian nf_tables integers), and round trips through the
    //! decoder.

    use super::*;
    use crate::nft::ruleset::{Rule, Statement, Verdict};

    fn single(op: Op) -> Vec<u8> {
        let encoded = encode_batch(&Batch { ops: vec![op] }, 7);
        // BATCH_BEGIN (20 bytes) first, BATCH_END (20 bytes) last.
        encoded.bytes[20..encoded.bytes.len() - 20].to_vec()
    }

    const FERRY_TABLE_ATTR: [u8; 12] = [0x0a, 0, 0x01, 0, b'f', b'e', b'r', b'r', b'y', 0, 0, 0];

    #[test]
    fn batch_is_framed_by_begin_and_end_for_nftables() {
        let encoded = encode_batch(
            &Batch {
                ops: vec![Op::DeleteChain("x".into())],
            },
            7,
        );
        let begin = [
            0x14, 0, 0, 0, 0x10, 0, 0x01, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0a,
        ];
        let end = [
            0x14, 0, 0, 0, 0x11, 0, 0x01, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x0a,
        ];
        assert_eq!(&encoded.bytes[..20], &begin);
        assert_eq!(&encoded.bytes[encoded.bytes.len() - 20..], &end);
        assert_eq!(encoded.operation(8), Some(0));
        assert_eq!(encoded.operation(9), None);
    }

    #[test]
    fn new_table_golden() {
        let mut expected = vec![
            0x28, 0, 0, 0, 0x00, 0x0a, 0x05, 0x06, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        expected.extend(FERRY_TABLE_ATTR);
        expected.extend([0x08, 0, 0x02, 0, 0, 0, 0, 0]);
        assert_eq!(single(Op::AddTable), expected);
    }

    #[test]
    fn remove_table_creates_then_deletes() {
        let bytes = single(Op::RemoveTable);
        // NEWTABLE without NLM_F_EXCL (so an existing table is fine), then DELTABLE, the last
        // message and so the one that asks for an acknowledgement.
        assert_eq!(&bytes[4..8], &[0x00, 0x0a, 0x01, 0x04]);
        assert_eq!(&bytes[44..48], &[0x02, 0x0a, 0x05, 0x00]);
        assert_eq!(bytes.len(), 40 + 32);
    }

    /// A three-operation batch whose middle operation takes three messages (an anonymous map
    /// and its elements, then the rule).
    fn three_operations() -> EncodedBatch {
        let dnat = Rule::new(
            Vec::new(),
            vec![Statement::Dnat {
                family: crate::nft::ruleset::Family::V4,
                endpoints: vec![crate::model::types::RealServerKey {
                    address: "10.244.1.5".parse().unwrap(),
                    port: 8080,
                }],
            }],
        );
        let ops = vec![
            Op::FlushChain("services".into()),
            Op::AddRule {
                chain: "services".into(),
                rule: dnat,
            },
            Op::DeleteChain("x".into()),
        ];
        encode_batch(&Batch { ops }, 100)
    }

    #[test]
    fn only_the_last_message_asks_for_an_acknowledgement() {
        let encoded = three_operations();
        assert_eq!(encoded.operation_of_message, [0, 1, 1, 1, 2]);
        let mut offset = 0;
        let mut flags = Vec::new();
        while offset < encoded.bytes.len() {
            let buffer = NetlinkBuffer::new_checked(&encoded.bytes[offset..]).expect("message");
            flags.push(buffer.flags() & NLM_F_ACK != 0);
            offset += buffer.length() as usize;
        }
        assert_eq!(flags, [false, false, false, false, false, true, false]);
    }

    fn ack(sequence: u32, errno: i32) -> Reply {
        Reply::Ack { sequence, errno }
    }

    #[test]
    fn the_outcome_of_a_batch_comes_from_its_errors_and_its_one_acknowledgement() {
        let encoded = three_operations();
        // BATCH_BEGIN is 100, the operation messages 101..=105.
        let cases = [
            (vec![ack(105, 0)], BatchOutcome::Committed),
            (vec![], BatchOutcome::Unconfirmed),
            (vec![ack(104, 0)], BatchOutcome::Unconfirmed),
            (
                vec![ack(103, libc::ENOENT), ack(105, libc::ENOENT), ack(105, 0)],
                BatchOutcome::Refused {
                    index: 1,
                    errno: libc::ENOENT,
                },
            ),
            (
                vec![ack(105, 0), ack(100, libc::ENOMEM)],
                BatchOutcome::Failed {
                    errno: libc::ENOMEM,
                },
            ),
        ];
        for (replies, expected) in cases {
            assert_eq!(encoded.outcome(&replies), expected, "{replies:?}");
        }
    }

    #[test]
    fn an_interrupted_dump_and_the_generation_decode() {
        let mut message = vec![0u8; 16];
        let new_table = (NFNL_SUBSYS_NFTABLES << 8) | u16::from(msg::NEWTABLE);
        message[4..6].copy_from_slice(&new_table.to_ne_bytes());
        message[6..8].copy_from_slice(&(2 | NLM_F_DUMP_INTR).to_ne_bytes());
        message[8..12].copy_from_slice(&9u32.to_ne_bytes());
        message.extend([NFPROTO_INET, NFNETLINK_V0, 0x01, 0x02]);
        message.extend(FERRY_TABLE_ATTR);
        let length = message.len() as u32;
        message[..4].copy_from_slice(&length.to_ne_bytes());
        assert_eq!(
            decode_replies(&message),
            Ok(vec![
                Reply::Interrupted { sequence: 9 },
                Reply::Object {
                    sequence: 9,
                    generation: 0x0102,
                    object: Object::Table {
                        name: TABLE_NAME.into()
                    },
                },
            ])
        );
    }

    #[test]
    fn delete_chain_golden() {
        let mut expected = vec![
            0x28, 0, 0, 0, 0x05, 0x0a, 0x05, 0x00, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        expected.extend(FERRY_TABLE_ATTR);
        expected.extend([0x06, 0, 0x03, 0, b'x', 0, 0, 0]);
        assert_eq!(single(Op::DeleteChain("x".into())), expected);
    }

    #[test]
    fn new_rule_with_a_jump_golden() {
        let rule = Rule::new(
            Vec::new(),
            vec![Statement::Verdict(Verdict::Jump("services".into()))],
        );
        let mut expected = vec![
            0x6c, 0, 0, 0, 0x06, 0x0a, 0x05, 0x0c, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        expected.extend(FERRY_TABLE_ATTR);
        expected.extend([0x06, 0, 0x02, 0, b'c', 0, 0, 0]);
        expected.extend([0x44, 0, 0x04, 0x80, 0x40, 0, 0x01, 0x80]);
        expected.extend([0x0e, 0, 0x01, 0]);
        expected.extend(b"immediate\0\0\0");
        expected.extend([0x2c, 0, 0x02, 0x80, 0x08, 0, 0x01, 0, 0, 0, 0, 0]);
        expected.extend([0x20, 0, 0x02, 0x80, 0x1c, 0, 0x02, 0x80]);
        expected.extend([0x08, 0, 0x01, 0, 0xff, 0xff, 0xff, 0xfd]);
        expected.extend([0x0d, 0, 0x02, 0]);
        expected.extend(b"services\0\0\0\0");
        assert_eq!(
            single(Op::AddRule {
                chain: "c".into(),
                rule
            }),
            expected
        );
    }

    #[test]
    fn flush_set_has_no_element_list() {
        let mut expected = vec![
            0x2c, 0, 0, 0, 0x0e, 0x0a, 0x05, 0x00, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
        ];
        expected.extend(FERRY_TABLE_ATTR);
        expected.extend([0x0b, 0, 0x02, 0, b'a', b'f', b'f', b'-', b'1', b'2', 0, 0]);
        assert_eq!(single(Op::FlushSet("aff-12".into())), expected);
    }

    #[test]
    fn acknowledgements_and_errors_decode() {
        let mut datagram = Vec::new();
        for (sequence, code) in [(5u32, 0i32), (6, -17)] {
            datagram.extend(36u32.to_ne_bytes());
            datagram.extend(NLMSG_ERROR.to_ne_bytes());
            datagram.extend(0u16.to_ne_bytes());
            datagram.extend(sequence.to_ne_bytes());
            datagram.extend(0u32.to_ne_bytes());
            datagram.extend(code.to_ne_bytes());
            datagram.extend([0; 16]);
        }
        assert_eq!(
            decode_replies(&datagram),
            Ok(vec![
                Reply::Ack {
                    sequence: 5,
                    errno: 0
                },
                Reply::Ack {
                    sequence: 6,
                    errno: 17
                }
            ])
        );
    }

    /// Every object message of a full sync decodes back to what was meant.
    #[test]
    fn requests_round_trip_through_the_dump_decoder() {
        let ruleset = crate::nft::build(
            &crate::model::Desired::default(),
            &["10.244.0.0/16".parse().unwrap()],
        );
        let mut batch = crate::nft::diff(&crate::nft::Ruleset::default(), &ruleset);
        batch.ops.insert(0, Op::AddTable);
        let encoded = encode_batch(&batch, 1);
        let replies =
            decode_replies(&encoded.bytes[20..encoded.bytes.len() - 20]).expect("decodes");
        let rules: Vec<_> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Object {
                    object: Object::Rule { chain, exprs, .. },
                    ..
                } => Some((chain.clone(), exprs.clone())),
                _ => None,
            })
            .collect();
        let meant: Vec<_> = ruleset
            .chains
            .iter()
            .flat_map(|(name, chain)| {
                chain
                    .rules
                    .iter()
                    .map(move |rule| (name.clone(), lower_rule(rule)))
            })
            .collect();
        assert_eq!(rules, meant);
        let sets = replies
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Reply::Object {
                        object: Object::Set { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(sets, ruleset.sets.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[1, 2, 3],
            &[0xff; 40],
            &[16, 0, 0, 0, 0x06, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let _ = decode_replies(bytes);
        }
        assert!(decode_object(0x0a06, &[1, 0, 0, 0, 0xff, 0xff]).is_err());
    }

    proptest::proptest! {
        /// What the fuzz targets check, in every test run: decoders refuse, never panic.
        #[test]
        fn decoders_never_panic(kind in 0u8..16, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_replies(&bytes);
            let _ = decode_object((NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind), &bytes);
            let _ = Expr::decode(&bytes);
        }
    }
}
