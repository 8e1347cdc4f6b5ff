//! Golden frames, written out field by field (the ICMPv6 checksums were computed apart from
//! this code). Addresses: the node (own) MAC 02:00:00:00:00:0a, the asking router
//! 02:00:00:00:00:01 at 192.0.2.1 / 2001:db8::1, the announced address 192.0.2.10 /
//! 2001:db8::10.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{Mac, Query, announcement, parse, reply};

const OWN: Mac = [2, 0, 0, 0, 0, 0x0a];
const ROUTER: Mac = [2, 0, 0, 0, 0, 1];

/// Bytes from hex pairs; spaces and line breaks only group the fields.
fn bytes(hex: &str) -> Vec<u8> {
    let digits: String = hex.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// The router asks who has 192.0.2.10.
fn arp_request() -> Vec<u8> {
    bytes(
        "ff ff ff ff ff ff  02 00 00 00 00 01  08 06
         00 01  08 00  06  04  00 01
         02 00 00 00 00 01  c0 00 02 01
         00 00 00 00 00 00  c0 00 02 0a",
    )
}

/// The router solicits 2001:db8::10 (to its solicited-node group), with its link address.
fn neighbor_solicitation() -> Vec<u8> {
    bytes(
        "33 33 ff 00 00 10  02 00 00 00 00 01  86 dd
         60 00 00 00  00 20  3a  ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
         ff 02 00 00 00 00 00 00 00 00 00 01 ff 00 00 10
         87 00 1c 0b  00 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
         01 01 02 00 00 00 00 01",
    )
}

/// A named way to break a frame.
type Damage = (&'static str, fn(&mut Vec<u8>));

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

#[test]
fn an_arp_request_is_parsed_and_answered_from_the_own_mac() {
    let query = parse(&arp_request()).expect("a query");
    assert_eq!(
        query,
        Query::Arp {
            sender_mac: ROUTER,
            sender_ip: v4("192.0.2.1"),
            target: v4("192.0.2.10"),
        }
    );
    assert_eq!(query.target(), IpAddr::V4(v4("192.0.2.10")));
    let expected = bytes(
        "02 00 00 00 00 01  02 00 00 00 00 0a  08 06
         00 01  08 00  06  04  00 02
         02 00 00 00 00 0a  c0 00 02 0a
         02 00 00 00 00 01  c0 00 02 01",
    );
    assert_eq!(reply(&query, OWN), expected);
}

#[test]
fn a_gratuitous_arp_is_a_broadcast_request_for_the_address_itself() {
    let expected = bytes(
        "ff ff ff ff ff ff  02 00 00 00 00 0a  08 06
         00 01  08 00  06  04  00 01
         02 00 00 00 00 0a  c0 00 02 0a
         00 00 00 00 00 00  c0 00 02 0a",
    );
    let frame = announcement(IpAddr::V4(v4("192.0.2.10")), OWN);
    assert_eq!(frame, expected);
    assert_eq!(parse(&frame), None, "an announcement is no question");
}

#[test]
fn a_neighbor_solicitation_is_answered_with_a_solicited_advertisement() {
    let query = parse(&neighbor_solicitation()).expect("a query");
    assert_eq!(
        query,
        Query::NeighborSolicitation {
            sender_mac: ROUTER,
            sender_ip: v6("2001:db8::1"),
            target: v6("2001:db8::10"),
        }
    );
    let expected = bytes(
        "02 00 00 00 00 01  02 00 00 00 00 0a  86 dd
         60 00 00 00  00 20  3a  ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
         88 00 8a 4d  60 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
         02 01 02 00 00 00 00 0a",
    );
    assert_eq!(reply(&query, OWN), expected);
}

#[test]
fn an_unsolicited_advertisement_goes_to_all_nodes_with_override() {
    let expected = bytes(
        "33 33 00 00 00 01  02 00 00 00 00 0a  86 dd
         60 00 00 00  00 20  3a  ff
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
         ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01
         88 00 f9 03  20 00 00 00
         20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
         02 01 02 00 00 00 00 0a",
    );
    assert_eq!(announcement(IpAddr::V6(v6("2001:db8::10")), OWN), expected);
}

#[test]
fn without_a_source_link_option_the_ethernet_source_is_answered() {
    let mut frame = neighbor_solicitation();
    frame.truncate(frame.len() - 8);
    frame[19] = 0x18; // payload length 24
    // Checksum without the option (computed apart): 0x1f15.
    frame[56] = 0x1f;
    frame[57] = 0x15;
    let query = parse(&frame).expect("a query");
    assert!(
        matches!(query, Query::NeighborSolicitation { sender_mac, .. } if sender_mac == ROUTER)
    );
}

#[test]
fn solicitations_failing_rfc_4861_checks_are_ignored() {
    let broken: [Damage; 5] = [
        ("bad checksum", |f| f[57] ^= 1),
        ("hop limit below 255", |f| f[21] = 64),
        ("not ICMPv6", |f| f[20] = 17),
        ("from :: (duplicate address detection)", |f| {
            f[22..38].fill(0)
        }),
        ("option of length 0", |f| f[79] = 0),
    ];
    for (case, damage) in broken {
        let mut frame = neighbor_solicitation();
        damage(&mut frame);
        assert_eq!(parse(&frame), None, "{case}");
    }
}

#[test]
fn arp_other_than_ethernet_ipv4_requests_is_ignored() {
    let broken: [Damage; 3] = [
        ("a reply", |f| f[21] = 2),
        ("another hardware type", |f| f[15] = 6),
        ("another protocol", |f| f[16] = 0x86),
    ];
    for (case, damage) in broken {
        let mut frame = arp_request();
        damage(&mut frame);
        assert_eq!(parse(&frame), None, "{case}");
    }
}

#[test]
fn every_truncation_of_a_query_is_ignored() {
    for frame in [arp_request(), neighbor_solicitation()] {
        for length in 0..frame.len() {
            assert_eq!(parse(&frame[..length]), None, "{length} bytes");
        }
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&frame);
    }

    /// Garbage behind a valid header: the parser must still not panic, and whatever it
    /// accepts gets a well-formed answer.
    #[test]
    fn mutated_queries_never_panic(
        arp in any::<bool>(),
        flips in proptest::collection::vec((0usize..90, any::<u8>()), 1..6),
    ) {
        let mut frame = if arp { arp_request() } else { neighbor_solicitation() };
        for (index, value) in flips {
            if let Some(byte) = frame.get_mut(index) {
                *byte = value;
            }
        }
        if let Some(query) = parse(&frame) {
            let answer = reply(&query, OWN);
            prop_assert!(answer.len() == 42 || answer.len() == 86);
        }
    }
}
