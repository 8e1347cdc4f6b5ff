//! `decode_destination`, with any service family.
#![no_main]

use ferry_proxy::ipvs::codec::decode_destination;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (service_family, genl) = input;
    let _ = decode_destination(genl, service_family);
});
