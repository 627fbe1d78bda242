//! Log recovery's reader on arbitrary bytes: never panic, offsets exact, a cut clean log
//! reads as a torn tail (see `sortd::fuzzing::log`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sortd::fuzzing::log(data));
