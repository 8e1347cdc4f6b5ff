//! The sysctls IPVS needs, written only when they differ, behind a trait so that the choice of
//! values is tested without touching /proc.
//!
//! Run after IPVS is connected: the `net.ipv4.vs.*` keys exist only once `ip_vs` is loaded, and
//! they are per network namespace, like the rest.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing::info;

/// Reads and writes sysctls by dotted key (`net.ipv4.ip_forward`).
pub trait Sysctl: Send + Sync {
    fn read(&self, key: &str) -> Result<String, SysctlError>;
    fn write(&self, key: &str, value: &str) -> Result<(), SysctlError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("reading sysctl {key}: {source}")]
    Read {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("writing sysctl {key} = {value}: {source}")]
    Write {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl kernel.osrelease = {release:?} does not start with a kernel version")]
    KernelVersion { release: String },
}

/// Sysctls through /proc/sys of the calling thread's network namespace.
#[derive(Debug, Clone)]
pub struct ProcSysctl {
    root: PathBuf,
}

impl Default for ProcSysctl {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcSysctl {
    pub fn new() -> Self {
        Self::with_root("/proc/sys")
    }

    /// Sysctls under another directory standing for /proc/sys (a host mount, say).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.replace('.', "/"))
    }
}

impl Sysctl for ProcSysctl {
    fn read(&self, key: &str) -> Result<String, SysctlError> {
        std::fs::read_to_string(self.path(key))
            .map(|value| value.trim().to_string())
            .map_err(|source| SysctlError::Read {
                key: key.to_string(),
                source,
            })
    }

    fn write(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        std::fs::write(self.path(key), value).map_err(|source| SysctlError::Write {
            key: key.to_string(),
            value: value.to_string(),
            source,
        })
    }
}

/// Sysctls in memory, recording writes. Keys it was not given do not exist, as in /proc.
#[derive(Debug, Default)]
pub struct FakeSysctl {
    values: Mutex<BTreeMap<String, String>>,
    writes: Mutex<Vec<(String, String)>>,
}

impl FakeSysctl {
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let values = values
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Self {
            values: Mutex::new(values),
            writes: Mutex::default(),
        }
    }

    /// Every write, in order.
    pub fn writes(&self) -> Vec<(String, String)> {
        lock(&self.writes).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn missing(key: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no sysctl {key}"))
}

impl Sysctl for FakeSysctl {
    fn read(&self, key: &str) -> Result<String, SysctlError> {
        lock(&self.values)
            .get(key)
            .cloned()
            .ok_or_else(|| SysctlError::Read {
                key: key.to_string(),
                source: missing(key),
            })
    }

    fn write(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        let mut values = lock(&self.values);
        let slot = values.get_mut(key).ok_or_else(|| SysctlError::Write {
            key: key.to_string(),
            value: value.to_string(),
            source: missing(key),
        })?;
        *slot = value.to_string();
        lock(&self.writes).push((key.to_string(), value.to_string()));
        Ok(())
    }
}

/// A kernel release's major and minor numbers, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses the start of `uname -r` (`6.18.44-fc-v657`, `5.4.0-150-generic`).
    pub fn parse(release: &str) -> Option<Self> {
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        Some(Self {
            major: numbers.next()?.ok()?,
            minor: numbers.next()?.ok()?,
        })
    }
}

/// The first kernel whose IPVS reschedules a reused client port without dropping its first
/// packets (the 1-second stalls kube-proxy users reported before 5.9).
const CONN_REUSE_FIXED: KernelVersion = KernelVersion { major: 5, minor: 9 };

/// The values Ferry wants, in the order they are applied.
pub fn desired(kernel: KernelVersion, strict_arp: bool) -> Vec<(&'static str, &'static str)> {
    let mut wanted = vec![
        ("net.ipv4.ip_forward", "1"),
        // Lets nftables masquerade and filter IPVS flows: they get conntrack entries.
        ("net.ipv4.vs.conntrack", "1"),
        // Packets of connections to a deleted real server are dropped at once instead of
        // stalling until the entry times out.
        ("net.ipv4.vs.expire_nodest_conn", "1"),
        // Persistence templates to a drained (weight 0) server expire, so affinity moves on.
        ("net.ipv4.vs.expire_quiescent_template", "1"),
        // Before 5.9, reuse mode 1 delays new connections that reuse a port by a second; 0 is
        // kube-proxy's workaround there, at the cost of not rescheduling reused ports.
        (
            "net.ipv4.vs.conn_reuse_mode",
            if kernel < CONN_REUSE_FIXED { "0" } else { "1" },
        ),
    ];
    if strict_arp {
        // Addresses on the dummy link must not be answered for on other links: only the
        // announcing node may own a LoadBalancer IP.
        wanted.extend([
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
        ]);
    }
    wanted
}

/// Reads the kernel version, then writes each `desired` value that differs. Returns the keys
/// it changed.
pub fn apply(sysctl: &impl Sysctl, strict_arp: bool) -> Result<Vec<&'static str>, SysctlError> {
    let release = sysctl.read("kernel.osrelease")?;
    let kernel = KernelVersion::parse(&release).ok_or(SysctlError::KernelVersion { release })?;
    apply_values(sysctl, desired(kernel, strict_arp))
}

/// Writes each value that differs, in order. Returns the keys it changed.
pub fn apply_values(
    sysctl: &impl Sysctl,
    wanted: impl IntoIterator<Item = (&'static str, &'static str)>,
) -> Result<Vec<&'static str>, SysctlError> {
    let mut changed = Vec::new();
    for (key, value) in wanted {
        let current = sysctl.read(key)?;
        if current != value {
            sysctl.write(key, value)?;
            info!(key, from = %current, to = value, "set sysctl");
            changed.push(key);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPVS_KEYS: [&str; 7] = [
        "net.ipv4.ip_forward",
        "net.ipv4.vs.conntrack",
        "net.ipv4.vs.expire_nodest_conn",
        "net.ipv4.vs.expire_quiescent_template",
        "net.ipv4.vs.conn_reuse_mode",
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
    ];

    /// A freshly booted kernel with ip_vs loaded: every key at its default.
    fn booted(release: &str) -> FakeSysctl {
        let defaults = ["0", "0", "0", "0", "1", "0", "0"];
        FakeSysctl::new(
            [("kernel.osrelease", release)]
                .into_iter()
                .chain(IPVS_KEYS.into_iter().zip(defaults)),
        )
    }

    #[test]
    fn kernel_versions_parse_from_uname() {
        let parse = KernelVersion::parse;
        assert_eq!(
            parse("6.18.44-fc-v657"),
            Some(KernelVersion {
                major: 6,
                minor: 18
            })
        );
        assert_eq!(
            parse("5.4.0-150-generic"),
            Some(KernelVersion { major: 5, minor: 4 })
        );
        assert_eq!(
            parse("5.10"),
            Some(KernelVersion {
                major: 5,
                minor: 10
            })
        );
        assert_eq!(parse("linux"), None);
        assert_eq!(parse("6"), None);
        assert!(parse("5.10.0").unwrap() > CONN_REUSE_FIXED);
    }

    #[test]
    fn a_new_kernel_keeps_connection_reuse_and_writes_only_what_differs() {
        let sysctl = booted("6.1.0-18-amd64");
        let changed = apply(&sysctl, false).unwrap();
        assert_eq!(changed, IPVS_KEYS[..4]);
        let writes: Vec<_> = sysctl
            .writes()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            writes,
            [
                "net.ipv4.ip_forward=1",
                "net.ipv4.vs.conntrack=1",
                "net.ipv4.vs.expire_nodest_conn=1",
                "net.ipv4.vs.expire_quiescent_template=1",
            ]
        );
        assert!(
            apply(&sysctl, false).unwrap().is_empty(),
            "a second run changes nothing"
        );
    }

    #[test]
    fn an_old_kernel_gets_the_conn_reuse_workaround() {
        let sysctl = booted("5.4.0-150-generic");
        apply(&sysctl, false).unwrap();
        assert!(
            sysctl
                .writes()
                .contains(&("net.ipv4.vs.conn_reuse_mode".into(), "0".into()))
        );
    }

    #[test]
    fn strict_arp_is_only_set_when_asked() {
        let sysctl = booted("6.1.0");
        let changed = apply(&sysctl, true).unwrap();
        assert!(changed.contains(&"net.ipv4.conf.all.arp_ignore"));
        assert!(changed.contains(&"net.ipv4.conf.all.arp_announce"));
        assert_eq!(sysctl.read("net.ipv4.conf.all.arp_announce").unwrap(), "2");
    }

    #[test]
    fn errors_name_the_key() {
        // ip_vs not loaded: no net.ipv4.vs.* at all.
        let sysctl = FakeSysctl::new([("kernel.osrelease", "6.1.0"), ("net.ipv4.ip_forward", "1")]);
        let error = apply(&sysctl, false).unwrap_err();
        assert!(
            matches!(&error, SysctlError::Read { key, .. } if key == "net.ipv4.vs.conntrack"),
            "{error}"
        );
        assert!(error.to_string().contains("net.ipv4.vs.conntrack"));
        let garbled = FakeSysctl::new([("kernel.osrelease", "unknown")]);
        assert!(matches!(
            apply(&garbled, false),
            Err(SysctlError::KernelVersion { .. })
        ));
    }
}
