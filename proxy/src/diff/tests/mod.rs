//! Diff tests. Address plan (as in the model tests):
//! ClusterIPs 10.96.0.x, pods 10.244.1.x (this node) and 10.244.2.x, this node 192.168.1.10,
//! and 10.0.0.x for virtual servers someone else made (keepalived, a person with ipvsadm).

mod fixtures;
mod properties;
mod rules;
