//! SASL responses from a client that has not logged in: PLAIN and AMQPLAIN never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_codec::sasl::{parse_amqplain, parse_plain};

fuzz_target!(|data: &[u8]| {
    let _ = parse_plain(data);
    let _ = parse_amqplain(data);
});
