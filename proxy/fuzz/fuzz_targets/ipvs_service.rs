//! `decode_service` reads whatever the kernel (or anyone on the socket) sends.
#![no_main]

use ferry_proxy::ipvs::codec::decode_service;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|genl: &[u8]| {
    if let Ok(entry) = decode_service(genl) {
        // Interpreting a decoded entry must not panic either.
        let _ = (entry.key(), entry.params());
    }
});
