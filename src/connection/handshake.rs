//! The opening of a connection: protocol header, start/start-ok (SASL PLAIN, AMQPLAIN and
//! EXTERNAL, as configured),
//! tune/tune-ok (negotiated as RabbitMQ does), open/open-ok.
//!
//! Server properties: `product` is "RabbitMQ" and `version` a 3.x release, because clients
//! pick behaviour from them (kombu's qos semantics, amqplib's tests); Warren names itself in
//! `platform`, `information` and `warren_version`. See ARCHITECTURE.md.

use amq_protocol::protocol::{connection as conn, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::time::Instant;
use tracing::{info, warn};
use warren_codec::sasl;

use super::{ClientCaps, Connection, Phase};
use crate::args;
use crate::broker::sessions::{Control, Refused};
use crate::broker::LoginError;
use crate::error::AmqpError;
use crate::metrics::Counter;

/// RabbitMQ's minimum frame_max (4.2 and later use 8192; the spec says 4096).
pub const FRAME_MIN_SIZE: u32 = 8192;

/// `AMQP 0 0 9 1`, or `AMQP 1 1 0 9` which RabbitMQ also accepts as 0-9-1.
pub fn protocol_header_ok(h: &[u8; 8]) -> bool {
    &h[..4] == b"AMQP" && (h[4..] == [0, 0, 9, 1] || h[4..] == [1, 1, 0, 9])
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes()))
}

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "authentication_failure_close",
        "per_consumer_qos",
        "connection.blocked",
        "consumer_priorities",
        "direct_reply_to",
    ] {
        caps.insert(ShortString::from(cap), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p.insert("product".into(), s("RabbitMQ"));
    p.insert("version".into(), s("3.13.7"));
    p.insert(
        "platform".into(),
        s(&format!("Warren {} (Rust)", env!("CARGO_PKG_VERSION"))),
    );
    p.insert(
        "information".into(),
        s("Warren: an AMQP 0-9-1 broker, wire-compatible with RabbitMQ"),
    );
    p.insert("warren_version".into(), s(env!("CARGO_PKG_VERSION")));
    p.insert("copyright".into(), s("The Warren authors"));
    p.insert("cluster_name".into(), s("warren"));
    p
}

impl Connection {
    pub(super) fn send_start(&mut self) {
        self.write_method(
            0,
            &AMQPClass::Connection(conn::AMQPMethod::Start(conn::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(),
                mechanisms: self.broker.config.auth_mechanisms.join(" ").into(),
                locales: "en_US".into(),
            })),
        );
    }

    pub(super) fn on_start_ok(&mut self, m: conn::StartOk) -> Result<(), AmqpError> {
        if let Some(caps) = args::get_table(&m.client_properties, "capabilities") {
            self.caps = ClientCaps {
                consumer_cancel_notify: args::get_bool(caps, "consumer_cancel_notify")
                    .unwrap_or(false),
                authentication_failure_close: args::get_bool(caps, "authentication_failure_close")
                    .unwrap_or(false),
                connection_blocked: args::get_bool(caps, "connection.blocked").unwrap_or(false),
            };
        }
        if let Some(info) = self.info.as_mut() {
            info.auth_mechanism = m.mechanism.to_string();
            info.client_properties = m.client_properties.clone();
        }
        let mechanism = m.mechanism.as_str();
        // Only what connection.start offered; the others are unknown, as in RabbitMQ.
        let offered = self
            .broker
            .config
            .auth_mechanisms
            .iter()
            .any(|o| o == mechanism);
        let creds = match mechanism {
            "PLAIN" if offered => sasl::parse_plain(m.response.as_bytes()),
            "AMQPLAIN" if offered => sasl::parse_amqplain(m.response.as_bytes()),
            // rabbitmq_auth_mechanism_ssl: the name is the verified client certificate's, the
            // response (a client may send one) is ignored. No certificate is a refusal like a
            // bad password.
            "EXTERNAL" if offered => Some((
                self.peer_cert_login.clone().unwrap_or_default(),
                String::new(),
            )),
            other => {
                return Err(AmqpError::command_invalid(format!(
                    "unknown authentication mechanism '{other}'"
                )))
            }
        };
        let Some((user, pass)) = creds else {
            return self.refuse_login(format!("malformed {mechanism} response"), None);
        };
        crate::metrics::count(Counter::AuthAttempts, 1);
        let outcome = if mechanism != "EXTERNAL" {
            self.broker.authenticate(&user, &pass, self.peer.ip())
        } else if self.peer_cert_login.is_none() {
            warn!(peer = %self.peer, "EXTERNAL login without a verified client certificate");
            Err(LoginError::BadCredentials)
        } else {
            self.broker.authenticate_external(&user, self.peer.ip())
        };
        let counter = match outcome {
            Ok(()) => Counter::AuthAttemptsSucceeded,
            Err(_) => Counter::AuthAttemptsFailed,
        };
        crate::metrics::count(counter, 1);
        match outcome {
            Ok(()) => {}
            Err(LoginError::BadCredentials) => {
                // Answered only after a wait that grows with this address's recent
                // failures (`failed_logins`), so that guessing is slow.
                let wait = self
                    .broker
                    .failed_logins
                    .failed(self.peer.ip(), Instant::now());
                self.login_delay = Some(wait);
                return self.refuse_login(
                    format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
                    Some(&user),
                );
            }
            Err(LoginError::LoopbackOnly) => {
                return self.refuse_login(
                    format!("User '{user}' can only connect via localhost"),
                    Some(&user),
                );
            }
        }
        self.user = user;
        self.phase = Phase::AwaitTuneOk;
        self.write_method(
            0,
            &AMQPClass::Connection(conn::AMQPMethod::Tune(conn::Tune {
                channel_max: self.broker.config.channel_max,
                frame_max: self.broker.config.frame_max,
                heartbeat: self.broker.config.heartbeat,
            })),
        );
        Ok(())
    }

    /// A refused login: a 403 close for clients that asked for one, else just hang up.
    /// Logged with the peer and the user named (escaped, `?`: the name is the peer's).
    fn refuse_login(&mut self, text: String, user: Option<&str>) -> Result<(), AmqpError> {
        warn!(peer = %self.peer, user = ?user, "login refused: {text}");
        if self.caps.authentication_failure_close {
            Err(AmqpError::login_refused(text))
        } else {
            self.phase = Phase::Closed;
            Ok(())
        }
    }

    /// Refusals carry RabbitMQ's texts and name `connection.tune` (10, 30), as it does.
    pub(super) fn on_tune_ok(&mut self, m: conn::TuneOk) -> Result<(), AmqpError> {
        let ours = self.broker.config.frame_max;
        if m.frame_max != 0 && m.frame_max < FRAME_MIN_SIZE {
            return Err(AmqpError::not_allowed(format!(
                "negotiated frame_max = {} is lower than the minimum allowed value ({FRAME_MIN_SIZE})",
                m.frame_max
            ))
            .on(10, 30));
        }
        // 0 means "no limit", which RabbitMQ refuses when it has one (as we always do).
        if m.frame_max == 0 || m.frame_max > ours {
            return Err(AmqpError::not_allowed(format!(
                "negotiated frame_max = {} is higher than the maximum allowed value ({ours})",
                m.frame_max
            ))
            .on(10, 30));
        }
        let channel_max = self.broker.config.channel_max;
        if m.channel_max == 0 || m.channel_max > channel_max {
            return Err(AmqpError::not_allowed(format!(
                "negotiated channel_max = {} is higher than the maximum allowed value ({channel_max})",
                m.channel_max
            ))
            .on(10, 30));
        }
        self.frame_max = m.frame_max;
        self.channel_max = m.channel_max;
        self.heartbeat = m.heartbeat;
        self.phase = Phase::AwaitOpen;
        Ok(())
    }

    pub(super) fn on_open(&mut self, m: conn::Open) -> Result<(), AmqpError> {
        let name = m.virtual_host.as_str();
        // RabbitMQ's refusals name connection.open (10, 40).
        let Some(vhost) = self.broker.vhost(name) else {
            return Err(AmqpError::not_allowed(format!("vhost {name} not found")).on(10, 40));
        };
        let grants = self.broker.grants(&self.user, name);
        if !grants.may_open() {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{name}' refused for user '{}'",
                self.user
            ))
            .on(10, 40));
        }
        let limit = self.broker.config.max_connections;
        if self.broker.connection_count() > limit as i64 {
            return Err(AmqpError::not_allowed(format!(
                "connection refused: node connection limit ({limit}) is reached"
            ))
            .on(10, 40));
        }
        let limits = self.broker.connection_limits(&self.user, name);
        let closer: std::sync::Arc<dyn Control> = self.inbox.clone();
        let mut info =
            self.info
                .take()
                .map(|b| *b)
                .unwrap_or_else(|| crate::broker::sessions::ConnInfo {
                    peer: self.peer,
                    local: self.peer,
                    tls: false,
                    user: String::new(),
                    vhost: String::new(),
                    auth_mechanism: String::new(),
                    client_properties: Default::default(),
                    frame_max: 0,
                    channel_max: 0,
                    heartbeat: 0,
                    connected_at: 0,
                });
        info.user = self.user.clone();
        info.vhost = name.to_string();
        info.frame_max = self.frame_max;
        info.channel_max = self.channel_max;
        info.heartbeat = self.heartbeat;
        info.connected_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match self
            .broker
            .sessions
            .open(self.id, std::sync::Arc::new(info), limits, closer)
        {
            Ok(()) => self.in_sessions = true,
            // RabbitMQ's texts (rabbit_reader).
            Err(Refused::VhostConnections(_)) => {
                return Err(AmqpError::not_allowed(format!(
                    "access to vhost '{name}' refused for user '{}': connection limit ({}) is reached",
                    self.user,
                    limits.0.unwrap_or(0)
                ))
                .on(10, 40));
            }
            Err(Refused::UserConnections(n)) => {
                return Err(AmqpError::not_allowed(format!(
                    "connection refused for user '{}': user connection limit ({n}) is reached",
                    self.user
                ))
                .on(10, 40));
            }
        }
        self.permits = super::permit::Permits::new(grants);
        self.vhost = Some(vhost);
        self.phase = Phase::Open;
        // No longer counted against the handshake limit.
        self.handshake.take();
        info!(user = %self.user, vhost = %name, "connection opened");
        self.write_method(
            0,
            &AMQPClass::Connection(conn::AMQPMethod::OpenOk(conn::OpenOk {})),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(protocol_header_ok(b"AMQP\x00\x00\x09\x01"));
        assert!(protocol_header_ok(b"AMQP\x01\x01\x00\x09"));
        assert!(!protocol_header_ok(b"AMQP\x00\x00\x09\x02"));
        assert!(!protocol_header_ok(b"GET / HT"));
    }
}
