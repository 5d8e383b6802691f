#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| airhop::fuzzing::abandon(data));
