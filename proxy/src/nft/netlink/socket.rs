//! The kernel implementation of [`NftDataplane`]: one `NETLINK_NETFILTER` socket.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::Socket;
use tracing::{debug, warn};

use super::attr::Attr;
use super::changes::ChangeWatch;
use super::message::{
    BatchOutcome, Reply, decode_replies, dump_elements_request, dump_request, encode_batch,
};
use super::snapshot::{Object, TableSnapshot};
use super::uapi::{
    NETLINK_NETFILTER, NFPROTO_INET, NFT_SET_ANONYMOUS, NFT_SET_EVAL, NFTA_RULE_TABLE, msg,
};
use crate::nft::diff::Batch;
use crate::nft::ruleset::TABLE_NAME;
use crate::nft::{Errno, NftDataplane, NftError};

/// Room for one datagram from the kernel (dumps fill up to a few pages per datagram).
const RECEIVE_BUFFER: usize = 256 * 1024;
/// How often [`NftDataplane::read_table`] reads again when Ferry's table changes under it
/// before giving up: only another writer to that table (drift being made) changes it.
const READ_ATTEMPTS: usize = 8;

pub struct NetlinkDataplane {
    socket: Socket,
    changes: ChangeWatch,
    sequence: u32,
}

impl NetlinkDataplane {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NftError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        // Error messages without a copy of the refused request keep the receive queue small.
        socket.set_cap_ack(true).map_err(NftError::Socket)?;
        socket.set_ext_ack(true).map_err(NftError::Socket)?;
        Ok(Self {
            socket,
            changes: ChangeWatch::open()?,
            sequence: 1,
        })
    }

    /// Sizes the send buffer for one batch (a batch is one datagram); a smaller buffer only
    /// fails large batches, with a clear error.
    fn size_send_buffer(&self, bytes: usize) {
        size_buffer(&self.socket, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF], bytes);
    }

    /// Everything the kernel queued for this socket: a batch is processed inside `send`, so
    /// all its replies are queued when it returns. `overrun` says the queue overflowed and the
    /// kernel dropped replies (the earliest ones are kept).
    fn drain(&self) -> Result<Drained, NftError> {
        self.socket
            .set_non_blocking(true)
            .map_err(NftError::Socket)?;
        let mut drained = Drained::default();
        let result = loop {
            let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
            match self.socket.recv(&mut buffer, 0) {
                Ok(_) => match decode_replies(&buffer) {
                    Ok(decoded) => drained.replies.extend(decoded),
                    Err(e) => break Err(NftError::Decode(e.0)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => drained.overrun = true,
                Err(e) => break Err(NftError::Socket(e)),
            }
        };
        self.socket
            .set_non_blocking(false)
            .map_err(NftError::Socket)?;
        result.map(|()| drained)
    }

    /// Sends one dump request and adds its objects to `reading` until `NLMSG_DONE`.
    fn dump(
        &mut self,
        request: impl FnOnce(u32) -> Vec<u8>,
        reading: &mut Reading,
    ) -> Result<(), NftError> {
        let sequence = self.take_sequences(1);
        self.socket
            .send(&request(sequence), 0)
            .map_err(NftError::Socket)?;
        loop {
            let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
            self.socket.recv(&mut buffer, 0).map_err(NftError::Socket)?;
            for reply in decode_replies(&buffer).map_err(|e| NftError::Decode(e.0))? {
                match reply {
                    Reply::Object {
                        sequence: s,
                        generation,
                        object,
                    } if s == sequence => reading.add(generation, object),
                    Reply::Interrupted { sequence: s } if s == sequence => {
                        reading.consistent = false;
                    }
                    Reply::Done { sequence: s } if s == sequence => return Ok(()),
                    // A set listed by an earlier dump of this reading is gone: the ruleset
                    // changed in between.
                    Reply::Ack { sequence: s, errno } if s == sequence && errno == libc::ENOENT => {
                        reading.consistent = false;
                        return Ok(());
                    }
                    Reply::Ack { sequence: s, errno } if s == sequence && errno != 0 => {
                        return Err(NftError::Rejected {
                            index: 0,
                            operation: "dump".into(),
                            errno: Errno(errno),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Dumps table, chains, sets, the elements of the sets Ferry fills, and rules.
    fn read_once(&mut self) -> Result<Reading, NftError> {
        let mut reading = Reading::new();
        self.dump(|s| dump_request(msg::GETTABLE, s, Vec::new()), &mut reading)?;
        let exists = reading
            .objects
            .iter()
            .any(|object| matches!(object, Object::Table { name } if name == TABLE_NAME));
        if !exists {
            return Ok(reading);
        }
        self.dump(|s| dump_request(msg::GETCHAIN, s, Vec::new()), &mut reading)?;
        let first_set = reading.objects.len();
        self.dump(|s| dump_request(msg::GETSET, s, Vec::new()), &mut reading)?;
        let with_elements: Vec<String> = reading.objects[first_set..]
            .iter()
            .filter_map(|object| match object {
                Object::Set { table, name, spec }
                    if table == TABLE_NAME
                        && (spec.flags & NFT_SET_EVAL == 0
                            || spec.flags & NFT_SET_ANONYMOUS != 0) =>
                {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        for set in with_elements {
            self.dump(|s| dump_elements_request(&set, s), &mut reading)?;
        }
        self.dump(|s| dump_request(msg::GETRULE, s, Vec::new()), &mut reading)?;
        Ok(reading)
    }

    /// What the counters in each chain of Ferry's table have counted, summed per chain. A
    /// chain without a counter is left out; so is everything when the table does not exist.
    pub fn read_counters(&mut self) -> Result<BTreeMap<String, u64>, NftError> {
        let mut reading = Reading::new();
        let table = vec![Attr::string(NFTA_RULE_TABLE, TABLE_NAME)];
        self.dump(|s| dump_request(msg::GETRULE, s, table), &mut reading)?;
        let mut counters = BTreeMap::new();
        for object in reading.objects {
            if let Object::Rule {
                table,
                chain,
                packets: Some(packets),
                ..
            } = object
                && table == TABLE_NAME
            {
                *counters.entry(chain).or_insert(0) += packets;
            }
        }
        Ok(counters)
    }

    fn take_sequences(&mut self, count: usize) -> u32 {
        let first = self.sequence;
        self.sequence = self.sequence.wrapping_add(count as u32);
        first
    }
}

/// Sets a socket buffer with the first of `options` the kernel takes: the `…FORCE` option goes
/// beyond `net.core.[rw]mem_max` when allowed (Ferry runs with CAP_NET_ADMIN).
pub(super) fn size_buffer(socket: &Socket, options: [libc::c_int; 2], bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in options {
        // SAFETY: the fd is the socket's own and stays open; the value is a c_int whose
        // size is passed along.
        let result = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            return;
        }
    }
    warn!(bytes, error = %io::Error::last_os_error(), "cannot size a netlink socket buffer");
}

/// The replies queued after a batch.
#[derive(Default)]
struct Drained {
    replies: Vec<Reply>,
    overrun: bool,
}

/// The objects of the dumps that make up one reading of the table, and whether they all
/// describe one ruleset: no dump was interrupted and every object carries the same
/// generation (nf_tables flags a change only within one dump, not between dumps).
struct Reading {
    objects: Vec<Object>,
    generation: Option<u16>,
    consistent: bool,
}

impl Reading {
    fn new() -> Self {
        Self {
            objects: Vec::new(),
            generation: None,
            consistent: true,
        }
    }

    fn add(&mut self, generation: u16, object: Object) {
        if *self.generation.get_or_insert(generation) != generation {
            self.consistent = false;
        }
        self.objects.push(object);
    }
}

impl NftDataplane for NetlinkDataplane {
    fn apply(&mut self, batch: &Batch) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let begin = self.sequence;
        let encoded = encode_batch(batch, begin);
        let messages = encoded.operation_of_message.len();
        self.take_sequences(messages + 2);
        self.size_send_buffer(encoded.bytes.len() + 64 * 1024);
        self.socket
            .send(&encoded.bytes, 0)
            .map_err(NftError::Socket)?;
        let drained = self.drain()?;
        match encoded.outcome(&drained.replies) {
            BatchOutcome::Committed => {
                debug!(
                    operations = batch.ops.len(),
                    messages,
                    bytes = encoded.bytes.len(),
                    "applied nf_tables batch"
                );
                Ok(())
            }
            BatchOutcome::Refused { index, errno } => {
                let operation = batch.ops[index].to_string();
                warn!(%operation, index, errno = %Errno(errno), "nf_tables refused an operation");
                Err(NftError::Rejected {
                    index,
                    operation,
                    errno: Errno(errno),
                })
            }
            BatchOutcome::Failed { errno } => Err(NftError::BatchFailed {
                errno: Errno(errno),
            }),
            BatchOutcome::Unconfirmed if drained.overrun => Err(NftError::Socket(
                io::Error::from_raw_os_error(libc::ENOBUFS),
            )),
            BatchOutcome::Unconfirmed => Err(NftError::MissingAcks {
                expected: 1,
                received: 0,
            }),
        }
    }

    /// Reads again when Ferry's table changed while it was being read, so the snapshot is
    /// whole (`nft` reads again on any change of generation; see [`ChangeWatch`] for why
    /// Ferry looks closer).
    fn read_table(&mut self) -> Result<Option<TableSnapshot>, NftError> {
        for attempt in 1..=READ_ATTEMPTS {
            self.changes.start()?;
            let reading = self.read_once()?;
            let touched = self.changes.touched(NFPROTO_INET, TABLE_NAME)?;
            if reading.consistent || !touched {
                return TableSnapshot::assemble(reading.objects).map_err(|e| NftError::Decode(e.0));
            }
            debug!(
                attempt,
                "the ruleset changed while it was read; reading again"
            );
        }
        Err(NftError::Inconsistent {
            attempts: READ_ATTEMPTS,
        })
    }
}
