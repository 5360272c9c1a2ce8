//! A published message. One `Arc<Message>` is shared by every queue the message reaches:
//! the body is stored once however many queues hold it.
//!
//! Layout: a message keeps its exchange, routing key, property bytes and (when small) body
//! in one buffer of its own, copied out of the connection's read buffer, so a queued message
//! pins only its own bytes and costs one allocation plus this struct. A large body (at least
//! [`INLINE_BODY_BELOW`]) is kept as read, shared with the frame it came in.

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use warren_codec::{Content, PropertyIndex};

/// Bodies below this size are copied into the message's own buffer.
pub const INLINE_BODY_BELOW: usize = 16 * 1024;

pub struct Message {
    /// exchange | routing key | property list | body (when inline).
    data: Bytes,
    /// A large body, shared with the read buffer it arrived in.
    external_body: Option<Bytes>,
    exchange_len: u8,
    routing_key_len: u8,
    properties_len: u32,
    index: PropertyIndex,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("body_len", &self.body().len())
            .finish()
    }
}

impl Message {
    pub fn from_content(c: Content) -> Self {
        let ex = c.publish.exchange.as_bytes();
        let rk = c.publish.routing_key.as_bytes();
        let props = c.properties.raw();
        let inline = c.body.len() < INLINE_BODY_BELOW;
        let len = ex.len() + rk.len() + props.len() + if inline { c.body.len() } else { 0 };
        // Exactly `len` bytes, so the conversion to `Bytes` allocates nothing more.
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(ex);
        data.extend_from_slice(rk);
        data.extend_from_slice(props);
        if inline {
            data.extend_from_slice(&c.body);
        }
        let (exchange_len, routing_key_len) = (ex.len() as u8, rk.len() as u8);
        let properties_len = props.len() as u32;
        let index = *c.properties.index();
        Message {
            data: Bytes::from(data),
            external_body: if inline { None } else { Some(c.body) },
            exchange_len,
            routing_key_len,
            properties_len,
            index,
        }
    }

    /// A message read back from the store; `None` if its property bytes don't parse.
    pub fn from_parts(
        exchange: &str,
        routing_key: &str,
        props: &[u8],
        body: &[u8],
    ) -> Option<Self> {
        let index = PropertyIndex::parse(props).ok()?;
        let mut data =
            Vec::with_capacity(exchange.len() + routing_key.len() + props.len() + body.len());
        data.extend_from_slice(exchange.as_bytes());
        data.extend_from_slice(routing_key.as_bytes());
        data.extend_from_slice(props);
        data.extend_from_slice(body);
        Some(Message {
            data: Bytes::from(data),
            external_body: None,
            exchange_len: exchange.len().min(255) as u8,
            routing_key_len: routing_key.len().min(255) as u8,
            properties_len: props.len() as u32,
            index,
        })
    }

    /// A message read back from disk, its body already in a buffer of its own: kept as it
    /// is when large (no copy), copied in with the rest when small.
    pub fn from_parts_shared(
        exchange: &str,
        routing_key: &str,
        props: &[u8],
        body: Bytes,
    ) -> Option<Self> {
        if body.len() < INLINE_BODY_BELOW {
            return Self::from_parts(exchange, routing_key, props, &body);
        }
        let index = PropertyIndex::parse(props).ok()?;
        let mut data = Vec::with_capacity(exchange.len() + routing_key.len() + props.len());
        data.extend_from_slice(exchange.as_bytes());
        data.extend_from_slice(routing_key.as_bytes());
        data.extend_from_slice(props);
        Some(Message {
            data: Bytes::from(data),
            external_body: Some(body),
            exchange_len: exchange.len().min(255) as u8,
            routing_key_len: routing_key.len().min(255) as u8,
            properties_len: props.len() as u32,
            index,
        })
    }

    /// delivery-mode 2.
    pub fn is_persistent(&self) -> bool {
        self.index.delivery_mode() == 2
    }

    fn names_len(&self) -> usize {
        self.exchange_len as usize + self.routing_key_len as usize
    }

    pub fn exchange(&self) -> &str {
        // Validated UTF-8 short strings when decoded.
        std::str::from_utf8(&self.data[..self.exchange_len as usize]).unwrap_or_default()
    }

    pub fn routing_key(&self) -> &str {
        std::str::from_utf8(&self.data[self.exchange_len as usize..self.names_len()])
            .unwrap_or_default()
    }

    /// The property list as the publisher sent it (flags + properties).
    pub fn properties_raw(&self) -> &[u8] {
        let at = self.names_len();
        &self.data[at..at + self.properties_len as usize]
    }

    pub fn properties(&self) -> &PropertyIndex {
        &self.index
    }

    /// The headers table, parsed (for the headers exchange); `None` if absent or malformed.
    pub fn headers(&self) -> Option<FieldTable> {
        self.index.headers(self.properties_raw()).ok().flatten()
    }

    /// The body as a shared handle (no copy), for writing it out.
    pub fn body_bytes(&self) -> Bytes {
        match &self.external_body {
            Some(b) => b.clone(),
            None => self
                .data
                .slice(self.names_len() + self.properties_len as usize..),
        }
    }

    pub fn body(&self) -> &[u8] {
        match &self.external_body {
            Some(b) => b,
            None => &self.data[self.names_len() + self.properties_len as usize..],
        }
    }

    /// Bytes this message accounts for in a queue.
    pub fn size(&self) -> usize {
        self.body().len()
    }

    /// What keeping this message in RAM costs, roughly: its bytes plus the structs around
    /// them (the `Arc<Message>` and the queue's slot). The RAM budget counts this.
    pub fn ram_cost(&self) -> usize {
        const OVERHEAD: usize = 160;
        self.data.len() + self.external_body.as_ref().map_or(0, |b| b.len()) + OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_codec::{Properties, Publish, ShortStr};

    fn content(read_buffer: &Bytes, body: std::ops::Range<usize>) -> Content {
        Content {
            publish: Publish {
                exchange: ShortStr::new("ex").unwrap(),
                routing_key: ShortStr::new("key").unwrap(),
                mandatory: false,
                immediate: false,
            },
            properties: Properties::parse(Bytes::from_static(&[0x10, 0, 2])).unwrap(),
            body: read_buffer.slice(body),
        }
    }

    #[test]
    fn small_message_owns_its_bytes() {
        let read_buffer = Bytes::from(vec![7u8; 64 * 1024]);
        let m = Message::from_content(content(&read_buffer, 100..116));
        let range = read_buffer.as_ptr() as usize..read_buffer.as_ptr() as usize + 64 * 1024;
        assert!(!range.contains(&(m.body().as_ptr() as usize)));
        assert_eq!(m.body(), &[7u8; 16]);
        assert_eq!((m.exchange(), m.routing_key()), ("ex", "key"));
        assert_eq!(m.properties_raw(), &[0x10, 0, 2]);
        assert_eq!(m.properties().delivery_mode(), 2);
    }

    #[test]
    fn large_body_is_shared_not_copied() {
        let read_buffer = Bytes::from(vec![1u8; 64 * 1024]);
        let m = Message::from_content(content(&read_buffer, 0..INLINE_BODY_BELOW));
        assert_eq!(m.body().as_ptr(), read_buffer.as_ptr());
        assert_eq!(m.size(), INLINE_BODY_BELOW);
        assert_eq!(m.routing_key(), "key");
    }
}
