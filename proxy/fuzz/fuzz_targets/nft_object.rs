//! One dumped nf_tables object (table, chain, rule, set, set elements): the first byte picks
//! the message type, the rest is the payload after the netlink header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((kind, payload)) = data.split_first() {
        let message_type = (10 << 8) | u16::from(*kind % 16);
        let _ = ferry_proxy::nft::netlink::message::decode_object(message_type, payload);
    }
});
