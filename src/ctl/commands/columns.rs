//! rabbitmqctl's info items for queues, exchanges, bindings, connections, channels and
//! consumers: which each list command knows, which it shows by default, and where each is in
//! the management API's JSON (mostly the same name; a few are nested or renamed).

use serde_json::Value;

/// One object kind's info items.
pub struct Items {
    pub all: &'static [&'static str],
    pub default: &'static [&'static str],
    /// Where an item that is not a top-level field of the same name lives: (item, path).
    renamed: &'static [(&'static str, &'static [&'static str])],
}

impl Items {
    /// The columns to show: those asked for, else the default ones.
    pub fn chosen<'a>(&self, asked: &'a [String]) -> Vec<&'a str> {
        if asked.is_empty() {
            self.default.to_vec()
        } else {
            asked.iter().map(String::as_str).collect()
        }
    }

    /// One item of an API object; `null` when the API has no such field.
    pub fn value(&self, object: &Value, item: &str) -> Value {
        let path: &[&str] = match self.renamed.iter().find(|(name, _)| *name == item) {
            Some((_, path)) => path,
            None => return object.get(item).cloned().unwrap_or(Value::Null),
        };
        let mut v = object;
        for key in path {
            match v.get(*key) {
                Some(next) => v = next,
                None => return Value::Null,
            }
        }
        v.clone()
    }

    /// One row: the chosen items of an object.
    pub fn row(&self, object: &Value, columns: &[&str]) -> Vec<Value> {
        columns.iter().map(|c| self.value(object, c)).collect()
    }
}

pub const QUEUES: Items = Items {
    all: &[
        "name",
        "durable",
        "auto_delete",
        "arguments",
        "policy",
        "operator_policy",
        "effective_policy_definition",
        "exclusive",
        "exclusive_consumer_tag",
        "owner_pid",
        "messages_ready",
        "messages_unacknowledged",
        "messages",
        "messages_ready_ram",
        "messages_unacknowledged_ram",
        "messages_ram",
        "messages_persistent",
        "message_bytes",
        "message_bytes_ready",
        "message_bytes_unacknowledged",
        "message_bytes_ram",
        "message_bytes_persistent",
        "head_message_timestamp",
        "consumers",
        "consumer_utilisation",
        "consumer_capacity",
        "memory",
        "state",
        "type",
        "node",
        "vhost",
    ],
    default: &["name", "messages"],
    renamed: &[("owner_pid", &["owner_pid_details", "name"])],
};

pub const EXCHANGES: Items = Items {
    all: &[
        "name",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "policy",
        "vhost",
    ],
    default: &["name", "type"],
    renamed: &[],
};

pub const BINDINGS: Items = Items {
    all: &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
        "vhost",
    ],
    default: &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
    ],
    // source_kind is always "exchange": filled in by the caller.
    renamed: &[
        ("source_name", &["source"]),
        ("destination_name", &["destination"]),
        ("destination_kind", &["destination_type"]),
    ],
};

pub const CONNECTIONS: Items = Items {
    all: &[
        "name",
        "port",
        "host",
        "peer_port",
        "peer_host",
        "ssl",
        "ssl_protocol",
        "ssl_key_exchange",
        "ssl_cipher",
        "ssl_hash",
        "peer_cert_subject",
        "peer_cert_issuer",
        "peer_cert_validity",
        "state",
        "channels",
        "protocol",
        "auth_mechanism",
        "user",
        "vhost",
        "timeout",
        "frame_max",
        "channel_max",
        "client_properties",
        "recv_oct",
        "recv_cnt",
        "send_oct",
        "send_cnt",
        "send_pend",
        "connected_at",
        "node",
    ],
    default: &["user", "peer_host", "peer_port", "state"],
    renamed: &[],
};

pub const CHANNELS: Items = Items {
    all: &[
        "pid",
        "name",
        "connection",
        "number",
        "user",
        "vhost",
        "transactional",
        "confirm",
        "consumer_count",
        "messages_unacknowledged",
        "messages_uncommitted",
        "acks_uncommitted",
        "messages_unconfirmed",
        "prefetch_count",
        "global_prefetch_count",
        "state",
        "node",
    ],
    default: &["pid", "user", "consumer_count", "messages_unacknowledged"],
    // The API has no Erlang pids: a channel's name stands for it.
    renamed: &[
        ("pid", &["name"]),
        ("connection", &["connection_details", "name"]),
    ],
};

pub const CONSUMERS: Items = Items {
    all: &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "activity_status",
        "exclusive",
        "arguments",
    ],
    default: &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "arguments",
    ],
    renamed: &[
        ("queue_name", &["queue", "name"]),
        ("channel_pid", &["channel_details", "name"]),
    ],
};
