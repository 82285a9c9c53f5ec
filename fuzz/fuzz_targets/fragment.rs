//! libFuzzer entry point; the checks live in `morgana_fuzz::fragment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::fragment::check(data));
