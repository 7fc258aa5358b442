#![no_main]
//! See `modelgate::fuzzing::sse_splitter` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::sse_splitter(data));
