//! libFuzzer entry point; the checks live in `morgana_fuzz::ipv4_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::ipv4_parse::check(data));
