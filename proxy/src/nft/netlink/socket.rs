//! The kernel implementation of [`NftDataplane`]: one `NETLINK_NETFILTER` socket.

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::Socket;
use tracing::{debug, warn};

use super::message::{Reply, decode_replies, dump_elements_request, dump_request, encode_batch};
use super::snapshot::{Object, TableSnapshot};
use super::uapi::{NETLINK_NETFILTER, NFT_SET_ANONYMOUS, NFT_SET_EVAL, msg};
use crate::nft::diff::Batch;
use crate::nft::{Errno, NftDataplane, NftError};

/// Room for one datagram from the kernel (dumps fill up to a few pages per datagram).
const RECEIVE_BUFFER: usize = 256 * 1024;
/// Kernel memory an acknowledgement takes in the socket's receive queue, with margin: every
/// acknowledgement of a batch is queued before Ferry reads the first.
const ACK_TRUESIZE: usize = 1024;

pub struct NetlinkDataplane {
    socket: Socket,
    sequence: u32,
}

impl NetlinkDataplane {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NftError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        // Acknowledgements without a copy of each request keep the receive queue small.
        socket.set_cap_ack(true).map_err(NftError::Socket)?;
        socket.set_ext_ack(true).map_err(NftError::Socket)?;
        Ok(Self { socket, sequence: 1 })
    }

    /// Sizes a socket buffer, beyond `net.core.*mem_max` when allowed (Ferry runs with
    /// CAP_NET_ADMIN); a smaller buffer only fails large batches, with a clear error.
    fn size_buffer(&self, forced: libc::c_int, plain: libc::c_int, bytes: usize) {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        for option in [forced, plain] {
            // SAFETY: the fd is the socket's own and stays open; the value is a c_int whose
            // size is passed along.
            let result = unsafe {
                libc::setsockopt(
                    self.socket.as_raw_fd(),
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
        warn!(bytes, error = %io::Error::last_os_error(), "cannot size the netlink socket buffer");
    }

    /// Everything the kernel queued for this socket: a batch is processed inside `send`, so
    /// all its replies are queued when it returns.
    fn drain(&self) -> Result<Vec<Reply>, NftError> {
        self.socket.set_non_blocking(true).map_err(NftError::Socket)?;
        let mut replies = Vec::new();
        let result = loop {
            let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
            match self.socket.recv(&mut buffer, 0) {
                Ok(_) => match decode_replies(&buffer) {
                    Ok(decoded) => replies.extend(decoded),
                    Err(e) => break Err(NftError::Decode(e.0)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(NftError::Socket(e)),
            }
        };
        self.socket.set_non_blocking(false).map_err(NftError::Socket)?;
        result.map(|()| replies)
    }

    /// Sends one dump request and collects its objects until `NLMSG_DONE`.
    fn dump(&mut self, request: impl FnOnce(u32) -> Vec<u8>) -> Result<Vec<Object>, NftError> {
        let sequence = self.take_sequences(1);
        self.socket.send(&request(sequence), 0).map_err(NftError::Socket)?;
        let mut objects = Vec::new();
        loop {
            let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
            self.socket.recv(&mut buffer, 0).map_err(NftError::Socket)?;
            for reply in decode_replies(&buffer).map_err(|e| NftError::Decode(e.0))? {
                match reply {
                    Reply::Object { sequence: s, object } if s == sequence => objects.push(object),
                    Reply::Done { sequence: s } if s == sequence => return Ok(objects),
                    Reply::Ack { sequence: s, errno } if s == sequence && errno != 0 => {
                        return Err(NftError::Rejected { index: 0, operation: "dump".into(), errno: Errno(errno) });
                    }
                    _ => {}
                }
            }
        }
    }

    fn take_sequences(&mut self, count: usize) -> u32 {
        let first = self.sequence;
        self.sequence = self.sequence.wrapping_add(count as u32);
        first
    }
}

impl NftDataplane for NetlinkDataplane {
    fn apply(&mut self, batch: &Batch) -> Result<(), NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let begin = self.sequence;
        let encoded = encode_batch(batch, begin);
        let expected = encoded.operation_of_message.len();
        self.take_sequences(expected + 2);
        self.size_buffer(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, encoded.bytes.len() + 64 * 1024);
        self.size_buffer(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, (expected * ACK_TRUESIZE).max(RECEIVE_BUFFER));
        self.socket.send(&encoded.bytes, 0).map_err(NftError::Socket)?;
        let mut received = 0;
        let mut first_error = None;
        for reply in self.drain()? {
            let Reply::Ack { sequence, errno } = reply else { continue };
            let Some(index) = encoded.operation(sequence) else { continue };
            received += 1;
            if errno != 0 {
                warn!(operation = %batch.ops[index], index, errno = %Errno(errno), "nf_tables refused an operation");
                first_error.get_or_insert((index, errno));
            }
        }
        if let Some((index, errno)) = first_error {
            let operation = batch.ops[index].to_string();
            return Err(NftError::Rejected { index, operation, errno: Errno(errno) });
        }
        if received < expected {
            return Err(NftError::MissingAcks { expected, received });
        }
        debug!(operations = batch.ops.len(), messages = expected, bytes = encoded.bytes.len(), "applied nf_tables batch");
        Ok(())
    }

    fn read_table(&mut self) -> Result<Option<TableSnapshot>, NftError> {
        let mut objects = self.dump(|s| dump_request(msg::GETTABLE, s, Vec::new()))?;
        if TableSnapshot::assemble(objects.clone()).map_err(|e| NftError::Decode(e.0))?.is_none() {
            return Ok(None);
        }
        objects.extend(self.dump(|s| dump_request(msg::GETCHAIN, s, Vec::new()))?);
        let sets = self.dump(|s| dump_request(msg::GETSET, s, Vec::new()))?;
        let with_elements: Vec<String> = sets
            .iter()
            .filter_map(|object| match object {
                Object::Set { table, name, spec }
                    if table == crate::nft::ruleset::TABLE_NAME
                        && (spec.flags & NFT_SET_EVAL == 0 || spec.flags & NFT_SET_ANONYMOUS != 0) =>
                {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        objects.extend(sets);
        for set in with_elements {
            objects.extend(self.dump(|s| dump_elements_request(&set, s))?);
        }
        objects.extend(self.dump(|s| dump_request(msg::GETRULE, s, Vec::new()))?);
        TableSnapshot::assemble(objects).map_err(|e| NftError::Decode(e.0))
    }
}
