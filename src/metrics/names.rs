//! Every metric Warren exports, in one table: RabbitMQ's `rabbitmq_prometheus` names where a
//! counterpart exists, Warren's own under `warren_`. The counters are an enum, so the
//! per-connection tally, the registry handles and the registration at start all come from
//! this one list (nothing kept in step by position).

macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A counter of the registry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            pub const COUNT: usize = Counter::ALL.len();

            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    ConnectionsOpened => "rabbitmq_connections_opened_total",
    ConnectionsClosed => "rabbitmq_connections_closed_total",
    ChannelsOpened => "rabbitmq_channels_opened_total",
    ChannelsClosed => "rabbitmq_channels_closed_total",
    QueuesDeclared => "rabbitmq_queues_declared_total",
    QueuesCreated => "rabbitmq_queues_created_total",
    QueuesDeleted => "rabbitmq_queues_deleted_total",
    Received => "rabbitmq_global_messages_received_total",
    ReceivedConfirm => "rabbitmq_global_messages_received_confirm_total",
    Routed => "rabbitmq_global_messages_routed_total",
    UnroutableDropped => "rabbitmq_global_messages_unroutable_dropped_total",
    UnroutableReturned => "rabbitmq_global_messages_unroutable_returned_total",
    Confirmed => "rabbitmq_global_messages_confirmed_total",
    /// The sum of the four below (counted when a tally is flushed).
    Delivered => "rabbitmq_global_messages_delivered_total",
    DeliveredConsumeAutoAck => "rabbitmq_global_messages_delivered_consume_auto_ack_total",
    DeliveredConsumeManualAck => "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    DeliveredGetAutoAck => "rabbitmq_global_messages_delivered_get_auto_ack_total",
    DeliveredGetManualAck => "rabbitmq_global_messages_delivered_get_manual_ack_total",
    Acknowledged => "rabbitmq_global_messages_acknowledged_total",
    Redelivered => "rabbitmq_global_messages_redelivered_total",
    DeadLetteredRejected => "rabbitmq_global_messages_dead_lettered_rejected_total",
    DeadLetteredExpired => "rabbitmq_global_messages_dead_lettered_expired_total",
    DeadLetteredMaxlen => "rabbitmq_global_messages_dead_lettered_maxlen_total",
    DeadLetteredDeliveryLimit => "rabbitmq_global_messages_dead_lettered_delivery_limit_total",
    /// Logins tried, accepted and refused (any mechanism; RabbitMQ's counters, without its
    /// protocol label).
    AuthAttempts => "rabbitmq_auth_attempts_total",
    AuthAttemptsSucceeded => "rabbitmq_auth_attempts_succeeded_total",
    AuthAttemptsFailed => "rabbitmq_auth_attempts_failed_total",
    /// Ops (message writes, deletes, definitions) the store writer committed.
    StoreOps => "warren_store_ops_total",
}

impl Counter {
    /// The dead-letter counter for a reason (RabbitMQ names each reason's counter).
    pub fn dead_lettered(reason: &str) -> Counter {
        match reason {
            "expired" => Counter::DeadLetteredExpired,
            "maxlen" => Counter::DeadLetteredMaxlen,
            "delivery_limit" => Counter::DeadLetteredDeliveryLimit,
            _ => Counter::DeadLetteredRejected,
        }
    }

    /// Part of `Delivered`.
    fn is_delivery(self) -> bool {
        matches!(
            self,
            Counter::DeliveredConsumeAutoAck
                | Counter::DeliveredConsumeManualAck
                | Counter::DeliveredGetAutoAck
                | Counter::DeliveredGetManualAck
        )
    }
}

/// Seconds from a batch's persistent publishes to their confirms being released (the store
/// sync they wait for), a histogram.
pub const CONFIRM_LATENCY_SECONDS: &str = "warren_confirm_latency_seconds";
/// Seconds per store commit (apply + sync), a histogram.
pub const STORE_FLUSH_SECONDS: &str = "warren_store_flush_seconds";

/// Gauges, computed when scraped.
pub mod gauge {
    pub const CONNECTIONS: &str = "rabbitmq_connections";
    pub const CHANNELS: &str = "rabbitmq_channels";
    pub const CONSUMERS: &str = "rabbitmq_consumers";
    pub const QUEUES: &str = "rabbitmq_queues";
    pub const QUEUE_MESSAGES_READY: &str = "rabbitmq_queue_messages_ready";
    pub const QUEUE_MESSAGES_UNACKED: &str = "rabbitmq_queue_messages_unacked";
    pub const QUEUE_MESSAGES: &str = "rabbitmq_queue_messages";
    pub const QUEUE_CONSUMERS: &str = "rabbitmq_queue_consumers";
    pub const RESIDENT_MEMORY: &str = "rabbitmq_process_resident_memory_bytes";
    pub const OPEN_FDS: &str = "rabbitmq_process_open_fds";
    pub const DISK_AVAILABLE: &str = "rabbitmq_disk_space_available_bytes";
    pub const DISK_LIMIT: &str = "rabbitmq_disk_space_available_limit_bytes";
    pub const MEMORY_LIMIT: &str = "rabbitmq_resident_memory_limit_bytes";
    pub const MEMORY_ALARM: &str = "rabbitmq_alarms_memory_used_watermark";
    pub const DISK_ALARM: &str = "rabbitmq_alarms_free_disk_space_watermark";
    pub const IDENTITY: &str = "rabbitmq_identity_info";
    pub const BUILD: &str = "rabbitmq_build_info";
    pub const QUEUE_BYTES: &str = "warren_queue_bytes";
    pub const QUEUE_BYTES_RAM: &str = "warren_queue_bytes_ram";
    pub const QUEUE_BYTES_DISK: &str = "warren_queue_bytes_disk";
    pub const STORE_DISK: &str = "warren_store_disk_bytes";
    pub const STORE_BACKLOG: &str = "warren_store_backlog_bytes";
}

/// What a connection counted since its last flush (plain integers: no atomics, no lookups).
#[derive(Default)]
pub struct Tally([u64; Counter::COUNT]);

impl Tally {
    pub fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Adds the counts to the registry and starts again from zero.
    pub fn flush(&mut self, to: &Counters) {
        let t = std::mem::take(self);
        let delivered: u64 = Counter::ALL
            .iter()
            .filter(|c| c.is_delivery())
            .map(|&c| t.get(c))
            .sum();
        for &c in Counter::ALL {
            let n = if c == Counter::Delivered {
                delivered
            } else {
                t.get(c)
            };
            if n > 0 {
                to.0[c as usize].increment(n);
            }
        }
    }
}

/// Handles on the registry's counters, looked up once (per connection) so that a flush is a
/// few atomic adds, not a hash lookup per counter.
pub struct Counters([metrics::Counter; Counter::COUNT]);

impl Default for Counters {
    fn default() -> Self {
        Counters(std::array::from_fn(|i| {
            metrics::counter!(Counter::ALL[i].name())
        }))
    }
}

/// Adds `n` to a counter straight away (for what is not on the hot path).
pub fn count(c: Counter, n: u64) {
    metrics::counter!(c.name()).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert!(c.name().ends_with("_total"), "{}", c.name());
        }
        let names: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::COUNT);
        assert_eq!(
            Counter::dead_lettered("maxlen"),
            Counter::DeadLetteredMaxlen
        );
    }
}
