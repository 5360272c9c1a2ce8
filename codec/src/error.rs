//! Codec errors. A partial frame is not an error (the decoder returns `Ok(None)`);
//! only malformed input is, and each error names the reply code RabbitMQ would close with.

use thiserror::Error;

/// Malformed input: the connection is closed with `code` (all codec errors are hard errors).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code} {text}")]
pub struct FrameError {
    /// AMQP reply code (501, 502, 505, 540...).
    pub code: u16,
    /// Human-readable reason, sent as the reply text.
    pub text: String,
    /// Class of the offending method, 0 when not known.
    pub class_id: u16,
    /// Method of the offending method, 0 when not known.
    pub method_id: u16,
}

impl FrameError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        FrameError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn with_method(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }
}

/// The `Decoder`/`Encoder` error: malformed input or an I/O error from the transport.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
