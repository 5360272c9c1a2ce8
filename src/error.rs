//! AMQP errors as the broker raises them. Hard errors close the connection
//! (connection.close), soft errors close the channel (channel.close); the split is by type,
//! and each carries the reply code and the method that caused it.

use thiserror::Error;
use warren_codec::reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// channel.close
    Soft,
    /// connection.close
    Hard,
}

/// An error a method handler returns; the connection turns it into the matching close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{} - {text}", reply::name(*.code))]
pub struct AmqpError {
    pub severity: Severity,
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

pub type AmqpResult<T> = Result<T, AmqpError>;

macro_rules! ctor {
    ($name:ident, $code:path, $sev:ident) => {
        pub fn $name(text: impl Into<String>) -> Self {
            AmqpError {
                severity: Severity::$sev,
                code: $code,
                text: text.into(),
                class_id: 0,
                method_id: 0,
            }
        }
    };
}

impl AmqpError {
    ctor!(access_refused, reply::ACCESS_REFUSED, Soft);
    ctor!(not_found, reply::NOT_FOUND, Soft);
    ctor!(resource_locked, reply::RESOURCE_LOCKED, Soft);
    ctor!(precondition_failed, reply::PRECONDITION_FAILED, Soft);
    ctor!(connection_forced, reply::CONNECTION_FORCED, Hard);
    ctor!(syntax_error, reply::SYNTAX_ERROR, Hard);
    ctor!(command_invalid, reply::COMMAND_INVALID, Hard);
    ctor!(channel_error, reply::CHANNEL_ERROR, Hard);
    ctor!(unexpected_frame, reply::UNEXPECTED_FRAME, Hard);
    ctor!(not_allowed, reply::NOT_ALLOWED, Hard);
    ctor!(not_implemented, reply::NOT_IMPLEMENTED, Hard);
    ctor!(internal_error, reply::INTERNAL_ERROR, Hard);
    ctor!(resource_error, reply::RESOURCE_ERROR, Hard);

    /// The refused login; a hard error whose code (403) is otherwise a soft one.
    pub fn login_refused(text: impl Into<String>) -> Self {
        AmqpError {
            severity: Severity::Hard,
            ..Self::access_refused(text)
        }
    }

    /// Records which method failed (reported in the close frame).
    pub fn on(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    pub fn is_hard(&self) -> bool {
        self.severity == Severity::Hard
    }

    /// Reply text as RabbitMQ formats it: `NOT_FOUND - no queue 'q' in vhost '/'`.
    pub fn reply_text(&self) -> String {
        let t = format!("{} - {}", reply::name(self.code), self.text);
        // reply-text is a short string
        if t.len() > 255 {
            let mut end = 255;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t[..end].to_string()
        } else {
            t
        }
    }
}

impl From<warren_codec::FrameError> for AmqpError {
    fn from(e: warren_codec::FrameError) -> Self {
        let severity = if e.code == reply::PRECONDITION_FAILED {
            Severity::Soft
        } else {
            Severity::Hard
        };
        AmqpError {
            severity,
            code: e.code,
            text: e.text,
            class_id: e.class_id,
            method_id: e.method_id,
        }
    }
}
