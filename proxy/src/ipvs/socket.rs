//! One netlink request, its replies and its ACK: the transport under `ipvs` and `conntrack`.
//!
//! `netlink-proto` would do this for us, but it logs and drops replies it cannot decode, which
//! would silently shrink a dump. Here framing errors, kernel errors and interrupted dumps come
//! back as values, and decoding the replies is left to the caller's codec.

use std::io;

use netlink_packet_core::{
    DecodeError, ErrorBuffer, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

/// Whether a request reads one object (and waits for the ACK) or dumps a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Do,
    Dump,
}

impl Kind {
    fn flags(self) -> u16 {
        match self {
            // The ACK is what tells us a command without a reply has completed.
            Kind::Do => NLM_F_REQUEST | NLM_F_ACK,
            // Dumps end with NLMSG_DONE; the kernel never ACKs them.
            Kind::Dump => NLM_F_REQUEST | NLM_F_DUMP,
        }
    }
}

/// One reply message: its netlink type and everything after the netlink header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message_type: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The kernel answered with this (positive) errno.
    #[error("kernel error: {}", io::Error::from_raw_os_error(*.0))]
    Kernel(i32),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the dump was interrupted by a concurrent change")]
    Interrupted,
}

/// Serialises `payload` as a complete netlink request.
pub fn frame<M: NetlinkSerializable>(payload: M, kind: Kind, sequence_number: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = kind.flags();
    header.sequence_number = sequence_number;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// Whether the request's last message has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    More,
    Complete,
}

/// The replies to one request, collected across datagrams.
#[derive(Debug, Default)]
pub struct Collector {
    replies: Vec<Reply>,
    interrupted: bool,
}

impl Collector {
    /// Walks the messages of one datagram, keeping those answering `sequence_number`; replies
    /// to earlier, abandoned requests are skipped.
    pub fn read_datagram(
        &mut self,
        datagram: &[u8],
        sequence_number: u32,
    ) -> Result<Progress, RequestError> {
        let mut offset = 0;
        while offset < datagram.len() {
            let message = NetlinkBuffer::new_checked(&datagram[offset..])?;
            let length = message.length() as usize;
            // Messages are 4-byte aligned inside a datagram.
            offset = offset.saturating_add(length.next_multiple_of(4));
            if message.sequence_number() != sequence_number {
                continue;
            }
            let payload = message.payload();
            match message.message_type() {
                NLMSG_NOOP => {}
                NLMSG_ERROR => {
                    let error = ErrorBuffer::new_checked(payload)?;
                    return match error.code() {
                        None => Ok(Progress::Complete),
                        Some(code) => Err(RequestError::Kernel(code.get().saturating_neg())),
                    };
                }
                NLMSG_DONE => {
                    // A dump that fails after it started reports the errno in NLMSG_DONE.
                    if let Some(code) = payload.first_chunk::<4>().map(|c| i32::from_ne_bytes(*c))
                        && code < 0
                    {
                        return Err(RequestError::Kernel(code.saturating_neg()));
                    }
                    if self.interrupted {
                        return Err(RequestError::Interrupted);
                    }
                    return Ok(Progress::Complete);
                }
                NLMSG_OVERRUN => {
                    return Err(DecodeError::from("the kernel reported a netlink overrun").into());
                }
                message_type => {
                    self.interrupted |= message.flags() & NLM_F_DUMP_INTR != 0;
                    self.replies.push(Reply {
                        message_type,
                        payload: payload.to_vec(),
                    });
                }
            }
        }
        Ok(Progress::More)
    }

    pub fn into_replies(self) -> Vec<Reply> {
        self.replies
    }
}

/// A netlink socket that runs one request at a time.
pub struct NetlinkSocket {
    protocol: isize,
    socket: TokioSocket,
    sequence_number: u32,
    /// False while a request is in flight or after one was abandoned half-read: the kernel
    /// would answer the next dump with EBUSY, so the socket is replaced first.
    clean: bool,
}

impl NetlinkSocket {
    /// Opens a socket in the calling thread's network namespace; needs a Tokio runtime.
    pub fn open(protocol: isize) -> io::Result<Self> {
        // Tokio's AsyncFd panics outside a runtime; an error is kinder.
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        Ok(Self {
            protocol,
            socket: TokioSocket::new(protocol)?,
            sequence_number: 0,
            clean: true,
        })
    }

    /// Sends one request and returns its replies once the kernel has finished answering.
    pub async fn request<M: NetlinkSerializable>(
        &mut self,
        payload: M,
        kind: Kind,
    ) -> Result<Vec<Reply>, RequestError> {
        if !self.clean {
            self.socket = TokioSocket::new(self.protocol)?;
        }
        self.clean = false;
        self.sequence_number = self.sequence_number.wrapping_add(1);
        let sequence_number = self.sequence_number;
        let request = frame(payload, kind, sequence_number);
        self.socket
            .send_to(&request, &SocketAddr::new(0, 0))
            .await?;
        let mut collector = Collector::default();
        loop {
            let (datagram, _) = self.socket.recv_from_full().await?;
            let progress = collector.read_datagram(&datagram, sequence_number);
            // Kernel errors and interrupted dumps end the request; the socket stays usable.
            self.clean = matches!(
                progress,
                Ok(Progress::Complete) | Err(RequestError::Kernel(_) | RequestError::Interrupted)
            );
            if progress? == Progress::Complete {
                return Ok(collector.into_replies());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    fn message(message_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let length = 16 + payload.len() as u32;
        let mut bytes = Vec::new();
        bytes.extend(length.to_ne_bytes());
        bytes.extend(message_type.to_ne_bytes());
        bytes.extend(flags.to_ne_bytes());
        bytes.extend(seq.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        bytes.extend(payload);
        bytes
    }

    const MULTI: u16 = 0x2;

    #[test]
    fn a_dump_spans_datagrams_and_ends_at_done() {
        let mut collector = Collector::default();
        let first = [
            message(0x1d, MULTI, 7, &[1, 0, 0, 0]),
            message(0x1d, MULTI, 7, &[2, 0, 0, 0]),
        ]
        .concat();
        assert_eq!(collector.read_datagram(&first, 7).unwrap(), Progress::More);
        let second = [
            message(0x1d, MULTI, 7, &[3, 0, 0, 0]),
            message(NLMSG_DONE, MULTI, 7, &0i32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(
            collector.read_datagram(&second, 7).unwrap(),
            Progress::Complete
        );
        let payloads: Vec<u8> = collector
            .into_replies()
            .iter()
            .map(|r| r.payload[0])
            .collect();
        assert_eq!(payloads, [1, 2, 3]);
    }

    #[test]
    fn replies_to_other_requests_are_skipped() {
        let mut collector = Collector::default();
        let datagram = [
            message(0x1d, MULTI, 6, &[9, 0, 0, 0]),
            message(NLMSG_DONE, MULTI, 6, &0i32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(
            collector.read_datagram(&datagram, 7).unwrap(),
            Progress::More
        );
        assert!(collector.into_replies().is_empty());
    }

    #[test]
    fn an_ack_completes_and_an_error_carries_the_errno() {
        let ack = message(NLMSG_ERROR, 0, 3, &[0u8; 20]);
        assert_eq!(
            Collector::default().read_datagram(&ack, 3).unwrap(),
            Progress::Complete
        );
        let mut error = (-libc::EEXIST).to_ne_bytes().to_vec();
        error.extend([0u8; 16]);
        let error = message(NLMSG_ERROR, 0, 3, &error);
        let result = Collector::default().read_datagram(&error, 3);
        assert!(
            matches!(result, Err(RequestError::Kernel(libc::EEXIST))),
            "{result:?}"
        );
    }

    #[test]
    fn a_failed_dump_reports_the_errno_in_done() {
        let done = message(NLMSG_DONE, MULTI, 1, &(-libc::EPERM).to_ne_bytes());
        let result = Collector::default().read_datagram(&done, 1);
        assert!(
            matches!(result, Err(RequestError::Kernel(libc::EPERM))),
            "{result:?}"
        );
    }

    #[test]
    fn an_interrupted_dump_is_an_error_at_its_end() {
        let mut collector = Collector::default();
        let datagram = [
            message(0x1d, MULTI | NLM_F_DUMP_INTR, 1, &[1, 0, 0, 0]),
            message(NLMSG_DONE, MULTI, 1, &0i32.to_ne_bytes()),
        ]
        .concat();
        assert!(matches!(
            collector.read_datagram(&datagram, 1),
            Err(RequestError::Interrupted)
        ));
    }

    #[test]
    fn truncated_datagrams_are_decode_errors() {
        let mut datagram = message(0x1d, MULTI, 1, &[1, 0, 0, 0]);
        datagram.truncate(18);
        assert!(matches!(
            Collector::default().read_datagram(&datagram, 1),
            Err(RequestError::Decode(_))
        ));
    }
}
