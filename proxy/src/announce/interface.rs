//! The interface the node answers on: named by the configuration, or the one holding the
//! node's InternalIP (the segment the other nodes and the router share).

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frame::Mac;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: i32,
    pub mac: Mac,
}

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("cannot list the node's interfaces: {0}")]
    List(#[source] std::io::Error),
    #[error("no interface named {0:?}")]
    NoSuchName(String),
    #[error("no interface holds the node's addresses {0:?}")]
    NoneHolds(Vec<IpAddr>),
    #[error("interface {0:?} has no Ethernet address")]
    NotEthernet(String),
}

/// One `getifaddrs` entry, reduced to what the lookup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    address: Option<IpAddr>,
    /// Index and hardware address, from the `AF_PACKET` entry.
    link: Option<(i32, Mac)>,
}

/// The interface called `name`, or else the one holding one of `node_addresses`.
pub fn find(name: Option<&str>, node_addresses: &[IpAddr]) -> Result<Interface, InterfaceError> {
    select(&entries()?, name, node_addresses)
}

fn select(
    entries: &[Entry],
    name: Option<&str>,
    node_addresses: &[IpAddr],
) -> Result<Interface, InterfaceError> {
    let name = match name {
        Some(name) => entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.name.clone())
            .ok_or_else(|| InterfaceError::NoSuchName(name.to_owned()))?,
        None => entries
            .iter()
            .find(|e| e.address.is_some_and(|a| node_addresses.contains(&a)))
            .map(|e| e.name.clone())
            .ok_or_else(|| InterfaceError::NoneHolds(node_addresses.to_vec()))?,
    };
    let (index, mac) = entries
        .iter()
        .filter(|e| e.name == name)
        .find_map(|e| e.link)
        .filter(|(_, mac)| *mac != [0; 6])
        .ok_or_else(|| InterfaceError::NotEthernet(name.clone()))?;
    Ok(Interface { name, index, mac })
}

fn entries() -> Result<Vec<Entry>, InterfaceError> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return Err(InterfaceError::List(std::io::Error::last_os_error()));
    }
    let mut entries = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` walks the list getifaddrs returned, which stays valid until freed.
        let entry = unsafe { &*cursor };
        entries.push(entry_of(entry));
        cursor = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(entries)
}

fn entry_of(entry: &libc::ifaddrs) -> Entry {
    // SAFETY: ifa_name is a NUL-terminated string owned by the list.
    let name = unsafe { CStr::from_ptr(entry.ifa_name) };
    let mut result = Entry {
        name: name.to_string_lossy().into_owned(),
        address: None,
        link: None,
    };
    if entry.ifa_addr.is_null() {
        return result;
    }
    // SAFETY: ifa_addr points at a socket address whose family says which struct it is.
    unsafe {
        match i32::from((*entry.ifa_addr).sa_family) {
            libc::AF_INET => {
                let v4 = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                result.address = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                let v6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                result.address = Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
            }
            libc::AF_PACKET => {
                let link = &*entry.ifa_addr.cast::<libc::sockaddr_ll>();
                if link.sll_halen == 6 {
                    let mut mac = [0; 6];
                    mac.copy_from_slice(&link.sll_addr[..6]);
                    result.link = Some((link.sll_ifindex, mac));
                }
            }
            _ => {}
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, address: Option<&str>, link: Option<(i32, Mac)>) -> Entry {
        Entry {
            name: name.into(),
            address: address.map(|a| a.parse().unwrap()),
            link,
        }
    }

    fn host() -> Vec<Entry> {
        vec![
            entry("lo", None, Some((1, [0; 6]))),
            entry("lo", Some("127.0.0.1"), None),
            entry("eth0", None, Some((2, [2, 0, 0, 0, 0, 0x0a]))),
            entry("eth0", Some("192.168.230.11"), None),
            entry("cni0", None, Some((3, [2, 0, 0, 0, 0, 0x0b]))),
            entry("cni0", Some("10.244.1.1"), None),
        ]
    }

    #[test]
    fn the_interface_holding_the_node_ip_is_chosen() {
        let node = ["192.168.230.11".parse().unwrap()];
        let found = select(&host(), None, &node).unwrap();
        assert_eq!(
            found,
            Interface {
                name: "eth0".into(),
                index: 2,
                mac: [2, 0, 0, 0, 0, 0x0a],
            }
        );
    }

    #[test]
    fn a_configured_name_wins_and_bad_choices_are_named() {
        assert_eq!(select(&host(), Some("cni0"), &[]).unwrap().index, 3);
        assert!(matches!(
            select(&host(), Some("eth9"), &[]),
            Err(InterfaceError::NoSuchName(name)) if name == "eth9"
        ));
        assert!(matches!(
            select(&host(), None, &["192.0.2.1".parse().unwrap()]),
            Err(InterfaceError::NoneHolds(_))
        ));
        assert!(matches!(
            select(&host(), Some("lo"), &[]),
            Err(InterfaceError::NotEthernet(name)) if name == "lo"
        ));
    }
}
