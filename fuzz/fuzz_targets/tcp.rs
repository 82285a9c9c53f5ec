//! libFuzzer entry point; the checks live in `morgana_fuzz::tcp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| morgana_fuzz::tcp::check(data));
