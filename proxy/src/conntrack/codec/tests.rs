//! Golden bytes written by hand from `nfnetlink.h` (`struct nfgenmsg`: family, version,
//! big-endian res_id) and `nfnetlink_conntrack.h` (nested `CTA_TUPLE_*`; addresses, ports,
//! status, timeouts and zone in network byte order). Assumes a little-endian host.
#![cfg(target_endian = "little")]

use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

use super::*;
use crate::ipvs::socket::{Kind, frame};

fn flow(original: (&str, &str), reply: (&str, &str), zone: u16) -> Flow {
    Flow {
        protocol: 17,
        original: FlowTuple {
            source: original.0.parse().unwrap(),
            destination: original.1.parse().unwrap(),
        },
        reply: FlowTuple {
            source: reply.0.parse().unwrap(),
            destination: reply.1.parse().unwrap(),
        },
        zone,
    }
}

fn ipv4_flow() -> Flow {
    flow(
        ("127.0.0.1:40000", "10.96.0.10:53"),
        ("10.244.1.5:5353", "127.0.0.1:40000"),
        0,
    )
}

#[test]
fn dump_requests_name_the_family() {
    #[rustfmt::skip]
    let ipv4 = [
        20, 0, 0, 0,  1, 1,  1, 3,  1, 0, 0, 0,  0, 0, 0, 0,  // CTNETLINK << 8 | CT_GET, DUMP
        2, 0, 0, 0,                                           // AF_INET, NFNETLINK_V0, res_id
    ];
    assert_eq!(frame(dump_request(true), Kind::Dump, 1), ipv4);
    assert_eq!(
        frame(dump_request(false), Kind::Dump, 1)[16],
        10,
        "AF_INET6"
    );
}

#[test]
fn delete_request_ipv4() {
    #[rustfmt::skip]
    let golden = [
        72, 0, 0, 0,  2, 1,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,  // CT_DELETE, REQUEST|ACK
        2, 0, 0, 0,
        52, 0, 1, 0x80,                                       // CTA_TUPLE_ORIG
        20, 0, 1, 0x80,                                       //   CTA_TUPLE_IP
        8, 0, 1, 0, 127, 0, 0, 1,                             //     CTA_IP_V4_SRC
        8, 0, 2, 0, 10, 96, 0, 10,                            //     CTA_IP_V4_DST
        28, 0, 2, 0x80,                                       //   CTA_TUPLE_PROTO
        5, 0, 1, 0, 17, 0, 0, 0,                              //     CTA_PROTO_NUM: UDP
        6, 0, 2, 0, 0x9c, 0x40, 0, 0,                         //     CTA_PROTO_SRC_PORT: 40000
        6, 0, 3, 0, 0, 53, 0, 0,                              //     CTA_PROTO_DST_PORT: 53
    ];
    assert_eq!(frame(delete_request(&ipv4_flow()), Kind::Do, 1), golden);
}

#[test]
fn delete_request_ipv6_in_a_zone() {
    let flow = flow(
        ("[fd00::1]:40000", "[fd00:96::a]:53"),
        ("[fd00:244::5]:5353", "[fd00::1]:40000"),
        7,
    );
    #[rustfmt::skip]
    let golden = [
        104, 0, 0, 0,  2, 1,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,
        10, 0, 0, 0,                                          // AF_INET6
        76, 0, 1, 0x80,
        44, 0, 1, 0x80,
        20, 0, 3, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,       // CTA_IP_V6_SRC
        20, 0, 4, 0, 0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, // CTA_IP_V6_DST
        28, 0, 2, 0x80,
        5, 0, 1, 0, 17, 0, 0, 0,
        6, 0, 2, 0, 0x9c, 0x40, 0, 0,
        6, 0, 3, 0, 0, 53, 0, 0,
        6, 0, 18, 0, 0, 7, 0, 0,                              // CTA_ZONE: 7, network order
    ];
    assert_eq!(frame(delete_request(&flow), Kind::Do, 1), golden);
}

#[test]
fn a_delete_request_carries_the_original_tuple_back() {
    let flow = ipv4_flow();
    let payload = &frame(delete_request(&flow), Kind::Do, 1)[16..];
    let message = NetfilterMessage::parse_with_param(payload, 0x0102).unwrap();
    let NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(attributes)) = message.inner
    else {
        panic!("not a delete: {:?}", message.inner);
    };
    let [ConntrackAttribute::CtaTupleOrig(tuples)] = attributes.as_slice() else {
        panic!("unexpected attributes {attributes:?}");
    };
    assert_eq!(parse_tuple(tuples).unwrap(), Some((17, flow.original)));
}

/// A UDP entry as a 6.x kernel dumps it after DNAT, in zone 3.
#[rustfmt::skip]
const DUMPED_UDP: [u8; 156] = [
    2, 0, 0, 0,                                               // nfgenmsg
    52, 0, 1, 0x80,                                           // CTA_TUPLE_ORIG
    20, 0, 1, 0x80, 8, 0, 1, 0, 127, 0, 0, 1, 8, 0, 2, 0, 10, 96, 0, 10,
    28, 0, 2, 0x80, 5, 0, 1, 0, 17, 0, 0, 0, 6, 0, 2, 0, 0x9c, 0x40, 0, 0, 6, 0, 3, 0, 0, 53, 0, 0,
    52, 0, 2, 0x80,                                           // CTA_TUPLE_REPLY
    20, 0, 1, 0x80, 8, 0, 1, 0, 10, 244, 1, 5, 8, 0, 2, 0, 127, 0, 0, 1,
    28, 0, 2, 0x80, 5, 0, 1, 0, 17, 0, 0, 0, 6, 0, 2, 0, 0x14, 0xe9, 0, 0, 6, 0, 3, 0, 0x9c, 0x40, 0, 0,
    8, 0, 3, 0, 0, 0, 0x01, 0xa8,                             // CTA_STATUS: CONFIRMED|DST_NAT|...
    8, 0, 7, 0, 0, 0, 0, 29,                                  // CTA_TIMEOUT: 29 s
    8, 0, 8, 0, 0, 0, 0, 0,                                   // CTA_MARK
    8, 0, 11, 0, 0, 0, 0, 1,                                  // CTA_USE
    8, 0, 12, 0, 0x12, 0x34, 0x56, 0x78,                      // CTA_ID
    6, 0, 18, 0, 0, 3, 0, 0,                                  // CTA_ZONE: 3
];

#[test]
fn decodes_a_dumped_udp_entry() {
    let expected = Flow {
        zone: 3,
        ..ipv4_flow()
    };
    assert_eq!(decode_flow(0x0100, &DUMPED_UDP).unwrap(), Some(expected));
}

#[test]
fn entries_without_ports_are_skipped() {
    #[rustfmt::skip]
    let icmp = [
        2, 0, 0, 0,
        44, 0, 1, 0x80,
        20, 0, 1, 0x80, 8, 0, 1, 0, 10, 0, 0, 1, 8, 0, 2, 0, 10, 0, 0, 2,
        20, 0, 2, 0x80, 5, 0, 1, 0, 1, 0, 0, 0, 5, 0, 5, 0, 8, 0, 0, 0, // PROTO_NUM 1, ICMP_TYPE 8
        44, 0, 2, 0x80,
        20, 0, 1, 0x80, 8, 0, 1, 0, 10, 0, 0, 2, 8, 0, 2, 0, 10, 0, 0, 1,
        20, 0, 2, 0x80, 5, 0, 1, 0, 1, 0, 0, 0, 5, 0, 5, 0, 0, 0, 0, 0,
    ];
    assert_eq!(decode_flow(0x0100, &icmp).unwrap(), None);
}

#[test]
fn malformed_entries_are_errors_not_panics() {
    for cut in 0..DUMPED_UDP.len() {
        let _ = decode_flow(0x0100, &DUMPED_UDP[..cut]);
    }
    assert!(decode_flow(0x0100, &DUMPED_UDP[..4]).is_err(), "no tuples");
    let mut bad_zone = DUMPED_UDP;
    bad_zone[148] = 5; // CTA_ZONE of one byte
    assert!(decode_flow(0x0100, &bad_zone).is_err());
    // Other nfnetlink messages never reach a parser (nftables' panicked under fuzzing).
    assert_eq!(decode_flow(0x0a00, &[0, 0, 0, 0, 1, 0]).unwrap(), None);
}
