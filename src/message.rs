//! A published message. One `Arc<Message>` is shared by every queue the message reaches:
//! the body is stored once however many queues hold it.

use bytes::Bytes;
use warren_codec::{Content, Properties, ShortStr};

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: Properties,
    pub body: Bytes,
}

impl Message {
    pub fn from_content(c: Content) -> Self {
        Message {
            exchange: c.publish.exchange,
            routing_key: c.publish.routing_key,
            properties: c.properties,
            body: c.body,
        }
    }

    /// Bytes this message accounts for in a queue.
    pub fn size(&self) -> usize {
        self.body.len()
    }
}
