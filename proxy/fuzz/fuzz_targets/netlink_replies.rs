//! The transport's framing: netlink headers, ACKs, errors and NLMSG_DONE across datagrams.
#![no_main]

use ferry_proxy::ipvs::socket::Collector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, Vec<&[u8]>)| {
    let (sequence_number, datagrams) = input;
    let mut collector = Collector::default();
    for datagram in datagrams {
        if collector.read_datagram(datagram, sequence_number).is_err() {
            return;
        }
    }
    let _ = collector.into_replies();
});
