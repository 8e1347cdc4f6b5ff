//! The sysctls each mode needs, written at start.
//!
//! In a pod, the node's `/proc/sys/net` is mounted writable under `sysctlRoot` (the
//! container's own /proc/sys is read-only), while the rest of /proc/sys, such as
//! `kernel.osrelease`, is read where it is: [`NodeSysctl`] routes the keys accordingly.

use std::path::PathBuf;

use tracing::info;

use crate::config::Mode;
use crate::sysctl::{self, ProcSysctl, Sysctl, SysctlError};

/// `net.*` under the node's mount, everything else under /proc/sys.
#[derive(Debug, Clone)]
pub struct NodeSysctl {
    net: ProcSysctl,
    other: ProcSysctl,
}

impl NodeSysctl {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            net: ProcSysctl::with_root(root),
            other: ProcSysctl::new(),
        }
    }

    fn route(&self, key: &str) -> &ProcSysctl {
        if key.starts_with("net.") {
            &self.net
        } else {
            &self.other
        }
    }
}

impl Sysctl for NodeSysctl {
    fn read(&self, key: &str) -> Result<String, SysctlError> {
        self.route(key).read(key)
    }

    fn write(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        self.route(key).write(key, value)
    }
}

/// Sets what `mode` needs. `strict_arp`: IPVS mode only (see `IpvsConfig`).
/// `loopback_node_ports`: NodePorts on 127.0.0.1 need `route_localnet` (CVE-2020-8558: only
/// when configured).
pub fn apply_sysctls(
    sysctl: &impl Sysctl,
    mode: Mode,
    strict_arp: bool,
    loopback_node_ports: bool,
) -> Result<(), SysctlError> {
    let mut changed = match mode {
        Mode::Ipvs => sysctl::apply(sysctl, strict_arp)?,
        Mode::Nftables => sysctl::apply_values(sysctl, [("net.ipv4.ip_forward", "1")])?,
    };
    if loopback_node_ports {
        changed.extend(sysctl::apply_values(
            sysctl,
            [("net.ipv4.conf.all.route_localnet", "1")],
        )?);
    }
    info!(?mode, changed = changed.len(), "sysctls in place");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysctl::FakeSysctl;

    #[test]
    fn nftables_mode_only_forwards() {
        let sysctl = FakeSysctl::new([
            ("kernel.osrelease", "6.1.0"),
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv4.conf.all.route_localnet", "0"),
        ]);
        apply_sysctls(&sysctl, Mode::Nftables, false, false).unwrap();
        assert_eq!(
            sysctl.writes(),
            [("net.ipv4.ip_forward".into(), "1".into())]
        );
        apply_sysctls(&sysctl, Mode::Nftables, false, true).unwrap();
        assert_eq!(
            sysctl.read("net.ipv4.conf.all.route_localnet").unwrap(),
            "1"
        );
    }

    #[test]
    fn ipvs_mode_sets_the_ipvs_keys() {
        let keys = [
            ("kernel.osrelease", "6.1.0"),
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv4.vs.conntrack", "0"),
            ("net.ipv4.vs.expire_nodest_conn", "0"),
            ("net.ipv4.vs.expire_quiescent_template", "0"),
            ("net.ipv4.vs.conn_reuse_mode", "1"),
        ];
        let sysctl = FakeSysctl::new(keys);
        apply_sysctls(&sysctl, Mode::Ipvs, false, false).unwrap();
        assert_eq!(sysctl.read("net.ipv4.vs.conntrack").unwrap(), "1");
    }

    #[test]
    fn net_keys_go_to_the_node_mount() {
        let root = std::env::temp_dir().join(format!("ferry-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(root.join("net/ipv4")).unwrap();
        std::fs::write(root.join("net/ipv4/ip_forward"), "0\n").unwrap();
        let sysctl = NodeSysctl::new(&root);
        sysctl.write("net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(sysctl.read("net.ipv4.ip_forward").unwrap(), "1");
        assert!(
            sysctl.read("kernel.osrelease").is_ok(),
            "read from /proc/sys"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
