#![no_main]
//! See `modelgate::fuzzing::usage_scan` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::usage_scan(data));
