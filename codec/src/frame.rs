//! The frames the broker sees. Hot methods (`basic.publish`, `basic.ack`) get their own
//! variants with borrowed-from-the-wire strings; every other method is amq-protocol's
//! generated `AMQPClass`.

use bytes::Bytes;

use crate::properties::Properties;
use crate::AMQPClass;

/// A short string as received: at most 255 bytes of valid UTF-8, sharing the read buffer.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr(Bytes);

impl ShortStr {
    /// Wraps bytes already checked to be UTF-8 and at most 255 long.
    pub(crate) fn from_checked(b: Bytes) -> Self {
        ShortStr(b)
    }

    /// A short string from a `&str`; `None` if longer than 255 bytes.
    pub fn new(s: &str) -> Option<Self> {
        (s.len() <= 255).then(|| ShortStr(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// A short string from a static `&str` (panics at compile-time-known lengths only).
    pub fn from_static(s: &'static str) -> Self {
        assert!(s.len() <= 255, "short string over 255 bytes");
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // The constructors only accept valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `basic.publish`, parsed by hand (hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub mandatory: bool,
    pub immediate: bool,
}

/// `basic.ack`, parsed by hand (hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub delivery_tag: u64,
    pub multiple: bool,
}

/// `basic.qos`, parsed by hand: amq-protocol drops `prefetch_size`, which the broker must
/// see to refuse it (540) as RabbitMQ does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    pub prefetch_size: u32,
    pub prefetch_count: u16,
    pub global: bool,
}

/// A decoded method.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Publish(Publish),
    Ack(Ack),
    Qos(Qos),
    Other(Box<AMQPClass>),
}

impl Method {
    pub fn class_id(&self) -> u16 {
        match self {
            Method::Publish(_) | Method::Ack(_) | Method::Qos(_) => 60,
            Method::Other(m) => m.get_amqp_class_id(),
        }
    }

    pub fn method_id(&self) -> u16 {
        match self {
            Method::Publish(_) => 40,
            Method::Ack(_) => 80,
            Method::Qos(_) => 10,
            Method::Other(m) => m.get_amqp_method_id(),
        }
    }

    /// Whether this method is followed by content (header + body frames).
    pub fn has_content(&self) -> bool {
        matches!(self, Method::Publish(_))
    }
}

/// A content header: class, body size and the raw property bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: Properties,
}

/// One frame off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method(u16, Method),
    Header(u16, ContentHeader),
    Body(u16, Bytes),
    Heartbeat(u16),
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) | Frame::Heartbeat(c) => {
                *c
            }
        }
    }
}
