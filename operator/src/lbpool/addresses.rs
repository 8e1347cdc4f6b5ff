//! Pool addresses: CIDRs and inclusive ranges of one family, held as integer intervals so
//! counting, overlap and iteration are plain arithmetic on `u128`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An IP family. IPv4 sorts first, as in most dual-stack defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Reads a Service's `spec.ipFamilies` entry (`IPv4`, `IPv6`).
    pub fn from_service_field(name: &str) -> Option<Family> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Why an entry of `spec.addresses` cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is neither a CIDR nor a range of two addresses")]
    Unreadable(String),
    #[error("range {0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    #[error("range {0:?} ends before it starts")]
    Reversed(String),
}

/// An inclusive interval of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    family: Family,
    first: u128,
    last: u128,
}

impl AddressRange {
    /// Reads `192.0.2.0/24`, `2001:db8::/120` or `192.0.2.10-192.0.2.20`. A CIDR with host
    /// bits set means its whole network, as `net.ParseCIDR` and `ip route` read it.
    pub fn parse(text: &str) -> Result<AddressRange, AddressError> {
        let unreadable = || AddressError::Unreadable(text.to_owned());
        if let Some((first, last)) = text.split_once('-') {
            let first: IpAddr = first.trim().parse().map_err(|_| unreadable())?;
            let last: IpAddr = last.trim().parse().map_err(|_| unreadable())?;
            if Family::of(first) != Family::of(last) {
                return Err(AddressError::MixedFamilies(text.to_owned()));
            }
            if first > last {
                return Err(AddressError::Reversed(text.to_owned()));
            }
            return Ok(AddressRange::between(first, last));
        }
        let network: IpNet = text.trim().parse().map_err(|_| unreadable())?;
        Ok(AddressRange::between(
            network.network(),
            network.broadcast(),
        ))
    }

    /// The addresses from `first` to `last`; both of one family, `first <= last`.
    fn between(first: IpAddr, last: IpAddr) -> AddressRange {
        AddressRange {
            family: Family::of(first),
            first: to_integer(first),
            last: to_integer(last),
        }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        Family::of(address) == self.family
            && (self.first..=self.last).contains(&to_integer(address))
    }

    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// Whether `other` overlaps or directly follows this range, so the two read as one.
    fn touches(&self, other: &AddressRange) -> bool {
        self.family == other.family
            && self.first <= other.last.saturating_add(1)
            && other.first <= self.last.saturating_add(1)
    }

    /// How many addresses the range offers; saturates for ranges of 2^128 addresses.
    pub fn size(&self, avoid_buggy_ips: bool) -> u128 {
        let all = (self.last - self.first).saturating_add(1);
        if avoid_buggy_ips && self.family == Family::V4 {
            all - self.count_ending_in(0) - self.count_ending_in(255)
        } else {
            all
        }
    }

    /// IPv4 addresses in the range whose last octet is `octet`.
    fn count_ending_in(&self, octet: u128) -> u128 {
        let up_to = |end: u128| {
            if end < octet {
                0
            } else {
                (end - octet) / 256 + 1
            }
        };
        let before_first = self.first.checked_sub(1).map_or(0, up_to);
        up_to(self.last) - before_first
    }

    /// The range's addresses in ascending order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (self.first..=self.last).map(|n| from_integer(self.family, n))
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = from_integer(self.family, self.first);
        let last = from_integer(self.family, self.last);
        if first == last {
            write!(f, "{first}")
        } else {
            write!(f, "{first}-{last}")
        }
    }
}

/// Sorts ranges and joins those that overlap or touch, so no address is counted twice.
pub fn merge(mut ranges: Vec<AddressRange>) -> Vec<AddressRange> {
    ranges.sort();
    let mut merged: Vec<AddressRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(previous) if previous.touches(&range) => {
                previous.last = previous.last.max(range.last)
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// IPv4 addresses ending in .0 or .255: some old routers and client firmwares take them for
/// network or broadcast addresses even inside larger prefixes, and drop their traffic.
pub fn is_buggy(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

fn to_integer(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_integer(family: Family, n: u128) -> IpAddr {
    match family {
        // IPv4 ranges only ever hold values read from IPv4 addresses.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        AddressRange::parse(text).expect("a valid range")
    }

    #[test]
    fn cidrs_and_ranges_of_both_families_are_read() {
        assert_eq!(range("192.0.2.0/30").to_string(), "192.0.2.0-192.0.2.3");
        assert_eq!(range("192.0.2.5/30").to_string(), "192.0.2.4-192.0.2.7");
        assert_eq!(range("192.0.2.10 - 192.0.2.20").size(false), 11);
        assert_eq!(range("2001:db8::/120").size(false), 256);
        assert_eq!(range("2001:db8::1-2001:db8::1").to_string(), "2001:db8::1");
        assert_eq!(range("::/0").size(false), u128::MAX);
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            AddressRange::parse("192.0.2.0/33"),
            Err(AddressError::Unreadable("192.0.2.0/33".into()))
        );
        assert_eq!(
            AddressRange::parse("192.0.2.1-2001:db8::1"),
            Err(AddressError::MixedFamilies("192.0.2.1-2001:db8::1".into()))
        );
        assert_eq!(
            AddressRange::parse("192.0.2.9-192.0.2.1"),
            Err(AddressError::Reversed("192.0.2.9-192.0.2.1".into()))
        );
    }

    #[test]
    fn buggy_addresses_are_not_counted_when_avoided() {
        assert_eq!(range("192.0.2.0/24").size(true), 254);
        assert_eq!(range("192.0.0.0/22").size(true), 1024 - 8);
        assert_eq!(range("192.0.2.250-192.0.3.5").size(true), 12 - 2);
        assert_eq!(range("192.0.2.1-192.0.2.254").size(true), 254);
        assert_eq!(range("0.0.0.0-0.0.0.0").size(true), 0);
        assert_eq!(
            range("2001:db8::/120").size(true),
            256,
            "IPv6 has no such quirk"
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let merged = merge(vec![
            range("192.0.2.10-192.0.2.20"),
            range("2001:db8::/126"),
            range("192.0.2.0/28"),
            range("192.0.2.21/32"),
            range("192.0.2.30/32"),
        ]);
        let shown: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "192.0.2.0-192.0.2.21",
                "192.0.2.30",
                "2001:db8::-2001:db8::3"
            ]
        );
    }

    #[test]
    fn ranges_overlap_only_within_a_family() {
        assert!(range("192.0.2.0/24").overlaps(&range("192.0.2.255-192.0.3.1")));
        assert!(!range("192.0.2.0/25").overlaps(&range("192.0.2.128/25")));
        assert!(!range("0.0.0.0/0").overlaps(&range("::/0")));
    }
}
