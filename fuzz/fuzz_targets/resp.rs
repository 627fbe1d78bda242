//! The RESP command decoder on arbitrary bytes: never panic, the same commands however the
//! stream is split, and every command round-trips (see `sortd::fuzzing::resp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sortd::fuzzing::resp(data));
