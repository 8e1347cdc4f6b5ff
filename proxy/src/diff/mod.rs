//! The diff: a pure function from (kernel state, desired dataplane, draining real servers,
//! now) to the ordered ops that reconcile them, and the next draining state.
//!
//! Rules:
//! - a real server no longer desired gets weight 0 once, and is deleted when it has no active
//!   and no inactive connections or its grace period has passed (TCP, SCTP);
//! - a UDP real server is deleted at once, with a conntrack cleanup for it;
//! - a UDP frontend that goes from no endpoints to some gets its conntrack entries deleted;
//! - a virtual server no longer desired is deleted only if Ferry owns it ([`Ownership`]).

mod apply;
mod graceful;
mod op;
mod ownership;
mod plan;

#[cfg(test)]
mod tests;

pub use apply::{ApplyError, apply};
pub use graceful::GracefulState;
pub use op::Op;
pub use ownership::{DEFAULT_GRACE_PERIOD, DEFAULT_NODE_PORT_RANGE, DiffConfig, Ownership};
pub use plan::{Diff, diff};
