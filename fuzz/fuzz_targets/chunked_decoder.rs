#![no_main]
//! See `modelgate::fuzzing::chunked_decoder` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::chunked_decoder(data));
