//! Whether a redeclare matches the queue (RabbitMQ compares a few flags and x-arguments;
//! others are ignored, as RabbitMQ does), and exclusivity.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::Queue;
use crate::error::{AmqpError, AmqpResult};

/// Arguments RabbitMQ compares on redeclare (others are ignored, as RabbitMQ does).
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

/// A redeclare that differs from the queue (406; the text is RabbitMQ's).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Inequivalent {
    #[error("inequivalent arg '{name}' for queue '{queue}': received '{received}' but current is '{current}'")]
    Flag {
        queue: String,
        name: &'static str,
        received: bool,
        current: bool,
    },
    #[error("inequivalent arg '{key}' for queue '{queue}': received {received:?} but current is {current:?}")]
    Argument {
        queue: String,
        key: &'static str,
        received: Option<AMQPValue>,
        current: Option<AMQPValue>,
    },
}

impl Queue {
    /// 405 unless `connection` may use this queue.
    pub fn check_exclusive(&self, connection: u64) -> AmqpResult<()> {
        match self.exclusive_owner {
            Some(owner) if owner != connection => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// A non-passive redeclare must name the same owner: exclusive from its owner, or
    /// non-exclusive for a shared queue; anything else is 405, as in RabbitMQ.
    pub fn check_exclusive_strict(&self, exclusive: bool, connection: u64) -> AmqpResult<()> {
        if self.exclusive_owner == exclusive.then_some(connection) {
            return Ok(());
        }
        Err(AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost. It could be \
             originally declared on another connection or the exclusive property value does \
             not match that of the original declaration.",
            self.name
        )))
    }

    /// Whether a redeclare is equivalent. (Exclusivity is checked apart, with
    /// [`Queue::check_exclusive_strict`].)
    pub fn equivalent(
        &self,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: &FieldTable,
    ) -> Result<(), Inequivalent> {
        let checks = [
            ("durable", self.durable, durable && !exclusive),
            ("auto_delete", self.auto_delete, auto_delete),
        ];
        for (name, current, received) in checks {
            if current != received {
                return Err(Inequivalent::Flag {
                    queue: self.name.clone(),
                    name,
                    received,
                    current,
                });
            }
        }
        for key in EQUIVALENCE_ARGS {
            let a = crate::args::get(&self.arguments, key);
            let b = crate::args::get(arguments, key);
            let same = match (a, b) {
                (None, None) => true,
                (Some(x), Some(y)) => crate::args::loosely_equal(x, y),
                _ => false,
            };
            if !same {
                return Err(Inequivalent::Argument {
                    queue: self.name.clone(),
                    key,
                    received: b.cloned(),
                    current: a.cloned(),
                });
            }
        }
        Ok(())
    }
}
