//! The x-arguments of queue.declare that change how a queue behaves, parsed and checked once
//! at declare (406 on a bad value, with RabbitMQ's wording).

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::policy::PolicyValues;

/// What happens when a publish would take a queue past its length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (and dead-letter, reason `maxlen`) the oldest ready message.
    #[default]
    DropHead,
    /// Refuse the new message (basic.nack to a confirming publisher).
    RejectPublish,
    /// Refuse it and dead-letter it (reason `maxlen`).
    RejectPublishDlx,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Milliseconds.
    pub message_ttl: Option<u64>,
    /// Milliseconds unused before the queue is deleted.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// Deliveries after which a message is dead-lettered (reason `delivery_limit`).
    pub delivery_limit: Option<u64>,
    /// Milliseconds a delivery may stay unacked before its channel is closed (406),
    /// instead of the broker's `consumer_timeout`.
    pub consumer_timeout: Option<u64>,
}

/// A queue.declare argument RabbitMQ would refuse (406); the text is its wording, which the
/// vhost completes with the queue's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("invalid arg '{arg}' for queue: {detail}")]
    Invalid { arg: String, detail: String },
    #[error("invalid arg 'x-queue-type' for queue: {0} queues are not supported by Warren (classic only)")]
    UnsupportedType(String),
}

fn smaller(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Overflow {
    fn parse(s: &str) -> Option<Overflow> {
        Some(match s {
            "drop-head" => Overflow::DropHead,
            "reject-publish" => Overflow::RejectPublish,
            "reject-publish-dlx" => Overflow::RejectPublishDlx,
            _ => return None,
        })
    }
}

impl QueueArgs {
    /// What a queue runs with: its x-arguments (`self`) met with a policy's values, by
    /// RabbitMQ's rules for classic queues: for TTLs, expiry, length limits, the delivery
    /// limit and the consumer timeout the smaller number wins; for dead-lettering and
    /// overflow the argument wins. `overflow_declared`: `x-overflow` was given.
    pub fn with_policy(&self, overflow_declared: bool, p: &PolicyValues) -> QueueArgs {
        QueueArgs {
            dead_letter_exchange: self
                .dead_letter_exchange
                .clone()
                .or_else(|| p.dead_letter_exchange.clone()),
            dead_letter_routing_key: self
                .dead_letter_routing_key
                .clone()
                .or_else(|| p.dead_letter_routing_key.clone()),
            message_ttl: smaller(self.message_ttl, p.message_ttl),
            expires: smaller(self.expires, p.expires),
            max_length: smaller(self.max_length, p.max_length),
            max_length_bytes: smaller(self.max_length_bytes, p.max_length_bytes),
            overflow: match (&p.overflow, overflow_declared) {
                (Some(o), false) => Overflow::parse(o).unwrap_or(self.overflow),
                _ => self.overflow,
            },
            delivery_limit: smaller(self.delivery_limit, p.delivery_limit),
            consumer_timeout: smaller(self.consumer_timeout, p.consumer_timeout),
            ..self.clone()
        }
    }
}

/// A per-message `expiration` that is not a decimal count of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid expiration '{0}'")]
pub struct BadExpiration(pub String);

fn invalid(arg: &str, detail: impl std::fmt::Display) -> ArgError {
    ArgError::Invalid {
        arg: arg.to_string(),
        detail: detail.to_string(),
    }
}

fn int(args: &FieldTable, key: &str) -> Result<Option<i64>, ArgError> {
    match crate::args::get(args, key) {
        None => Ok(None),
        Some(v) => crate::args::as_i64(v)
            .map(Some)
            .ok_or_else(|| invalid(key, format!("{{unacceptable_type,{v:?}}}"))),
    }
}

fn non_negative(args: &FieldTable, key: &str) -> Result<Option<u64>, ArgError> {
    match int(args, key)? {
        Some(n) if n < 0 => Err(invalid(key, format!("{{value_negative,{n}}}"))),
        n => Ok(n.map(|n| n as u64)),
    }
}

fn string(args: &FieldTable, key: &str) -> Result<Option<String>, ArgError> {
    match crate::args::get(args, key) {
        None => Ok(None),
        Some(v) => crate::args::as_bytes(v)
            .map(|b| Some(String::from_utf8_lossy(b).into_owned()))
            .ok_or_else(|| invalid(key, format!("{{unacceptable_type,{v:?}}}"))),
    }
}

impl QueueArgs {
    pub fn parse(args: &FieldTable) -> Result<QueueArgs, ArgError> {
        if let Some(t) = string(args, "x-queue-type")? {
            match t.as_str() {
                "classic" => {}
                "quorum" | "stream" => return Err(ArgError::UnsupportedType(t)),
                other => return Err(invalid("x-queue-type", format!("unknown type '{other}'"))),
            }
        }
        let expires = non_negative(args, "x-expires")?;
        if expires == Some(0) {
            return Err(invalid("x-expires", "{value_zero,0}"));
        }
        let max_priority = match int(args, "x-max-priority")? {
            None => None,
            Some(n) if !(1..=255).contains(&n) => {
                let why = if n < 1 {
                    "value_zero_or_negative"
                } else {
                    "value_too_large"
                };
                return Err(invalid("x-max-priority", format!("{{{why},{n},255}}")));
            }
            Some(n) => Some(n as u8),
        };
        let overflow = match string(args, "x-overflow")?.as_deref() {
            None | Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            Some(other) => {
                return Err(invalid(
                    "x-overflow",
                    format!("{{unknown_value,<<\"{other}\">>}}"),
                ))
            }
        };
        let single_active_consumer = match crate::args::get(args, "x-single-active-consumer") {
            None => false,
            Some(AMQPValue::Boolean(b)) => *b,
            Some(v) => {
                return Err(invalid(
                    "x-single-active-consumer",
                    format!("{{unacceptable_type,{v:?}}}"),
                ))
            }
        };
        Ok(QueueArgs {
            dead_letter_exchange: string(args, "x-dead-letter-exchange")?,
            dead_letter_routing_key: string(args, "x-dead-letter-routing-key")?,
            message_ttl: non_negative(args, "x-message-ttl")?,
            expires,
            max_length: non_negative(args, "x-max-length")?,
            max_length_bytes: non_negative(args, "x-max-length-bytes")?,
            overflow,
            max_priority,
            single_active_consumer,
            delivery_limit: non_negative(args, "x-delivery-limit")?,
            consumer_timeout: non_negative(args, "x-consumer-timeout")?,
        })
    }
}

/// A per-message `expiration`: a decimal count of milliseconds (RabbitMQ refuses anything
/// else with 406).
pub fn parse_expiration(s: &str) -> Result<u64, BadExpiration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadExpiration(s.to_string()));
    }
    s.parse::<u64>().map_err(|_| BadExpiration(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn bad_values_are_refused_with_the_argument_named() {
        let e = QueueArgs::parse(&table(&[("x-max-priority", AMQPValue::LongInt(300))]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x-max-priority") && e.contains("value_too_large"),
            "{e}"
        );
        assert!(QueueArgs::parse(&table(&[("x-max-priority", AMQPValue::LongInt(0))])).is_err());
        assert!(QueueArgs::parse(&table(&[("x-message-ttl", AMQPValue::LongInt(-1))])).is_err());
        assert!(QueueArgs::parse(&table(&[("x-expires", AMQPValue::LongInt(0))])).is_err());
        assert!(QueueArgs::parse(&table(&[(
            "x-overflow",
            AMQPValue::LongString("nope".into())
        )]))
        .is_err());
        assert!(QueueArgs::parse(&table(&[(
            "x-queue-type",
            AMQPValue::LongString("quorum".into())
        )]))
        .is_err());
        assert!(QueueArgs::parse(&table(&[(
            "x-max-length",
            AMQPValue::LongString("5".into())
        )]))
        .is_err());
    }

    #[test]
    fn good_values_parse() {
        let a = QueueArgs::parse(&table(&[
            ("x-queue-type", AMQPValue::LongString("classic".into())),
            ("x-max-priority", AMQPValue::ShortShortUInt(10)),
            ("x-message-ttl", AMQPValue::LongLongInt(500)),
            (
                "x-overflow",
                AMQPValue::LongString("reject-publish-dlx".into()),
            ),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString("dlx".into()),
            ),
        ]))
        .unwrap();
        assert_eq!(a.max_priority, Some(10));
        assert_eq!(a.message_ttl, Some(500));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.dead_letter_exchange.as_deref(), Some("dlx"));
    }

    #[test]
    fn policies_meet_arguments_by_rabbitmqs_rules() {
        let declared = QueueArgs::parse(&table(&[
            ("x-max-length", AMQPValue::LongInt(10)),
            ("x-message-ttl", AMQPValue::LongInt(100)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString("mine".into()),
            ),
        ]))
        .unwrap();
        let p = PolicyValues {
            max_length: Some(5),
            message_ttl: Some(1000),
            expires: Some(60_000),
            dead_letter_exchange: Some("theirs".into()),
            dead_letter_routing_key: Some("rk".into()),
            overflow: Some("reject-publish".into()),
            ..PolicyValues::default()
        };
        let e = declared.with_policy(false, &p);
        assert_eq!(
            (e.max_length, e.message_ttl, e.expires),
            (Some(5), Some(100), Some(60_000))
        );
        assert_eq!(e.dead_letter_exchange.as_deref(), Some("mine"));
        assert_eq!(e.dead_letter_routing_key.as_deref(), Some("rk"));
        assert_eq!(e.overflow, Overflow::RejectPublish);
        assert_eq!(declared.with_policy(true, &p).overflow, Overflow::DropHead);
        assert_eq!(
            declared.with_policy(false, &PolicyValues::default()),
            declared
        );
    }

    #[test]
    fn expirations() {
        assert_eq!(parse_expiration("100"), Ok(100));
        assert_eq!(parse_expiration("0"), Ok(0));
        for bad in ["", "-1", "abc", "1.5", " 1"] {
            assert!(parse_expiration(bad).is_err(), "{bad}");
        }
    }
}
