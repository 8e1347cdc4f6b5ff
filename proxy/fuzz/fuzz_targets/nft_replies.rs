//! nf_tables replies: netlink framing, acknowledgements, errors and every dumped object.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_proxy::nft::netlink::message::decode_replies(data);
});
