//! One rule expression (`NFTA_LIST_ELEM` of `NFTA_RULE_EXPRESSIONS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_proxy::nft::netlink::expr::Expr::decode(data);
});
