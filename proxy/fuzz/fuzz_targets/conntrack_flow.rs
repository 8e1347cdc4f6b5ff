//! `decode_flow`, one dumped conntrack entry (netlink-packet-netfilter underneath).
#![no_main]

use ferry_proxy::conntrack::decode_flow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (message_type, payload) = input;
    let _ = decode_flow(message_type, payload);
});
