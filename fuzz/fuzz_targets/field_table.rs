//! Field tables from the wire: the bounds check never panics and runs in linear time; a
//! table it accepts parses (or fails) in amq-protocol without overflowing the stack; the
//! content-header property index (which checks its headers table the same way) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_codec::table::check_table;
use warren_codec::PropertyIndex;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = check_table(data) {
        assert!(n <= data.len());
        let _ = amq_protocol::types::parsing::parse_field_table(&data[..n]);
    }
    if let Ok(index) = PropertyIndex::parse(data) {
        let _ = index.headers(data);
    }
});
