//! The nftables dataplane: Ferry's whole service proxy as one `inet ferry` table.
//!
//! Why a netlink codec of our own: the `nft` binary re-reads the whole ruleset on every
//! invocation (measured here with 10,000 Services × 10 endpoints: ~75 ms for a one-endpoint
//! change with this layout, ~0.5 s with a chain per endpoint), while the kernel's own work for
//! such a change is a handful of messages. libnftnl (and the `nftnl` crate over it) is
//! GPL-2.0 and `rustables` is GPL-3.0, neither of which fits an Apache-2.0 project. So Ferry
//! encodes nf_tables batches itself on the rust-netlink stack (`netlink-packet-core` for
//! framing and attributes, `netlink-sys` for the socket), from the kernel's uapi layout
//! (`linux/netfilter/nf_tables.h`, `nfnetlink.h`); `nft` remains a test oracle and a
//! debugging tool.
//!
//! Layers, pure first: [`ruleset`] (typed IR) ← [`build`] (from the model) → [`render`] (nft
//! syntax), [`tracer`] (what a packet experiences), [`diff`] (current × desired → [`Batch`]);
//! then the edge: [`NftDataplane`] with the kernel implementation in [`netlink`] and an
//! in-memory [`fake`] that fails the way the kernel does.
//!
//! State is tracked in memory rather than adopted from the kernel: Ferry replaces its table in
//! one transaction at start and after any failure (conntrack keeps established connections'
//! NAT, so nothing is lost), diffs against what it applied last otherwise, and can compare a
//! dump of the table ([`NftDataplane::read_table`]) with what it meant to detect drift.

pub mod build;
pub mod diff;
pub mod fake;
pub mod netlink;
pub mod render;
pub mod ruleset;
pub mod tracer;

use std::fmt;
use std::io;

use thiserror::Error;

pub use build::build;
pub use diff::{Batch, Op, diff, full_replace};
pub use netlink::{NetlinkDataplane, TableSnapshot};
pub use render::render;
pub use ruleset::Ruleset;

/// A kernel error number, shown as the OS describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

#[derive(Debug, Error)]
pub enum NftError {
    /// nf_tables refused one message; the whole batch was rolled back.
    #[error("nf_tables refused {operation} (operation {index} of the batch): {errno}")]
    Rejected {
        index: usize,
        operation: String,
        errno: Errno,
    },
    /// nf_tables refused the batch as a whole (its commit); nothing changed.
    #[error("nf_tables refused the batch: {errno}")]
    BatchFailed { errno: Errno },
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("malformed netlink message: {0}")]
    Decode(String),
    /// The kernel neither refused the batch nor confirmed it (Ferry asks for one
    /// acknowledgement, on the batch's last message).
    #[error("the kernel acknowledged {received} of {expected} messages")]
    MissingAcks { expected: usize, received: usize },
    /// Another program kept changing Ferry's table while Ferry read it.
    #[error("Ferry's table changed during each of {attempts} attempts to read it")]
    Inconsistent { attempts: usize },
}

impl NftError {
    /// Label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            NftError::Rejected { .. } => "rejected",
            NftError::BatchFailed { .. } => "batch_failed",
            NftError::Socket(_) => "socket",
            NftError::Decode(_) => "decode",
            NftError::MissingAcks { .. } => "missing_acks",
            NftError::Inconsistent { .. } => "inconsistent",
        }
    }
}

/// The narrow edge between the sync loop and nf_tables.
pub trait NftDataplane {
    /// Applies `batch` as one transaction: all of it or nothing.
    fn apply(&mut self, batch: &Batch) -> Result<(), NftError>;

    /// What table `inet ferry` holds, in kernel terms; `None` when there is no such table.
    fn read_table(&mut self) -> Result<Option<TableSnapshot>, NftError>;
}

/// Deletes table `inet ferry` if it exists, and nothing else (for `ferry-proxy cleanup`).
pub fn remove_owned() -> Result<(), NftError> {
    NetlinkDataplane::open()?.apply(&Batch::remove_table())
}
