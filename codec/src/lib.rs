//! Warren's wire codec: AMQP 0-9-1 frames to and from bytes.
//!
//! Module map:
//! - [`frame`]: the frames the broker sees (methods, content headers, bodies, heartbeats).
//! - [`decode`]: [`decode::FrameDecoder`], a tokio-util `Decoder` that checks each frame's
//!   7-byte header against `frame_max` before buffering, and parses the hot methods
//!   (`basic.publish`, `basic.ack`) by hand; everything else goes through amq-protocol.
//! - [`properties`]: a validated view over a content header's raw property bytes, kept as
//!   received so a delivery re-sends them without re-encoding.
//! - [`content`]: method + header + body frames assembled into one message.
//! - [`sasl`]: PLAIN and AMQPLAIN responses to a user name and password.
//! - [`table`]: bounds (depth, values) on field tables from the wire, checked before any
//!   recursive parser sees them.
//! - [`encode`]: frames out, with hand-written writers for deliveries and confirms.
//! - [`error`]: the codec's errors, each carrying the AMQP reply code it maps to.
//!
//! **Invariant:** the codec does no I/O and never panics on peer input.

pub mod content;
pub mod decode;
pub mod encode;
pub mod error;
pub mod frame;
pub mod properties;
pub mod sasl;
pub mod table;

pub use amq_protocol::protocol::{self as protocol, AMQPClass};
pub use amq_protocol::types;
pub use content::{Content, ContentAssembler};
pub use decode::FrameDecoder;
pub use error::{CodecError, FrameError};
pub use frame::{Ack, ContentHeader, Frame, Method, Publish, Qos, ShortStr};
pub use properties::{Properties, PropertyIndex};

/// The frame-end octet that closes every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload: type (1) + channel (2) + size (4) + frame-end (1).
pub const FRAME_OVERHEAD: usize = 8;
/// The protocol header this server speaks.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// AMQP reply codes used by the codec and the broker (RabbitMQ's numbering).
pub mod reply {
    pub const SUCCESS: u16 = 200;
    pub const CONTENT_TOO_LARGE: u16 = 311;
    pub const NO_ROUTE: u16 = 312;
    pub const NO_CONSUMERS: u16 = 313;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const INVALID_PATH: u16 = 402;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;

    /// The symbolic name RabbitMQ puts at the front of a reply text.
    pub fn name(code: u16) -> &'static str {
        match code {
            SUCCESS => "OK",
            CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
            NO_ROUTE => "NO_ROUTE",
            NO_CONSUMERS => "NO_CONSUMERS",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            INVALID_PATH => "INVALID_PATH",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            INTERNAL_ERROR => "INTERNAL_ERROR",
            _ => "ERROR",
        }
    }
}
