//! Content-header properties kept as the raw bytes the publisher sent (flags + property list),
//! validated once, with the few fields the broker reads located by offset. Deliveries
//! re-send `raw()` untouched; a full parse (amq-protocol's `AMQPProperties`) is there for the
//! rare paths that rewrite properties.

use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::types::FieldTable;
use bytes::Bytes;

use crate::error::FrameError;
use crate::reply;

// Property flag bits, most significant first (AMQP 0-9-1 basic class).
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
const CONTINUATION: u16 = 1;

type Span = (u32, u32);

/// Where the fields the broker reads sit in a property list (offsets into its raw bytes),
/// kept apart from the bytes so a holder can store the bytes however it likes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct PropertyIndex {
    delivery_mode: u8,
    priority: Option<u8>,
    headers: Option<Span>,
    expiration: Option<Span>,
    user_id: Option<Span>,
    reply_to: Option<Span>,
}

/// Validated raw properties (flags + property list, as received) and their index.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    raw: Bytes,
    index: PropertyIndex,
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Properties")
            .field("len", &self.raw.len())
            .field("delivery_mode", &self.index.delivery_mode)
            .field("priority", &self.index.priority)
            .finish()
    }
}

fn syntax(text: &str) -> FrameError {
    FrameError::new(
        reply::SYNTAX_ERROR,
        format!("malformed content header: {text}"),
    )
}

/// A tiny cursor over the property list; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, FrameError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| syntax("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<Span, FrameError> {
        let start = self.pos;
        let end = start.checked_add(n).ok_or_else(|| syntax("overflow"))?;
        if end > self.buf.len() {
            return Err(syntax("truncated"));
        }
        self.pos = end;
        Ok((start as u32, end as u32))
    }

    fn short_str(&mut self) -> Result<Span, FrameError> {
        let len = self.u8()? as usize;
        let span = self.skip(len)?;
        if std::str::from_utf8(&self.buf[span.0 as usize..span.1 as usize]).is_err() {
            return Err(syntax("short string is not UTF-8"));
        }
        Ok(span)
    }

    fn table(&mut self) -> Result<Span, FrameError> {
        // Bounded depth and size before anything parses it (see `table`).
        crate::table::check_table(&self.buf[self.pos..]).map_err(|e| syntax(&e.to_string()))?;
        let b = self.skip(4)?;
        let s = &self.buf[b.0 as usize..b.1 as usize];
        let len = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
        self.skip(len)
    }
}

impl PropertyIndex {
    /// Validates `raw` (flags + property list) and records where the useful fields are.
    pub fn parse(raw: &[u8]) -> Result<Self, FrameError> {
        let mut p = PropertyIndex::default();
        let mut c = Cursor { buf: raw, pos: 0 };
        let hi = c.u8()?;
        let lo = c.u8()?;
        let flags = u16::from_be_bytes([hi, lo]);
        if flags & CONTINUATION != 0 || flags & 0b10 != 0 {
            return Err(syntax("unknown property flags"));
        }
        if flags & CONTENT_TYPE != 0 {
            c.short_str()?;
        }
        if flags & CONTENT_ENCODING != 0 {
            c.short_str()?;
        }
        if flags & HEADERS != 0 {
            p.headers = Some(c.table()?);
        }
        if flags & DELIVERY_MODE != 0 {
            p.delivery_mode = c.u8()?;
        }
        if flags & PRIORITY != 0 {
            p.priority = Some(c.u8()?);
        }
        if flags & CORRELATION_ID != 0 {
            c.short_str()?;
        }
        if flags & REPLY_TO != 0 {
            p.reply_to = Some(c.short_str()?);
        }
        if flags & EXPIRATION != 0 {
            p.expiration = Some(c.short_str()?);
        }
        if flags & MESSAGE_ID != 0 {
            c.short_str()?;
        }
        if flags & TIMESTAMP != 0 {
            c.skip(8)?;
        }
        if flags & TYPE != 0 {
            c.short_str()?;
        }
        if flags & USER_ID != 0 {
            p.user_id = Some(c.short_str()?);
        }
        if flags & APP_ID != 0 {
            c.short_str()?;
        }
        if flags & CLUSTER_ID != 0 {
            c.short_str()?;
        }
        if c.pos != c.buf.len() {
            return Err(syntax("trailing bytes after properties"));
        }
        Ok(p)
    }

    /// 2 means persistent.
    pub fn delivery_mode(&self) -> u8 {
        self.delivery_mode
    }

    pub fn priority(&self) -> Option<u8> {
        self.priority
    }

    fn span_str<'a>(&self, raw: &'a [u8], span: Option<Span>) -> Option<&'a str> {
        let (a, b) = span?;
        std::str::from_utf8(raw.get(a as usize..b as usize)?).ok()
    }

    pub fn expiration<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.span_str(raw, self.expiration)
    }

    pub fn user_id<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.span_str(raw, self.user_id)
    }

    pub fn reply_to<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.span_str(raw, self.reply_to)
    }

    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// Parses the headers table out of `raw`; `Ok(None)` when there is none.
    pub fn headers(&self, raw: &[u8]) -> Result<Option<FieldTable>, FrameError> {
        let Some((a, b)) = self.headers else {
            return Ok(None);
        };
        // The table parser wants the 4-byte length prefix too.
        let with_len = raw
            .get(a as usize - 4..b as usize)
            .ok_or_else(|| syntax("headers table"))?;
        crate::table::check_table(with_len).map_err(|e| syntax(&e.to_string()))?;
        amq_protocol::types::parsing::parse_field_table(with_len)
            .map(|(_, t)| Some(t))
            .map_err(|_| syntax("headers table"))
    }
}

impl Properties {
    /// Validates `raw` (flags + property list) and indexes it.
    pub fn parse(raw: Bytes) -> Result<Self, FrameError> {
        let index = PropertyIndex::parse(&raw)?;
        Ok(Properties { raw, index })
    }

    /// Encodes amq-protocol properties (used when the broker rewrites a message's properties).
    pub fn from_amqp(props: &AMQPProperties) -> Result<Self, FrameError> {
        let ctx = amq_protocol::frame::WriteContext::from(Vec::with_capacity(64));
        let (buf, _) = gen_properties(props)(ctx)
            .map_err(|e| FrameError::new(reply::INTERNAL_ERROR, format!("encode: {e}")))?
            .into_inner();
        Self::parse(Bytes::from(buf))
    }

    /// No properties at all (flags = 0).
    pub fn empty() -> Self {
        Properties {
            raw: Bytes::from_static(&[0, 0]),
            index: PropertyIndex::default(),
        }
    }

    /// The bytes as received: flags followed by the property list.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Full parse through amq-protocol.
    pub fn to_amqp(&self) -> Result<AMQPProperties, FrameError> {
        parse_properties(&self.raw[..])
            .map(|(_, p)| p)
            .map_err(|_| syntax("properties"))
    }

    /// Where the fields are.
    pub fn index(&self) -> &PropertyIndex {
        &self.index
    }

    /// 2 means persistent.
    pub fn delivery_mode(&self) -> u8 {
        self.index.delivery_mode
    }

    pub fn persistent(&self) -> bool {
        self.index.delivery_mode == 2
    }

    pub fn priority(&self) -> Option<u8> {
        self.index.priority
    }

    pub fn expiration(&self) -> Option<&str> {
        self.index.expiration(&self.raw)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.index.user_id(&self.raw)
    }

    pub fn reply_to(&self) -> Option<&str> {
        self.index.reply_to(&self.raw)
    }

    pub fn has_headers(&self) -> bool {
        self.index.has_headers()
    }

    /// Parses the headers table; `Ok(None)` when there is none.
    pub fn headers(&self) -> Result<Option<FieldTable>, FrameError> {
        self.index.headers(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, ShortString};

    #[test]
    fn empty_flags() {
        let p = Properties::parse(Bytes::from_static(&[0, 0])).unwrap();
        assert_eq!(p.delivery_mode(), 0);
        assert!(p.headers().unwrap().is_none());
    }

    #[test]
    fn roundtrip_through_amq_protocol() {
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from("k"), AMQPValue::LongInt(7));
        let props = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_headers(headers.clone())
            .with_delivery_mode(2)
            .with_priority(5)
            .with_expiration("1000".into())
            .with_user_id("guest".into())
            .with_reply_to("amq.gen-x".into());
        let p = Properties::from_amqp(&props).unwrap();
        assert!(p.persistent());
        assert_eq!(p.priority(), Some(5));
        assert_eq!(p.expiration(), Some("1000"));
        assert_eq!(p.user_id(), Some("guest"));
        assert_eq!(p.reply_to(), Some("amq.gen-x"));
        assert_eq!(p.headers().unwrap(), Some(headers));
        assert_eq!(p.to_amqp().unwrap(), props);
    }

    #[test]
    fn truncated_and_trailing_are_syntax_errors() {
        // content-type flag set but no string
        let e = Properties::parse(Bytes::from_static(&[0x80, 0])).unwrap_err();
        assert_eq!(e.code, reply::SYNTAX_ERROR);
        let e = Properties::parse(Bytes::from_static(&[0, 0, 1])).unwrap_err();
        assert_eq!(e.code, reply::SYNTAX_ERROR);
        // table length pointing past the end
        let e = Properties::parse(Bytes::from_static(&[0x20, 0, 0, 0, 0, 9])).unwrap_err();
        assert_eq!(e.code, reply::SYNTAX_ERROR);
    }
}
