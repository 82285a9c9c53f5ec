//! libFuzzer entry point; the checks live in `morgana_fuzz::ipv6_reassembly`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::ipv6_reassembly::check(data));
