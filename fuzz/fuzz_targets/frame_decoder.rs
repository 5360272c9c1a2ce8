//! Bytes from a peer into the frame decoder, frame after frame, at the default and the
//! pre-login frame_max: never a panic, never a buffer past what arrived and twice frame_max
//! (the decoder checks the announced size against frame_max before buffering).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_codec::decode::decode_frame;

fuzz_target!(|data: &[u8]| {
    for frame_max in [8192u32, 131_072] {
        let mut buf = BytesMut::from(data);
        for _ in 0..1000 {
            match decode_frame(&mut buf, frame_max) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        // Bounded by what arrived and the frame limit (the buffer may grow to twice a frame
        // while one is incomplete), never by a size a header announces.
        assert!(buf.capacity() <= data.len() + 2 * (frame_max as usize + 8) + 64);
    }
});
