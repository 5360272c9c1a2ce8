//! Content assembly: a content-bearing method, then one header frame, then body frames until
//! the declared size is reached, become one [`Content`]. Anything out of that order is
//! 505 UNEXPECTED_FRAME, as RabbitMQ closes it.

use bytes::{Bytes, BytesMut};

use crate::error::FrameError;
use crate::frame::{ContentHeader, Publish};
use crate::properties::Properties;
use crate::reply;

/// A complete published message as it came off the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub publish: Publish,
    pub properties: Properties,
    pub body: Bytes,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    AwaitHeader(Publish),
    AwaitBody {
        publish: Publish,
        properties: Properties,
        size: usize,
        first: Option<Bytes>,
        rest: BytesMut,
    },
}

/// Per-channel content assembly state machine.
#[derive(Debug, Default)]
pub struct ContentAssembler {
    state: State,
}

fn unexpected(text: &str) -> FrameError {
    FrameError::new(reply::UNEXPECTED_FRAME, text.to_string())
}

impl ContentAssembler {
    /// True between a content-bearing method and its last body frame.
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Forget any partial content (channel closed).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// A `basic.publish` arrived; its content follows.
    pub fn start(&mut self, publish: Publish) -> Result<(), FrameError> {
        if self.in_progress() {
            return Err(unexpected("method frame while content was expected"));
        }
        self.state = State::AwaitHeader(publish);
        Ok(())
    }

    /// A content header. `max_body` bounds the declared size; an empty body completes at once.
    pub fn header(
        &mut self,
        header: ContentHeader,
        max_body: u64,
    ) -> Result<Option<Content>, FrameError> {
        let State::AwaitHeader(publish) = std::mem::take(&mut self.state) else {
            return Err(unexpected("content header frame without a content method"));
        };
        if header.class_id != 60 {
            return Err(unexpected("content header for a class other than basic"));
        }
        if header.body_size > max_body {
            return Err(FrameError::new(
                reply::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {max_body}",
                    header.body_size
                ),
            ));
        }
        if header.body_size == 0 {
            return Ok(Some(Content {
                publish,
                properties: header.properties,
                body: Bytes::new(),
            }));
        }
        self.state = State::AwaitBody {
            publish,
            properties: header.properties,
            size: header.body_size as usize,
            first: None,
            rest: BytesMut::new(),
        };
        Ok(None)
    }

    /// A body frame; returns the message once the declared size is reached.
    pub fn body(&mut self, chunk: Bytes) -> Result<Option<Content>, FrameError> {
        let State::AwaitBody {
            size, first, rest, ..
        } = &mut self.state
        else {
            return Err(unexpected("content body frame without a content header"));
        };
        // Once a second chunk arrives, `rest` holds a copy of `first` too.
        let have = if rest.is_empty() {
            first.as_ref().map_or(0, |f| f.len())
        } else {
            rest.len()
        };
        if have + chunk.len() > *size {
            return Err(unexpected("content body larger than its header declared"));
        }
        // The common single-frame body is kept without a copy.
        if first.is_none() {
            *first = Some(chunk);
        } else {
            if rest.is_empty() {
                rest.reserve(*size);
                if let Some(f) = first.as_ref() {
                    rest.extend_from_slice(f);
                }
            }
            rest.extend_from_slice(&chunk);
        }
        let have = if rest.is_empty() {
            first.as_ref().map_or(0, |f| f.len())
        } else {
            rest.len()
        };
        if have < *size {
            return Ok(None);
        }
        let State::AwaitBody {
            publish,
            properties,
            first,
            rest,
            ..
        } = std::mem::take(&mut self.state)
        else {
            return Ok(None);
        };
        let body = if rest.is_empty() {
            first.unwrap_or_default()
        } else {
            rest.freeze()
        };
        Ok(Some(Content {
            publish,
            properties,
            body,
        }))
    }
}
