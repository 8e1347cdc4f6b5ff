//! Golden bytes written by hand from the uapi layout: `struct nlmsghdr` (16 bytes, host order),
//! `struct genlmsghdr` (cmd, version, reserved), then `struct nlattr` TLVs (u16 length without
//! padding, u16 type, value padded to 4 bytes). Assumes a little-endian host, like the CI.
#![cfg(target_endian = "little")]

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::ipvs::socket::{Kind, frame};
use crate::model::types::Scheduler;

const FAMILY: u16 = 0x25;

fn vs(protocol: Protocol, address: &str, port: u16) -> VirtualServerKey {
    VirtualServerKey {
        protocol,
        address: address.parse().unwrap(),
        port,
    }
}

fn rs(address: &str, port: u16) -> RealServerKey {
    RealServerKey {
        address: address.parse().unwrap(),
        port,
    }
}

fn params(scheduler: Scheduler, persistence: Option<u64>) -> VirtualServerParams {
    VirtualServerParams {
        scheduler,
        persistence: persistence.map(Duration::from_secs),
    }
}

#[track_caller]
fn assert_golden(request: Request, golden: &[u8]) {
    let kind = if request.is_dump() {
        Kind::Dump
    } else {
        Kind::Do
    };
    let bytes = frame(request.into_message(FAMILY), kind, 1);
    assert_eq!(bytes, golden);
}

/// The genl part of a framed request: what `decode_*` read.
fn genl_of(request: Request) -> Vec<u8> {
    frame(request.into_message(FAMILY), Kind::Do, 1)[16..].to_vec()
}

#[rustfmt::skip]
const TCP_10_96_0_1_443: [u8; 36] = [
    36, 0, 1, 0x80,                  // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED
    6, 0, 1, 0, 2, 0, 0, 0,          //   AF: AF_INET, host order, padded
    6, 0, 2, 0, 6, 0, 0, 0,          //   PROTOCOL: IPPROTO_TCP, host order
    8, 0, 3, 0, 10, 96, 0, 1,        //   ADDR: 10.96.0.1
    6, 0, 4, 0, 0x01, 0xbb, 0, 0,    //   PORT: 443, network order
];

#[test]
fn new_service() {
    #[rustfmt::skip]
    let golden = [
        92, 0, 0, 0,  0x25, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0, // len, IPVS, REQUEST|ACK, seq, pid
        1, 1, 0, 0,                                             // IPVS_CMD_NEW_SERVICE, version 1
        72, 0, 1, 0x80,                                         // IPVS_CMD_ATTR_SERVICE
        6, 0, 1, 0, 2, 0, 0, 0,                                 //   AF_INET
        6, 0, 2, 0, 6, 0, 0, 0,                                 //   TCP
        8, 0, 3, 0, 10, 96, 0, 1,                               //   10.96.0.1
        6, 0, 4, 0, 0x01, 0xbb, 0, 0,                           //   443
        7, 0, 6, 0, b'r', b'r', 0, 0,                           //   SCHED_NAME "rr\0"
        12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,        //   FLAGS: none, mask all
        8, 0, 8, 0, 0, 0, 0, 0,                                 //   TIMEOUT: 0
        8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff,                     //   NETMASK: /32
    ];
    let key = vs(Protocol::Tcp, "10.96.0.1", 443);
    assert_golden(
        Request::NewService(key, params(Scheduler::RoundRobin, None)),
        &golden,
    );
}

#[test]
fn set_service_ipv6_with_persistence() {
    #[rustfmt::skip]
    let golden = [
        104, 0, 0, 0,  0x25, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,
        2, 1, 0, 0,                                             // IPVS_CMD_SET_SERVICE
        84, 0, 1, 0x80,
        6, 0, 1, 0, 10, 0, 0, 0,                                //   AF_INET6
        6, 0, 2, 0, 17, 0, 0, 0,                                //   UDP
        20, 0, 3, 0,                                            //   fd00:96::a
        0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
        6, 0, 4, 0, 0, 53, 0, 0,                                //   53
        8, 0, 6, 0, b'w', b'r', b'r', 0,                        //   "wrr\0"
        12, 0, 7, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,        //   FLAGS: IP_VS_SVC_F_PERSISTENT
        8, 0, 8, 0, 0x30, 0x2a, 0, 0,                           //   TIMEOUT: 10800 s
        8, 0, 9, 0, 128, 0, 0, 0,                               //   NETMASK: prefix length 128
    ];
    let key = vs(Protocol::Udp, "fd00:96::a", 53);
    let request = Request::SetService(key, params(Scheduler::WeightedRoundRobin, Some(10800)));
    assert_golden(request, &golden);
}

#[test]
fn del_service_sctp() {
    #[rustfmt::skip]
    let golden = [
        56, 0, 0, 0,  0x25, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,
        3, 1, 0, 0,                                             // IPVS_CMD_DEL_SERVICE
        36, 0, 1, 0x80,
        6, 0, 1, 0, 2, 0, 0, 0,
        6, 0, 2, 0, 132, 0, 0, 0,                               //   IPPROTO_SCTP
        8, 0, 3, 0, 10, 96, 0, 2,
        6, 0, 4, 0, 0x23, 0x28, 0, 0,                           //   9000
    ];
    assert_golden(
        Request::DelService(vs(Protocol::Sctp, "10.96.0.2", 9000)),
        &golden,
    );
}

#[test]
fn list_services_is_a_bare_dump() {
    #[rustfmt::skip]
    let golden = [
        20, 0, 0, 0,  0x25, 0,  1, 3,  1, 0, 0, 0,  0, 0, 0, 0, // REQUEST|ROOT|MATCH (= NLM_F_DUMP)
        4, 1, 0, 0,                                             // IPVS_CMD_GET_SERVICE
    ];
    assert_golden(Request::ListServices, &golden);
}

#[test]
fn list_destinations_names_the_service() {
    let mut golden = vec![
        56, 0, 0, 0, 0x25, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 8, 1, 0, 0,
    ];
    golden.extend(TCP_10_96_0_1_443);
    let request = Request::ListDestinations(vs(Protocol::Tcp, "10.96.0.1", 443));
    assert_golden(request, &golden);
}

#[test]
fn new_destination() {
    let mut golden = vec![
        116, 0, 0, 0, 0x25, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0,
    ];
    golden.extend(TCP_10_96_0_1_443);
    #[rustfmt::skip]
    golden.extend([
        60, 0, 2, 0x80,                                         // IPVS_CMD_ATTR_DEST | NLA_F_NESTED
        8, 0, 1, 0, 10, 244, 1, 5,                              //   ADDR: 10.244.1.5
        6, 0, 2, 0, 0x1f, 0x90, 0, 0,                           //   PORT: 8080
        6, 0, 11, 0, 2, 0, 0, 0,                                //   ADDR_FAMILY: AF_INET
        8, 0, 3, 0, 0, 0, 0, 0,                                 //   FWD_METHOD: IP_VS_CONN_F_MASQ
        8, 0, 4, 0, 1, 0, 0, 0,                                 //   WEIGHT: 1
        8, 0, 5, 0, 0, 0, 0, 0,                                 //   U_THRESH: unlimited
        8, 0, 6, 0, 0, 0, 0, 0,                                 //   L_THRESH
    ]);
    let request = Request::NewDestination(
        vs(Protocol::Tcp, "10.96.0.1", 443),
        rs("10.244.1.5", 8080),
        1,
    );
    assert_golden(request, &golden);
}

#[test]
fn set_destination_ipv6_to_weight_zero() {
    #[rustfmt::skip]
    let golden = [
        140, 0, 0, 0,  0x25, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0,
        6, 1, 0, 0,                                             // IPVS_CMD_SET_DEST
        48, 0, 1, 0x80,
        6, 0, 1, 0, 10, 0, 0, 0,
        6, 0, 2, 0, 17, 0, 0, 0,
        20, 0, 3, 0, 0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
        6, 0, 4, 0, 0, 53, 0, 0,
        72, 0, 2, 0x80,
        20, 0, 1, 0, 0xfd, 0, 0x02, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, // fd00:244::5
        6, 0, 2, 0, 0x14, 0xe9, 0, 0,                           //   5353
        6, 0, 11, 0, 10, 0, 0, 0,                               //   AF_INET6
        8, 0, 3, 0, 0, 0, 0, 0,
        8, 0, 4, 0, 0, 0, 0, 0,                                 //   WEIGHT: 0 drains
        8, 0, 5, 0, 0, 0, 0, 0,
        8, 0, 6, 0, 0, 0, 0, 0,
    ];
    let request = Request::SetDestination(
        vs(Protocol::Udp, "fd00:96::a", 53),
        rs("fd00:244::5", 5353),
        0,
    );
    assert_golden(request, &golden);
}

#[test]
fn del_destination_sends_only_its_identity() {
    let mut golden = vec![
        84, 0, 0, 0, 0x25, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 0, 0,
    ];
    golden.extend(TCP_10_96_0_1_443);
    #[rustfmt::skip]
    golden.extend([
        28, 0, 2, 0x80,
        8, 0, 1, 0, 10, 244, 1, 5,
        6, 0, 2, 0, 0x1f, 0x90, 0, 0,
        6, 0, 11, 0, 2, 0, 0, 0,
    ]);
    let request =
        Request::DelDestination(vs(Protocol::Tcp, "10.96.0.1", 443), rs("10.244.1.5", 8080));
    assert_golden(request, &golden);
}

#[test]
fn family_lookup() {
    #[rustfmt::skip]
    let golden = [
        32, 0, 0, 0,  0x10, 0,  5, 0,  1, 0, 0, 0,  0, 0, 0, 0, // GENL_ID_CTRL
        3, 2, 0, 0,                                             // CTRL_CMD_GETFAMILY, version 2
        9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0,         // CTRL_ATTR_FAMILY_NAME "IPVS\0"
    ];
    assert_eq!(frame(family_request(), Kind::Do, 1), golden);
}

#[test]
fn family_reply() {
    #[rustfmt::skip]
    let genl = [
        1, 2, 0, 0,                                             // CTRL_CMD_NEWFAMILY
        6, 0, 1, 0, 0x25, 0, 0, 0,                              // CTRL_ATTR_FAMILY_ID
        9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0,
        8, 0, 3, 0, 1, 0, 0, 0,                                 // CTRL_ATTR_VERSION
        8, 0, 4, 0, 0, 0, 0, 0,                                 // CTRL_ATTR_HDRSIZE
        8, 0, 5, 0, 6, 0, 0, 0,                                 // CTRL_ATTR_MAXATTR
        4, 0, 6, 0x80,                                          // CTRL_ATTR_OPS (empty here)
    ];
    assert_eq!(decode_family_id(&genl).unwrap(), FAMILY);
    assert!(decode_family_id(&genl[..4]).is_err());
}

/// A service as a 6.x kernel dumps it: 16-byte address, hashed flag, both stats nests, and
/// `IPVS_STATS_ATTR_PAD` before 64-bit counters.
#[rustfmt::skip]
const DUMPED_SERVICE: [u8; 220] = [
    1, 1, 0, 0,                                                 // IPVS_CMD_NEW_SERVICE
    216, 0, 1, 0x80,
    6, 0, 1, 0, 2, 0, 0, 0,
    6, 0, 2, 0, 17, 0, 0, 0,
    20, 0, 3, 0, 10, 96, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // union nf_inet_addr
    6, 0, 4, 0, 0, 53, 0, 0,
    7, 0, 6, 0, b'r', b'r', 0, 0,
    12, 0, 7, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,            // PERSISTENT | HASHED
    8, 0, 8, 0, 0x30, 0x2a, 0, 0,
    8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff,
    60, 0, 10, 0x80,                                            // IPVS_SVC_ATTR_STATS
    8, 0, 1, 0, 7, 0, 0, 0,                                     //   CONNS (u32, wrapped)
    8, 0, 2, 0, 10, 0, 0, 0,
    8, 0, 3, 0, 9, 0, 0, 0,
    12, 0, 4, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0,
    12, 0, 5, 0, 0x84, 3, 0, 0, 0, 0, 0, 0,
    8, 0, 6, 0, 0, 0, 0, 0,                                     //   CPS
    72, 0, 12, 0x80,                                            // IPVS_SVC_ATTR_STATS64
    4, 0, 11, 0,                                                //   PAD
    12, 0, 1, 0, 7, 0, 0, 0, 1, 0, 0, 0,                        //   CONNS 2^32 + 7
    4, 0, 11, 0,
    12, 0, 2, 0, 10, 0, 0, 0, 0, 0, 0, 0,
    12, 0, 3, 0, 9, 0, 0, 0, 0, 0, 0, 0,
    12, 0, 4, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0,
    12, 0, 5, 0, 0x84, 3, 0, 0, 0, 0, 0, 0,
];

#[test]
fn decodes_a_dumped_service() {
    let entry = decode_service(&DUMPED_SERVICE).unwrap();
    assert_eq!(entry.key(), Some(vs(Protocol::Udp, "10.96.0.10", 53)));
    assert_eq!(
        entry.params(),
        Some(params(Scheduler::RoundRobin, Some(10800)))
    );
    assert_eq!(
        entry.stats,
        VirtualServerStats {
            connections: (1 << 32) + 7,
            packets_in: 10,
            packets_out: 9,
            bytes_in: 1000,
            bytes_out: 900,
        }
    );
}

#[rustfmt::skip]
const DUMPED_DESTINATION: [u8; 136] = [
    5, 1, 0, 0,                                                 // IPVS_CMD_NEW_DEST
    132, 0, 2, 0x80,
    20, 0, 1, 0, 10, 244, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    6, 0, 2, 0, 0x1f, 0x90, 0, 0,
    8, 0, 3, 0, 0, 0, 0, 0,                                     // FWD_METHOD: masquerade
    8, 0, 4, 0, 1, 0, 0, 0,                                     // WEIGHT
    5, 0, 13, 0, 0, 0, 0, 0,                                    // TUN_TYPE (u8)
    6, 0, 14, 0, 0, 0, 0, 0,                                    // TUN_PORT
    6, 0, 15, 0, 0, 0, 0, 0,                                    // TUN_FLAGS
    8, 0, 5, 0, 0, 0, 0, 0,
    8, 0, 6, 0, 0, 0, 0, 0,
    8, 0, 7, 0, 3, 0, 0, 0,                                     // ACTIVE_CONNS
    8, 0, 8, 0, 2, 0, 0, 0,                                     // INACT_CONNS
    8, 0, 9, 0, 0, 0, 0, 0,                                     // PERSIST_CONNS
    6, 0, 11, 0, 2, 0, 0, 0,                                    // ADDR_FAMILY
    12, 0, 10, 0x80, 8, 0, 1, 0, 3, 0, 0, 0,                    // STATS
];

#[test]
fn decodes_a_dumped_destination() {
    let entry = decode_destination(&DUMPED_DESTINATION, AF_INET).unwrap();
    assert_eq!(
        entry,
        DestinationEntry {
            address: "10.244.1.5".parse().unwrap(),
            port: 8080,
            forwarding: CONN_F_MASQ,
            weight: 1,
            active_connections: 3,
            inactive_connections: 2,
        }
    );
}

#[test]
fn old_kernels_omit_the_destination_family() {
    // Drop the trailing ADDR_FAMILY and STATS attributes (20 bytes) and fix the nest length.
    let mut genl = DUMPED_DESTINATION[..116].to_vec();
    genl[4] = 112;
    let entry = decode_destination(&genl, AF_INET).unwrap();
    assert_eq!(entry.address, "10.244.1.5".parse::<IpAddr>().unwrap());
}

#[test]
fn requests_decode_to_what_was_encoded() {
    for (key, params) in [
        (
            vs(Protocol::Tcp, "10.96.0.1", 443),
            params(Scheduler::RoundRobin, None),
        ),
        (
            vs(Protocol::Sctp, "fd00:96::1", 38412),
            params(Scheduler::MaglevHashing, Some(60)),
        ),
        (
            vs(Protocol::Udp, "192.168.1.10", 30053),
            params(Scheduler::SourceHashing, Some(86400)),
        ),
    ] {
        for request in [
            Request::NewService(key, params.clone()),
            Request::SetService(key, params.clone()),
        ] {
            let entry = decode_service(&genl_of(request)).unwrap();
            assert_eq!(
                (entry.key(), entry.params()),
                (Some(key), Some(params.clone()))
            );
        }
    }
    let key = vs(Protocol::Udp, "fd00:96::a", 53);
    let backend = rs("fd00:244::5", 5353);
    for request in [
        Request::NewDestination(key, backend, 7),
        Request::SetDestination(key, backend, 7),
    ] {
        let entry = decode_destination(&genl_of(request), AF_INET).unwrap();
        assert_eq!(
            (entry.address, entry.port, entry.weight, entry.forwarding),
            (backend.address, 5353, 7, CONN_F_MASQ)
        );
    }
}

#[test]
fn settings_ferry_never_programs_read_as_drift() {
    let base = decode_service(&DUMPED_SERVICE).unwrap();
    let drifted = [
        ServiceEntry {
            scheduler: "lblc".into(),
            ..base.clone()
        },
        ServiceEntry {
            flags: SVC_F_PERSISTENT | 0x4,
            ..base.clone()
        }, // one-packet
        ServiceEntry {
            netmask: u32::from_be_bytes([255, 255, 255, 0]),
            ..base.clone()
        },
        ServiceEntry {
            persistence_engine: Some("sip".into()),
            ..base.clone()
        },
    ];
    for entry in drifted {
        assert_eq!(entry.params(), None, "{entry:?}");
    }
    // Without persistence the timeout and netmask mean nothing.
    let plain = ServiceEntry {
        flags: SVC_F_HASHED,
        netmask: 0,
        ..base
    };
    assert_eq!(plain.params(), Some(params(Scheduler::RoundRobin, None)));
}

#[test]
fn fwmark_and_other_protocol_services_have_no_key() {
    #[rustfmt::skip]
    let fwmark = [
        1, 1, 0, 0,
        28, 0, 1, 0x80,
        6, 0, 1, 0, 2, 0, 0, 0,
        8, 0, 5, 0, 42, 0, 0, 0,                                // FWMARK
        7, 0, 6, 0, b'r', b'r', 0, 0,
    ];
    let entry = decode_service(&fwmark).unwrap();
    assert_eq!((entry.firewall_mark, entry.key()), (42, None));
    let esp = ServiceEntry {
        protocol: 50,
        ..decode_service(&DUMPED_SERVICE).unwrap()
    };
    assert_eq!(esp.key(), None);
}

#[test]
fn malformed_replies_are_errors_not_panics() {
    for cut in 0..DUMPED_SERVICE.len() {
        let _ = decode_service(&DUMPED_SERVICE[..cut]);
    }
    for cut in 0..DUMPED_DESTINATION.len() {
        let _ = decode_destination(&DUMPED_DESTINATION[..cut], AF_INET6);
    }
    assert!(
        decode_service(&[1, 1, 0, 0]).is_err(),
        "no service attribute"
    );
    let mut as_ipv6 = DUMPED_SERVICE;
    as_ipv6[12] = 10; // the 16-byte union reads as an IPv6 address
    assert!(decode_service(&as_ipv6).unwrap().address.unwrap().is_ipv6());
    let mut unknown_family = DUMPED_SERVICE;
    unknown_family[12] = 7;
    assert!(decode_service(&unknown_family).is_err());
}
