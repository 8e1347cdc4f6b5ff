//! LoadBalancer addresses from `LoadBalancerPool`s, decided by a pure function.
//!
//! The Services' `status.loadBalancer.ingress` is the only record of who has which address:
//! [`allocate`] reads the pools, the Services and the namespaces and says what every status
//! should list. Nothing else is remembered, so a restart or a new leader recomputes the same
//! answer, and two Services listing one address are found and settled the same way each
//! time.
//!
//! Who Ferry serves: `type: LoadBalancer` Services whose `spec.loadBalancerClass` is
//! `ferry.dev/pool`, and those without a class while some pool is `default`. A Service may
//! name a pool (`ferry.dev/pool`) or addresses (`ferry.dev/loadbalancer-ips`, or the
//! deprecated `spec.loadBalancerIP`), and share an address with Services carrying the same
//! `ferry.dev/allow-shared-ip` key whose protocol/port pairs differ.

mod addresses;
mod allocate;
mod outcome;
mod pools;
mod request;

pub use addresses::{AddressError, AddressRange, Family};
pub use allocate::allocate;
pub use outcome::{Assigned, Assignments, Conflict, Outcome, PoolNames, PoolReport, Problem};
pub use pools::{PoolProblem, Refusal};
pub use request::{ADDRESSES_ANNOTATION, POOL_ANNOTATION, SHARING_ANNOTATION, ServiceKey};
