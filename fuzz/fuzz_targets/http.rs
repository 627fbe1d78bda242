//! The HTTP request path on arbitrary bytes: parse, route, respond; never panic (see
//! `sortd::fuzzing::http`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sortd::fuzzing::http(data));
