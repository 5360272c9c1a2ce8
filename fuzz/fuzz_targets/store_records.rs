//! Records read back from the data directory (a damaged disk is input too): every decoder
//! returns a record or an error, never panics or recurses without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren::store::{log, records};

fuzz_target!(|data: &[u8]| {
    // The first byte picks where a key ends and its value begins.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let (k, v) = rest.split_at(at);
    let _ = records::decode_message(v);
    let _ = log::Extent::decode(v);
    let _ = log::SettledRecord::decode(v);
    let _ = log::parse_header(v);
    let _ = records::decode_queue(k, v);
    let _ = records::decode_exchange(k, v);
    let _ = records::decode_binding(k);
    let _ = records::parse_segment_key(k);
});
