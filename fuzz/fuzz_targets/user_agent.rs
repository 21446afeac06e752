#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rvoip_sdk::fuzzing::user_agent(data));
