#![no_main]
//! See `modelgate::fuzzing::model_extract` for the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelgate::fuzzing::model_extract(data));
