//! Flow control: what stops a connection reading its socket. A resource alarm (memory,
//! disk) blocks a connection when it publishes, as in RabbitMQ; the store's writer being far
//! behind pauses a connection that adds to its backlog (persistent messages: see
//! `store::BACKLOG_HIGH`; definitions: `store::DEFINITIONS_HIGH`) until the writer signals
//! it has caught up; output the client does not read pauses input (in `main_loop`).

use amq_protocol::protocol::AMQPClass;

use super::Connection;

/// A connection's view of the broker's resource alarm. As in RabbitMQ, a raised alarm
/// blocks a connection when it publishes: from then on its socket is not read (and a client
/// with the capability gets connection.blocked) until the alarm clears. A connection that
/// does not publish is never blocked, nor told.
#[derive(Debug, Default)]
pub(super) struct AlarmState {
    /// The alarm is raised, and why ("low on memory", "low on disk").
    pub(super) active: Option<String>,
    /// It published while the alarm was raised: its socket is not read.
    pub(super) blocked: bool,
    /// We sent connection.blocked (and owe connection.unblocked).
    told: bool,
    /// The alarm's state was applied once the connection opened.
    pub(super) seen: bool,
}

impl Connection {
    /// The broker's alarm changed: a blocked connection is unblocked (and told) when it
    /// clears; it is blocked only when it next publishes (see [`AlarmState`]).
    pub(super) fn on_alarm(&mut self, reason: Option<String>) {
        use amq_protocol::protocol::connection as c;
        self.alarm.active = reason;
        if self.alarm.active.is_none() {
            self.alarm.blocked = false;
            if std::mem::take(&mut self.alarm.told) {
                self.write_method(
                    0,
                    &AMQPClass::Connection(c::AMQPMethod::Unblocked(c::Unblocked {})),
                );
            }
        }
    }

    /// It published during an alarm: stop reading, and tell a client that can hear it.
    pub(super) fn block(&mut self) {
        use amq_protocol::protocol::connection as c;
        if self.alarm.blocked {
            return;
        }
        self.alarm.blocked = true;
        if self.caps.connection_blocked && !self.alarm.told {
            self.alarm.told = true;
            let reason = self.alarm.active.clone().unwrap_or_default();
            self.write_method(
                0,
                &AMQPClass::Connection(c::AMQPMethod::Blocked(c::Blocked {
                    reason: reason.as_str().into(),
                })),
            );
        }
    }

    /// After input that sent the store work: whether the writer is far enough behind on
    /// that kind of work that this connection must wait for its signal.
    pub(super) fn store_pause(
        &self,
        sent: crate::store::Sent,
    ) -> Option<tokio::sync::watch::Receiver<bool>> {
        let store = &self.broker.store;
        if sent.bytes > 0 && store.backlog.over() {
            Some(store.backlog.pause())
        } else if sent.definitions > 0 && store.definitions.over() {
            Some(store.definitions.pause())
        } else {
            None
        }
    }
}
