//! libFuzzer entry point; the checks live in `morgana_fuzz::gso`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::gso::check(data));
