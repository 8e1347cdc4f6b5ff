//! `decode_family_id`, the reply to CTRL_CMD_GETFAMILY.
#![no_main]

use ferry_proxy::ipvs::codec::decode_family_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|genl: &[u8]| {
    let _ = decode_family_id(genl);
});
