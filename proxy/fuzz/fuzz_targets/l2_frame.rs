//! `announce::frame::parse`, any frame an AF_PACKET socket may hand the l2 responder, and the
//! answer built from whatever it accepts.
#![no_main]

use ferry_proxy::announce::frame::{parse, reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Some(query) = parse(frame) {
        let _ = reply(&query, [2, 0, 0, 0, 0, 1]);
    }
});
