//! The frame decoder on arbitrary bytes and arbitrary splits: never panics, splits never
//! change what is decoded, and every frame that parses round-trips (see `sortd::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sortd::fuzzing::frame(data));
