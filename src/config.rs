//! Settings: command-line flags, then `WARREN_*` environment variables (clap reads both, the
//! flag winning), then a TOML file (`--config`), then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::alarms::{BadLimit, Limit};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("bad listen address {0:?}")]
    Listen(String),
    #[error("bad log format {0:?} (text or json)")]
    LogFormat(String),
    #[error("bad {key}: {reason}")]
    Value { key: &'static str, reason: String },
    #[error("bad {key}: {reason}")]
    Limit {
        key: &'static str,
        #[source]
        reason: BadLimit,
    },
}

/// `warren [--config FILE] [--listen ADDR] [--data-dir DIR] [--metrics-listen ADDR]`
#[derive(Debug, Parser, Default)]
#[command(name = "warren", version, about = "An AMQP 0-9-1 message broker")]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,
    /// AMQP listen address(es), comma separated [default: 0.0.0.0:5672,[::]:5672]
    #[arg(long, env = "WARREN_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./warren-data]
    #[arg(long, env = "WARREN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Prometheus metrics listen address [default: 0.0.0.0:15692]; "off" disables it.
    #[arg(long, env = "WARREN_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Management HTTP API listen address [default: 0.0.0.0:15672]; "off" disables it.
    #[arg(long, env = "WARREN_MANAGEMENT_LISTEN")]
    pub management_listen: Option<String>,
    /// Log filter (tracing-subscriber EnvFilter syntax) [default: info]
    #[arg(long, env = "WARREN_LOG")]
    pub log: Option<String>,
    /// Log format: "text" or "json" (one JSON object per line) [default: text]
    #[arg(long, env = "WARREN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// RAM each queue may hold in ready messages before paging to disk [default: 32 MiB]
    #[arg(long, env = "WARREN_QUEUE_RAM_BYTES")]
    pub queue_ram_bytes: Option<usize>,
    /// Memory alarm: a fraction of RAM (0.4) or a size (2GiB) [default: 0.4]
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<String>,
    /// Disk alarm: free space below a size (50MB) or a multiple of RAM (1.0) [default: 50MB]
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<String>,
    /// Milliseconds a delivery may stay unacked before its channel is closed; 0 = off
    /// [default: 1800000, 30 minutes]
    #[arg(long, env = "WARREN_CONSUMER_TIMEOUT")]
    pub consumer_timeout: Option<u64>,
}

/// A limit as the TOML file may write it: a float is relative (`0.4`), an integer is bytes,
/// a string is either (`"0.4"`, `"2GiB"`, `"50MB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LimitValue {
    Int(u64),
    Float(f64),
    Text(String),
}

impl LimitValue {
    fn limit(&self) -> Result<Limit, BadLimit> {
        match self {
            LimitValue::Int(n) => Ok(Limit::Absolute(*n)),
            LimitValue::Float(f) if f.is_finite() && *f >= 0.0 => Ok(Limit::Relative(*f)),
            LimitValue::Float(f) => Err(BadLimit::Negative(f.to_string())),
            LimitValue::Text(s) => Limit::parse(s),
        }
    }
}

/// A user, as the TOML file declares it.
#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
    /// Vhosts the user may open; empty means all.
    #[serde(default)]
    pub vhosts: Vec<String>,
    /// Whether the user may connect from a non-loopback address.
    #[serde(default = "yes")]
    pub remote: bool,
    /// RabbitMQ's user tags (`administrator`, `monitoring`, `management`, `policymaker`).
    #[serde(default)]
    pub tags: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The `[tls]` table, with RabbitMQ's option names (`ssl_options.*`, `listeners.ssl.*`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFileConfig {
    pub listen: Option<Vec<String>>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cacertfile: Option<PathBuf>,
    pub verify: Option<String>,
    pub fail_if_no_peer_cert: Option<bool>,
}

/// Which name of a client certificate EXTERNAL logs in as (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertLogin {
    /// The subject's first CN.
    #[default]
    CommonName,
    /// The first DNS name or email address among the subject alternative names.
    SubjectAlternativeName,
}

/// TLS as resolved: where to listen and which files to read (read by `tls`, at start and on
/// every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub cacertfile: Option<PathBuf>,
    /// `verify = "verify_peer"`: ask for a client certificate and check it against the CA.
    pub verify_peer: bool,
    /// With `verify_peer`, refuse a client that sends no certificate.
    pub fail_if_no_peer_cert: bool,
}

/// The SASL mechanisms a broker may offer.
pub const AUTH_MECHANISMS: [&str; 3] = ["PLAIN", "AMQPLAIN", "EXTERNAL"];

/// The TOML file's shape; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<String>>,
    pub data_dir: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub management_listen: Option<String>,
    pub log: Option<String>,
    pub vhosts: Option<Vec<String>>,
    pub users: Option<Vec<UserConfig>>,
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub heartbeat: Option<u16>,
    pub handshake_timeout_secs: Option<u64>,
    pub max_message_size: Option<u64>,
    pub queue_ram_bytes: Option<usize>,
    pub store_cache_bytes: Option<u64>,
    pub log_format: Option<String>,
    pub memory_high_watermark: Option<LimitValue>,
    pub disk_free_limit: Option<LimitValue>,
    pub consumer_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_handshakes: Option<usize>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub loopback_users: Option<Vec<String>>,
    pub load_definitions: Option<PathBuf>,
    pub tls: Option<TlsFileConfig>,
    pub auth_mechanisms: Option<Vec<String>>,
    pub ssl_cert_login_from: Option<String>,
    pub metrics_tls: Option<bool>,
}

/// The resolved configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// The management HTTP API (`/api`), as RabbitMQ's management plugin on 15672.
    pub management_listen: Option<SocketAddr>,
    /// How often the management API samples message counts for its rates (RabbitMQ's
    /// `collect_statistics_interval`, 5 s).
    pub management_sample_interval: Duration,
    pub log: String,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
    /// Vhosts made at start if missing (the store keeps the others).
    pub vhosts: Vec<String>,
    /// Users (re)written at every start, with `.*` permissions on their vhosts.
    pub users: Vec<UserConfig>,
    /// Made on a first start that finds no user (and loads no definitions), as RabbitMQ.
    pub default_user: String,
    pub default_pass: String,
    /// Users who may log in only from a loopback address (RabbitMQ's default: guest).
    pub loopback_users: Vec<String>,
    /// A RabbitMQ definitions file imported at every start.
    pub load_definitions: Option<PathBuf>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub handshake_timeout: Duration,
    pub max_message_size: u64,
    /// Per queue: RAM for ready messages (bodies plus bookkeeping) before the rest waits on
    /// disk. Per queue rather than global, so no queue's publish touches a shared counter.
    pub queue_ram_bytes: usize,
    /// sled's page cache.
    pub store_cache_bytes: u64,
    /// Publishers are blocked while resident memory is above this...
    pub memory_high_watermark: Limit,
    /// ... or free disk space in the data directory's filesystem below this.
    pub disk_free_limit: Limit,
    /// Milliseconds a delivery may stay unacked before its channel is closed (None: off).
    pub consumer_timeout: Option<u64>,
    /// Open connections at most (connection.open past it is 530, as RabbitMQ's limit).
    pub max_connections: usize,
    /// Connections still in the handshake at most; past it, new sockets are closed at once.
    pub max_handshakes: usize,
    /// AMQPS listeners and their certificates; None: no TLS.
    pub tls: Option<TlsConfig>,
    /// What connection.start offers, in this order (a subset of [`AUTH_MECHANISMS`]).
    pub auth_mechanisms: Vec<String>,
    /// The name EXTERNAL takes from a client certificate.
    pub ssl_cert_login_from: CertLogin,
    /// The metrics endpoint speaks HTTPS, with the `[tls]` certificate.
    pub metrics_tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 5672)),
                SocketAddr::from(([0u16; 8], 5672)),
            ],
            data_dir: PathBuf::from("./warren-data"),
            metrics_listen: Some(SocketAddr::from(([0, 0, 0, 0], 15692))),
            management_listen: Some(SocketAddr::from(([0, 0, 0, 0], 15672))),
            management_sample_interval: Duration::from_secs(5),
            log: "info".into(),
            log_json: false,
            vhosts: vec!["/".into()],
            users: vec![],
            // guest/guest on "/", loopback only, as RabbitMQ ships.
            default_user: "guest".into(),
            default_pass: "guest".into(),
            loopback_users: vec!["guest".into()],
            load_definitions: None,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            handshake_timeout: Duration::from_secs(10),
            // RabbitMQ's default max_message_size (128 MiB).
            max_message_size: 128 * 1024 * 1024,
            queue_ram_bytes: 32 << 20,
            store_cache_bytes: 64 << 20,
            // RabbitMQ's defaults: 40% of RAM, 50 MB free.
            memory_high_watermark: Limit::Relative(0.4),
            disk_free_limit: Limit::Absolute(50_000_000),
            // RabbitMQ's 30 minutes.
            consumer_timeout: Some(1_800_000),
            max_connections: 65_536,
            max_handshakes: 2_048,
            tls: None,
            auth_mechanisms: vec!["PLAIN".into(), "AMQPLAIN".into()],
            ssl_cert_login_from: CertLogin::CommonName,
            metrics_tls: false,
        }
    }
}

fn parse_listen(list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| ConfigError::Listen(s.to_string())))
        .collect()
}

fn resolve_tls(t: TlsFileConfig) -> Result<TlsConfig, ConfigError> {
    let missing = |key| ConfigError::Value {
        key,
        reason: "required in [tls]".into(),
    };
    let certfile = t.certfile.ok_or_else(|| missing("tls.certfile"))?;
    let keyfile = t.keyfile.ok_or_else(|| missing("tls.keyfile"))?;
    // RabbitMQ's default AMQPS port, on both families as the plain listeners.
    let listen = match t.listen {
        Some(l) => parse_listen(&l)?,
        None => vec![
            SocketAddr::from(([0, 0, 0, 0], 5671)),
            SocketAddr::from(([0u16; 8], 5671)),
        ],
    };
    let verify_peer = match t.verify.as_deref() {
        None | Some("verify_none") => false,
        Some("verify_peer") => true,
        Some(other) => {
            return Err(ConfigError::Value {
                key: "tls.verify",
                reason: format!("{other:?} (verify_peer or verify_none)"),
            })
        }
    };
    if verify_peer && t.cacertfile.is_none() {
        return Err(ConfigError::Value {
            key: "tls.cacertfile",
            reason: "verify_peer needs the CA bundle that client certificates are checked against"
                .into(),
        });
    }
    Ok(TlsConfig {
        listen,
        certfile,
        keyfile,
        cacertfile: t.cacertfile,
        verify_peer,
        fail_if_no_peer_cert: t.fail_if_no_peer_cert.unwrap_or(false),
    })
}

fn resolve_mechanisms(list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for m in list {
        if !AUTH_MECHANISMS.contains(&m.as_str()) {
            return Err(ConfigError::Value {
                key: "auth_mechanisms",
                reason: format!("unknown mechanism {m:?} (PLAIN, AMQPLAIN, EXTERNAL)"),
            });
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(ConfigError::Value {
            key: "auth_mechanisms",
            reason: "empty: no client could log in".into(),
        });
    }
    Ok(out)
}

/// An HTTP listener's address, or `off`.
fn parse_metrics(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s == "off" || s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| ConfigError::Listen(s.to_string()))
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(cli, file)
    }

    /// The configuration a TOML file's text alone gives (no flags or environment).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source,
        })?;
        Self::resolve(Cli::default(), file)
    }

    fn resolve(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(l) = cli.listen.map(|l| vec![l]).or(file.listen) {
            c.listen = parse_listen(&l)?;
        }
        if let Some(d) = cli.data_dir.or(file.data_dir) {
            c.data_dir = d;
        }
        if let Some(m) = cli.metrics_listen.or(file.metrics_listen) {
            c.metrics_listen = parse_metrics(&m)?;
        }
        if let Some(m) = cli.management_listen.or(file.management_listen) {
            c.management_listen = parse_metrics(&m)?;
        }
        if let Some(l) = cli.log.or(file.log) {
            c.log = l;
        }
        match cli.log_format.or(file.log_format).as_deref() {
            None | Some("text") => {}
            Some("json") => c.log_json = true,
            Some(other) => return Err(ConfigError::LogFormat(other.to_string())),
        }
        if let Some(v) = file.vhosts {
            c.vhosts = v;
        }
        if let Some(u) = file.users {
            c.users = u;
        }
        if let Some(u) = file.default_user {
            c.default_user = u;
        }
        if let Some(p) = file.default_pass {
            c.default_pass = p;
        }
        if let Some(l) = file.loopback_users {
            c.loopback_users = l;
        }
        c.load_definitions = file.load_definitions;
        c.frame_max = file.frame_max.unwrap_or(c.frame_max);
        if !(8192..=1 << 31).contains(&c.frame_max) {
            return Err(ConfigError::Value {
                key: "frame_max",
                reason: format!("{} is outside 8192..=2147483648", c.frame_max),
            });
        }
        c.channel_max = file.channel_max.unwrap_or(c.channel_max);
        c.heartbeat = file.heartbeat.unwrap_or(c.heartbeat);
        if let Some(s) = file.handshake_timeout_secs {
            c.handshake_timeout = Duration::from_secs(s);
        }
        c.max_message_size = file.max_message_size.unwrap_or(c.max_message_size);
        if let Some(b) = cli.queue_ram_bytes.or(file.queue_ram_bytes) {
            c.queue_ram_bytes = b;
        }
        c.store_cache_bytes = file.store_cache_bytes.unwrap_or(c.store_cache_bytes);
        let limit = |key: &'static str, flag: Option<String>, file: Option<LimitValue>| {
            let parsed = match (flag, file) {
                (Some(s), _) => Limit::parse(&s).map(Some),
                (None, Some(v)) => v.limit().map(Some),
                (None, None) => Ok(None),
            };
            parsed.map_err(|reason| ConfigError::Limit { key, reason })
        };
        if let Some(l) = limit(
            "memory_high_watermark",
            cli.memory_high_watermark,
            file.memory_high_watermark,
        )? {
            c.memory_high_watermark = l;
        }
        if let Some(l) = limit("disk_free_limit", cli.disk_free_limit, file.disk_free_limit)? {
            c.disk_free_limit = l;
        }
        if let Some(ms) = cli.consumer_timeout.or(file.consumer_timeout) {
            c.consumer_timeout = (ms > 0).then_some(ms);
        }
        c.max_connections = file.max_connections.unwrap_or(c.max_connections);
        c.max_handshakes = file.max_handshakes.unwrap_or(c.max_handshakes);
        if let Some(t) = file.tls {
            c.tls = Some(resolve_tls(t)?);
        }
        if let Some(m) = file.auth_mechanisms {
            c.auth_mechanisms = resolve_mechanisms(m)?;
        }
        match file.ssl_cert_login_from.as_deref() {
            None | Some("common_name") => {}
            Some("subject_alternative_name") => {
                c.ssl_cert_login_from = CertLogin::SubjectAlternativeName
            }
            Some(other) => {
                return Err(ConfigError::Value {
                    key: "ssl_cert_login_from",
                    reason: format!("{other:?} (common_name or subject_alternative_name)"),
                })
            }
        }
        c.metrics_tls = file.metrics_tls.unwrap_or(false);
        if c.metrics_tls && c.tls.is_none() {
            return Err(ConfigError::Value {
                key: "metrics_tls",
                reason: "needs a [tls] table with certfile and keyfile".into(),
            });
        }
        Ok(c)
    }

    fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            r#"
listen = ["127.0.0.1:7000"]
data_dir = "/tmp/from-file"
metrics_listen = "off"
vhosts = ["/", "other"]
heartbeat = 30

[[users]]
name = "app"
password = "pw"
vhosts = ["other"]
"#,
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            data_dir: Some("/tmp/from-flag".into()),
            ..Cli::default()
        };
        let c = Config::from_cli(cli).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/from-flag"));
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.vhosts, vec!["/".to_string(), "other".to_string()]);
        assert_eq!(c.heartbeat, 30);
        assert_eq!(c.frame_max, 131_072);
        assert_eq!(c.users.len(), 1);
        assert!(c.users[0].remote);
    }

    #[test]
    fn defaults_match_rabbitmq() {
        let c = Config::from_cli(Cli::default()).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.channel_max, 2047);
        assert_eq!(c.heartbeat, 60);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.metrics_listen, Some("0.0.0.0:15692".parse().unwrap()));
        assert_eq!(c.default_user, "guest");
        assert_eq!(c.loopback_users, vec!["guest".to_string()]);
    }

    #[test]
    fn unknown_keys_and_bad_addresses_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = [\"x\"]\n").unwrap();
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        assert!(matches!(
            Config::from_cli(cli),
            Err(ConfigError::Parse { .. })
        ));
        let cli = Cli {
            listen: Some("nope".into()),
            ..Cli::default()
        };
        assert!(matches!(Config::from_cli(cli), Err(ConfigError::Listen(_))));
    }

    #[test]
    fn tls_table_and_mechanisms() {
        let c = Config::from_toml(
            r#"
auth_mechanisms = ["EXTERNAL", "PLAIN"]
ssl_cert_login_from = "subject_alternative_name"
[tls]
certfile = "/c.pem"
keyfile = "/k.pem"
cacertfile = "/ca.pem"
verify = "verify_peer"
fail_if_no_peer_cert = true
"#,
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.listen.len(), 2);
        assert!(t.listen.iter().all(|a| a.port() == 5671));
        assert!(t.verify_peer && t.fail_if_no_peer_cert);
        assert_eq!(c.auth_mechanisms, ["EXTERNAL", "PLAIN"]);
        assert_eq!(c.ssl_cert_login_from, CertLogin::SubjectAlternativeName);

        let c = Config::from_toml("").unwrap();
        assert!(c.tls.is_none());
        assert_eq!(c.auth_mechanisms, ["PLAIN", "AMQPLAIN"]);

        for bad in [
            "[tls]\ncertfile = \"/c\"\n",
            "[tls]\ncertfile = \"/c\"\nkeyfile = \"/k\"\nverify = \"verify_peer\"\n",
            "[tls]\ncertfile = \"/c\"\nkeyfile = \"/k\"\nverify = \"maybe\"\n",
            "auth_mechanisms = [\"CRAM-MD5\"]\n",
            "auth_mechanisms = []\n",
            "ssl_cert_login_from = \"distinguished_name\"\n",
            "metrics_tls = true\n",
        ] {
            assert!(
                matches!(Config::from_toml(bad), Err(ConfigError::Value { .. })),
                "{bad}"
            );
        }
    }
}
