//! Frames decoded from fuzzed bytes, fed to one content assembler per channel as the
//! connection does (publish, header, bodies): never a panic; a finished message's body has
//! the size its header announced.
#![no_main]

use std::collections::HashMap;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_codec::decode::decode_frame;
use warren_codec::{ContentAssembler, Frame, Method};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut channels: HashMap<u16, ContentAssembler> = HashMap::new();
    let mut announced: HashMap<u16, u64> = HashMap::new();
    while let Ok(Some(frame)) = decode_frame(&mut buf, 131_072) {
        match frame {
            Frame::Method(ch, Method::Publish(p)) => {
                let _ = channels.entry(ch).or_default().start(p);
            }
            Frame::Header(ch, h) => {
                let size = h.body_size;
                let a = channels.entry(ch).or_default();
                match a.header(h, 1 << 20) {
                    Ok(Some(c)) => assert!(c.body.is_empty()),
                    Ok(None) => {
                        announced.insert(ch, size);
                    }
                    Err(_) => a.reset(),
                }
            }
            Frame::Body(ch, body) => {
                let a = channels.entry(ch).or_default();
                match a.body(body) {
                    Ok(Some(c)) => assert_eq!(Some(c.body.len() as u64), announced.remove(&ch)),
                    Ok(None) => assert!(a.buffered() as u64 <= announced[&ch]),
                    Err(_) => a.reset(),
                }
            }
            _ => {}
        }
    }
});
