//! The kernel edge: nf_tables over netlink, encoded and decoded by Ferry itself (see the
//! parent module for why).
//!
//! [`lower`] turns the IR into the kernel's expressions, [`message`] frames batches and dump
//! requests and decodes replies, [`socket`] talks to the kernel, [`snapshot`] is the table as
//! the kernel reports it, [`changes`] tells whether another program changed it meanwhile.

pub mod attr;
pub mod changes;
pub mod expr;
pub mod lower;
pub mod message;
pub mod snapshot;
pub mod socket;
pub mod uapi;

pub use snapshot::TableSnapshot;
pub use socket::NetlinkDataplane;
