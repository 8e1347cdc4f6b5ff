//! Netlink attributes: a small tree to encode (on `netlink-packet-core`'s [`Nla`]) and a
//! flat view to decode. nf_tables integers are big-endian on the wire.

use netlink_packet_core::{Emitable, NLA_F_NESTED, Nla, NlasIterator};
use thiserror::Error;

/// A message or attribute the decoder cannot make sense of.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An attribute to encode: raw bytes or nested attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Value { kind: u16, value: Vec<u8> },
    Nested { kind: u16, children: Vec<Attr> },
}

impl Attr {
    pub fn bytes(kind: u16, value: &[u8]) -> Self {
        Attr::Value {
            kind,
            value: value.to_vec(),
        }
    }

    pub fn u32(kind: u16, value: u32) -> Self {
        Self::bytes(kind, &value.to_be_bytes())
    }

    pub fn i32(kind: u16, value: i32) -> Self {
        Self::bytes(kind, &value.to_be_bytes())
    }

    pub fn u64(kind: u16, value: u64) -> Self {
        Self::bytes(kind, &value.to_be_bytes())
    }

    /// A NUL-terminated string, as the kernel's `NLA_STRING` policies expect.
    pub fn string(kind: u16, value: &str) -> Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        Attr::Value { kind, value: bytes }
    }

    pub fn nested(kind: u16, children: Vec<Attr>) -> Self {
        Attr::Nested { kind, children }
    }

    /// Encoded size including header and padding.
    pub fn encoded_len(&self) -> usize {
        Emitable::buffer_len(self)
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Value { value, .. } => value.len(),
            Attr::Nested { children, .. } => children.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Value { kind, .. } => *kind,
            Attr::Nested { kind, .. } => kind | NLA_F_NESTED,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Value { value, .. } => buffer.copy_from_slice(value),
            Attr::Nested { children, .. } => children.as_slice().emit(buffer),
        }
    }
}

/// Encodes attributes back to back.
pub fn encode(attrs: &[Attr]) -> Vec<u8> {
    let mut buffer = vec![0; attrs.buffer_len()];
    attrs.emit(&mut buffer);
    buffer
}

/// The attributes of one level, in wire order.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    entries: Vec<(u16, &'a [u8])>,
}

impl<'a> Attrs<'a> {
    pub fn parse(buffer: &'a [u8]) -> Result<Self, DecodeError> {
        let mut entries = Vec::new();
        for nla in NlasIterator::new(buffer) {
            let nla = nla.map_err(|e| DecodeError::new(format!("attribute: {e}")))?;
            let value: &'a [u8] = nla.into_inner();
            let kind =
                u16::from_ne_bytes([value[2], value[3]]) & netlink_packet_core::NLA_TYPE_MASK;
            let length = usize::from(u16::from_ne_bytes([value[0], value[1]]));
            entries.push((kind, &value[4..length]));
        }
        Ok(Self { entries })
    }

    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| *v)
    }

    /// Every attribute of `kind` (lists repeat one kind).
    pub fn all(&self, kind: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.entries
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, v)| *v)
    }

    pub fn require(&self, kind: u16, what: &str) -> Result<&'a [u8], DecodeError> {
        self.get(kind)
            .ok_or_else(|| DecodeError::new(format!("missing {what}")))
    }

    pub fn u32(&self, kind: u16, what: &str) -> Result<Option<u32>, DecodeError> {
        self.get(kind).map(|v| be_u32(v, what)).transpose()
    }

    pub fn require_u32(&self, kind: u16, what: &str) -> Result<u32, DecodeError> {
        be_u32(self.require(kind, what)?, what)
    }

    pub fn u64(&self, kind: u16, what: &str) -> Result<Option<u64>, DecodeError> {
        self.get(kind)
            .map(|v| {
                let bytes: [u8; 8] = v.try_into().map_err(|_| bad_length(what))?;
                Ok(u64::from_be_bytes(bytes))
            })
            .transpose()
    }

    pub fn string(&self, kind: u16, what: &str) -> Result<Option<String>, DecodeError> {
        self.get(kind).map(|v| decode_string(v, what)).transpose()
    }

    pub fn require_string(&self, kind: u16, what: &str) -> Result<String, DecodeError> {
        decode_string(self.require(kind, what)?, what)
    }

    pub fn nested(&self, kind: u16, what: &str) -> Result<Option<Attrs<'a>>, DecodeError> {
        self.get(kind)
            .map(Attrs::parse)
            .transpose()
            .map_err(|e| DecodeError::new(format!("{what}: {e}")))
    }

    pub fn require_nested(&self, kind: u16, what: &str) -> Result<Attrs<'a>, DecodeError> {
        Attrs::parse(self.require(kind, what)?)
    }
}

pub fn be_u32(value: &[u8], what: &str) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| bad_length(what))?;
    Ok(u32::from_be_bytes(bytes))
}

fn bad_length(what: &str) -> DecodeError {
    DecodeError::new(format!("{what}: wrong length"))
}

fn decode_string(value: &[u8], what: &str) -> Result<String, DecodeError> {
    let text = value.strip_suffix(&[0]).unwrap_or(value);
    String::from_utf8(text.to_vec()).map_err(|_| DecodeError::new(format!("{what}: not UTF-8")))
}
