#![no_main]
//! See `modelgate::fuzzing::response_head` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::response_head(data));
