//! Model tests. They run as `node-a` and use this address plan:
//!
//! | what                  | IPv4                         | IPv6                       |
//! |-----------------------|------------------------------|----------------------------|
//! | pods on node-a        | 10.244.1.0/24                | fd00:10:244:1::/64         |
//! | pods on node-b        | 10.244.2.0/24                | fd00:10:244:2::/64         |
//! | cluster CIDR          | 10.244.0.0/16                | fd00:10:244::/56           |
//! | Service ClusterIPs    | 10.96.0.0/12 (10.96.0.x)     | fd00:10:96::/112           |
//! | node-a                | 192.168.1.10 (InternalIP), 203.0.113.10 (ExternalIP) | fd00:192:168:1::10 |
//! | LoadBalancer ingress  | 172.18.255.0/24              |                            |
//! | externalIPs           | 198.51.100.0/24              |                            |
//!
//! Container ports are 8080 (http) and 5353 (dns); Service ports 80 and 53.

mod fixtures;
mod frontends;
mod incremental;
mod input;
mod policies;
