//! Content assembly: a content-bearing method, then one header frame, then body frames until
//! the declared size is reached, become one [`Content`]. Anything out of that order is
//! 505 UNEXPECTED_FRAME, and a body frame past the declared size 501 FRAME_ERROR, as
//! RabbitMQ closes them (with its reply texts).

use bytes::Bytes;

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
        /// Grown as frames arrive (doubling, never past `size`), not reserved up front: a
        /// header may announce 128 MiB and send a byte.
        rest: Vec<u8>,
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

/// RabbitMQ's error for a frame of the wrong kind in each state; once a `basic.publish` has
/// started the content, the error names it (class 60, method 40).
fn out_of_order(state: &State) -> FrameError {
    match state {
        State::Idle => unexpected("expected method frame, got non method frame instead"),
        State::AwaitHeader(_) => {
            unexpected("expected content header for class 60, got non content header frame instead")
                .with_method(60, 40)
        }
        State::AwaitBody { .. } => {
            unexpected("expected content body, got non content body frame instead")
                .with_method(60, 40)
        }
    }
}

impl ContentAssembler {
    /// Bytes held for the message in progress (what has arrived, or the buffer growing to
    /// hold it, whichever is larger).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::AwaitBody { first, rest, .. } if rest.is_empty() => {
                first.as_ref().map_or(0, |f| f.len())
            }
            State::AwaitBody { rest, .. } => rest.capacity(),
            _ => 0,
        }
    }

    /// True between a content-bearing method and its last body frame.
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// The 505 for a frame that does not fit the current state (say, a method while content is
    /// in progress), as RabbitMQ words it.
    pub fn out_of_order(&self) -> FrameError {
        out_of_order(&self.state)
    }

    /// Forget any partial content (channel closed).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// A `basic.publish` arrived; its content follows.
    pub fn start(&mut self, publish: Publish) -> Result<(), FrameError> {
        if self.in_progress() {
            return Err(out_of_order(&self.state));
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
        if !matches!(self.state, State::AwaitHeader(_)) {
            return Err(out_of_order(&self.state));
        }
        if header.class_id != 60 {
            return Err(unexpected(&format!(
                "expected content header for class 60, got one for class {} instead",
                header.class_id
            ))
            .with_method(60, 40));
        }
        let State::AwaitHeader(publish) = std::mem::take(&mut self.state) else {
            return Err(out_of_order(&self.state));
        };
        if header.body_size > max_body {
            return Err(FrameError::new(
                reply::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {max_body}",
                    header.body_size
                ),
            )
            .with_method(60, 40));
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
            rest: Vec::new(),
        };
        Ok(None)
    }

    /// A body frame; returns the message once the declared size is reached.
    pub fn body(&mut self, chunk: Bytes) -> Result<Option<Content>, FrameError> {
        let State::AwaitBody {
            size, first, rest, ..
        } = &mut self.state
        else {
            return Err(out_of_order(&self.state));
        };
        // Once a second chunk arrives, `rest` holds a copy of `first` too.
        let have = if rest.is_empty() {
            first.as_ref().map_or(0, |f| f.len())
        } else {
            rest.len()
        };
        if have + chunk.len() > *size {
            return Err(FrameError::new(
                reply::FRAME_ERROR,
                "content body frame exceeds remaining content size",
            )
            .with_method(60, 40));
        }
        // The common single-frame body is kept without a copy.
        if first.is_none() {
            *first = Some(chunk);
        } else {
            let need = have + chunk.len();
            if rest.capacity() < need {
                // Doubling until a quarter has arrived, then the whole announced size: the
                // peak while growing stays near 1.5x the message, not 2x and more.
                let target = if need.saturating_mul(4) >= *size {
                    *size
                } else {
                    need.max(2 * rest.len())
                };
                rest.reserve_exact(target.min(*size) - rest.len());
            }
            if rest.is_empty() {
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
            Bytes::from(rest)
        };
        Ok(Some(Content {
            publish,
            properties,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ShortStr;

    fn capacity(a: &ContentAssembler) -> usize {
        match &a.state {
            State::AwaitBody { rest, .. } => rest.capacity(),
            _ => 0,
        }
    }

    #[test]
    fn an_announced_size_is_not_reserved_up_front() {
        let mut a = ContentAssembler::default();
        a.start(Publish {
            exchange: ShortStr::new("").unwrap(),
            routing_key: ShortStr::new("q").unwrap(),
            mandatory: false,
            immediate: false,
        })
        .unwrap();
        let size = 128u64 << 20;
        let header = ContentHeader {
            class_id: 60,
            body_size: size,
            properties: Properties::parse(Bytes::from_static(&[0, 0])).unwrap(),
        };
        assert!(a.header(header, size).unwrap().is_none());
        for _ in 0..3 {
            assert!(a.body(Bytes::from_static(&[1u8; 1000])).unwrap().is_none());
        }
        // What arrived, doubling at most: not the 128 MiB announced.
        assert!(a.buffered() <= 4000, "{}", a.buffered());
        assert!(capacity(&a) <= 4000, "{}", capacity(&a));
        // Growth never passes the announced size.
        let mut a2 = ContentAssembler::default();
        a2.start(Publish {
            exchange: ShortStr::new("").unwrap(),
            routing_key: ShortStr::new("q").unwrap(),
            mandatory: false,
            immediate: false,
        })
        .unwrap();
        let header = ContentHeader {
            class_id: 60,
            body_size: 3000,
            properties: Properties::parse(Bytes::from_static(&[0, 0])).unwrap(),
        };
        a2.header(header, 3000).unwrap();
        a2.body(Bytes::from_static(&[1u8; 1000])).unwrap();
        a2.body(Bytes::from_static(&[1u8; 1000])).unwrap();
        assert!(capacity(&a2) <= 3000);
        let done = a2.body(Bytes::from_static(&[1u8; 1000])).unwrap().unwrap();
        assert_eq!(done.body.len(), 3000);
    }
}
