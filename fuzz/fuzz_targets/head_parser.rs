#![no_main]
//! See `modelgate::fuzzing::head_parser` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::head_parser(data));
