//! Frame dispatch: each decoded frame to the connection's or a channel's state machine,
//! content assembly per channel, and the mapping of errors to channel or connection closes.

use crate::metrics::Counter;
use amq_protocol::protocol::{channel as chan, connection as conn, AMQPClass};
use tracing::{debug, warn};
use warren_codec::{Frame, Method};

use super::channel::Channel;
use super::{Connection, Phase};
use crate::error::AmqpError;

impl Connection {
    pub(super) fn handle_frame(&mut self, frame: Frame) {
        let result = match frame {
            Frame::Heartbeat(0) => Ok(()),
            // RabbitMQ answers 505 here (the spec says 501).
            Frame::Heartbeat(_) => Err(AmqpError::unexpected_frame("type 8, all octets = <<>>")),
            Frame::Method(0, method) => self.connection_method(method),
            _ if self.phase == Phase::Closing => Ok(()), // dropped until close-ok
            _ if self.phase != Phase::Open => Err(AmqpError::command_invalid(
                "channel frame before the connection was opened",
            )),
            Frame::Method(ch, method) => self.channel_method(ch, method),
            Frame::Header(ch, header) => self.content_header(ch, header),
            Frame::Body(ch, body) => self.content_body(ch, body),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Turns an error into the close it calls for.
    pub(super) fn fail(&mut self, e: AmqpError) {
        if self.phase == Phase::Closing || self.phase == Phase::Closed {
            return;
        }
        if e.is_hard() {
            self.close_connection(&e);
        } else {
            warn!("channel error: {e}");
        }
    }

    pub(super) fn connection_method(&mut self, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        // RabbitMQ's words for any method channel 0 does not expect now.
        let unexpected = |phase: Phase| {
            let state = match phase {
                Phase::AwaitStartOk => "starting",
                Phase::AwaitTuneOk => "tuning",
                Phase::AwaitOpen => "opening",
                _ => "running",
            };
            AmqpError::channel_error(format!("unexpected method in connection state {state}"))
                .on(class_id, method_id)
        };
        let Method::Other(class) = method else {
            return Err(unexpected(self.phase));
        };
        let AMQPClass::Connection(m) = *class else {
            return Err(unexpected(self.phase));
        };
        match (self.phase, m) {
            (Phase::Closing, conn::AMQPMethod::CloseOk(_)) => {
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::Closing, conn::AMQPMethod::Close(_)) => {
                // Both sides closed at once.
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                self.phase = Phase::Closed;
                self.linger = true;
                Ok(())
            }
            (Phase::Closing, _) => Ok(()),
            (_, conn::AMQPMethod::Close(c)) => {
                debug!(code = c.reply_code, text = %c.reply_text, "client closed the connection");
                self.release_channels();
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                self.phase = Phase::Closed;
                self.linger = true;
                Ok(())
            }
            (Phase::AwaitStartOk, conn::AMQPMethod::StartOk(m)) => self.on_start_ok(m),
            (Phase::AwaitTuneOk, conn::AMQPMethod::TuneOk(m)) => self.on_tune_ok(m),
            (Phase::AwaitOpen, conn::AMQPMethod::Open(m)) => self.on_open(m),
            (Phase::Open, conn::AMQPMethod::Blocked(_) | conn::AMQPMethod::Unblocked(_)) => Ok(()),
            (Phase::Open, conn::AMQPMethod::UpdateSecret(_)) => {
                // Passwords don't expire here, so a new secret changes nothing; RabbitMQ
                // answers the same way for its internal backend.
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::UpdateSecretOk(
                        conn::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            (phase, _) => Err(unexpected(phase)),
        }
    }

    pub(super) fn channel_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let open = self.channels.get(&ch).map(|c| c.closing);
        match (open, &method) {
            (None, Method::Other(c))
                if matches!(**c, AMQPClass::Channel(chan::AMQPMethod::Open(_))) =>
            {
                // The spec (and this project) refuse numbers above channel_max with 504, which
                // also bounds how many are open. (RabbitMQ 3.10 opens any number and refuses
                // the channel_max+1-th open channel with 530.)
                if ch > self.channel_max {
                    return Err(AmqpError::channel_error(format!(
                        "channel number {ch} is higher than the negotiated channel_max ({})",
                        self.channel_max
                    ))
                    .on(class_id, method_id));
                }
                if let Some(max) = self.broker.user_channel_limit(&self.user) {
                    let others = self
                        .broker
                        .sessions
                        .user_channels_except(&self.user, self.id);
                    if others + self.channels.len() as u64 >= max {
                        // RabbitMQ's text (rabbit_reader), a connection error.
                        return Err(AmqpError::not_allowed(format!(
                            "number of channels opened for user '{}' has reached the maximum allowed user limit of ({max})",
                            self.user
                        ))
                        .on(class_id, method_id));
                    }
                }
                self.channels.insert(ch, Box::new(Channel::new(ch)));
                self.tally.add(Counter::ChannelsOpened, 1);
                self.write_method(
                    ch,
                    &AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {})),
                );
                return Ok(());
            }
            (None, Method::Other(c))
                if matches!(**c, AMQPClass::Channel(chan::AMQPMethod::CloseOk(_))) =>
            {
                // A late close-ok for a channel already gone: harmless.
                return Ok(());
            }
            (None, _) => {
                return Err(AmqpError::channel_error(format!(
                    "expected 'channel.open' on channel {ch}"
                ))
                .on(class_id, method_id));
            }
            (Some(true), Method::Other(c)) => {
                match **c {
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => {
                        self.channels.remove(&ch);
                    }
                    AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                        self.write_method(
                            ch,
                            &AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                        );
                        self.channels.remove(&ch);
                    }
                    _ => {}
                }
                return Ok(());
            }
            (Some(true), _) => return Ok(()),
            (Some(false), _) => {}
        }
        if let Some(c) = self.channels.get(&ch) {
            if c.content.in_progress() {
                // Names the pending basic.publish, as RabbitMQ does.
                return Err(c.content.out_of_order().into());
            }
        }
        let result = match method {
            Method::Publish(p) => self.on_publish(ch, p),
            Method::Ack(a) => self.on_ack(ch, a.delivery_tag, a.multiple),
            Method::Qos(q) => self.on_qos(ch, q),
            Method::Other(class) => self.dispatch_method(ch, *class),
        };
        match result {
            Err(e) if !e.is_hard() => {
                self.close_channel(ch, e.on(class_id, method_id));
                Ok(())
            }
            other => other.map_err(|e| e.on(class_id, method_id)),
        }
    }

    pub(super) fn content_header(
        &mut self,
        ch: u16,
        header: warren_codec::ContentHeader,
    ) -> Result<(), AmqpError> {
        let max = self.broker.config.max_message_size;
        let Some(c) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::channel_error(format!(
                "expected 'channel.open' on channel {ch}"
            )));
        };
        if c.closing {
            return Ok(());
        }
        match c.content.header(header, max) {
            Ok(Some(content)) => self.on_content(ch, content),
            Ok(None) => Ok(()),
            Err(e) => self.frame_error_on_channel(ch, e),
        }
    }

    pub(super) fn content_body(&mut self, ch: u16, body: bytes::Bytes) -> Result<(), AmqpError> {
        let Some(c) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::channel_error(format!(
                "expected 'channel.open' on channel {ch}"
            )));
        };
        if c.closing {
            return Ok(());
        }
        let len = body.len();
        match c.content.body(body) {
            Ok(Some(content)) => self.on_content(ch, content),
            Ok(None) => self.count_partial(len),
            Err(e) => self.frame_error_on_channel(ch, e),
        }
    }

    /// Bounds the bytes of messages received in part, over all channels: past twice the
    /// largest message allowed, the connection is closed (506). The count only grows between
    /// exact recounts (finished or dropped messages are found then), so it is cheap per frame.
    fn count_partial(&mut self, arrived: usize) -> Result<(), AmqpError> {
        self.partial_bytes += arrived;
        let cap = self.broker.config.max_message_size.saturating_mul(2) as usize;
        if self.partial_bytes <= cap {
            return Ok(());
        }
        self.partial_bytes = self.channels.values().map(|c| c.content.buffered()).sum();
        if self.partial_bytes <= cap {
            return Ok(());
        }
        Err(AmqpError::resource_error(format!(
            "{} bytes of unfinished messages on this connection, more than the {cap} allowed",
            self.partial_bytes
        )))
    }

    /// Content errors: 505 closes the connection, an oversized message (406) the channel.
    pub(super) fn frame_error_on_channel(
        &mut self,
        ch: u16,
        e: warren_codec::FrameError,
    ) -> Result<(), AmqpError> {
        // The codec names basic.publish once content has started (RabbitMQ: none before).
        let e = AmqpError::from(e);
        if e.is_hard() {
            return Err(e);
        }
        if let Some(c) = self.channels.get_mut(&ch) {
            c.content.reset();
        }
        self.close_channel(ch, e);
        Ok(())
    }

    pub(super) fn on_content(
        &mut self,
        ch: u16,
        content: warren_codec::Content,
    ) -> Result<(), AmqpError> {
        match self.publish_content(ch, content) {
            Err(e) if !e.is_hard() => {
                self.close_channel(ch, e.on(60, 40));
                Ok(())
            }
            other => other.map_err(|e| e.on(60, 40)),
        }
    }
}
