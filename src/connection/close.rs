//! Closing: a connection or channel closed by an error, the release of a channel's
//! consumers and unacked messages, and the final cleanup of a connection.

use amq_protocol::protocol::{channel as chan, connection as conn, AMQPClass};
use tracing::{debug, info, warn};

use super::{ConnEvent, Connection, Phase};
use crate::error::AmqpError;

impl Connection {
    /// Sends connection.close and waits for close-ok (channel frames are dropped meanwhile).
    pub(super) fn close_connection(&mut self, e: &AmqpError) {
        if e.code == warren_codec::reply::CONNECTION_FORCED {
            info!(user = %self.user, "closing connection: {e}");
        } else {
            warn!(user = %self.user, "connection error: {e}");
        }
        self.write_method(
            0,
            &AMQPClass::Connection(conn::AMQPMethod::Close(conn::Close {
                reply_code: e.code,
                reply_text: e.reply_text().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        self.release_channels();
        self.phase = Phase::Closing;
    }

    /// Sends channel.close for a soft error and releases the channel's resources now;
    /// frames are dropped until the client's close-ok.
    pub(super) fn close_channel(&mut self, ch: u16, e: AmqpError) {
        debug!(channel = ch, "channel error: {e}");
        self.write_method(
            ch,
            &AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
                reply_code: e.code,
                reply_text: e.reply_text().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        if let Some(mut c) = self.channels.remove(&ch) {
            self.release_channel(&mut c);
            c.closing = true;
            self.channels.insert(ch, c);
        }
    }

    /// Releases every channel (connection closing): consumers go, unacked messages return.
    pub(super) fn release_channels(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.channels.remove(&id) {
                self.release_channel(&mut c);
            }
        }
    }

    /// Final cleanup: channels released, exclusive queues deleted, queued events returned.
    pub(super) fn cleanup(&mut self) {
        self.release_channels();
        for e in self.inbox.close() {
            if let ConnEvent::Deliver(d) = e {
                d.queue.undeliver(d.messages, &d.consumer);
            }
        }
        if let Some(v) = &self.vhost {
            for d in v.drop_exclusive_queues(self.id) {
                for c in d.consumers {
                    c.outbox.cancelled(c.channel, &c.tag);
                }
            }
        }
        if !self.user.is_empty() {
            info!(user = %self.user, "connection closed");
        }
    }
}
