//! A blocking client for the management HTTP API (RabbitMQ's `/api`): basic auth, JSON in and
//! out, percent-encoded path segments, and RabbitMQ's `{"error": ..., "reason": ...}` errors
//! turned into [`CtlError`]s.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// What can go wrong running a `warren ctl` command. [`CtlError::exit_code`] maps each to the
/// process's exit code, close to rabbitmqctl's (sysexits.h).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "{url}: https is not supported yet (warren ctl is built without TLS); use an http:// URL"
    )]
    TlsUnsupported { url: String },
    #[error("invalid management URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the management API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("authentication failed for user \"{user}\" ({reason})")]
    AuthFailed { user: String, reason: String },
    /// Any other non-2xx answer: the API's `reason` (or `error`, or the body).
    #[error("{reason} (HTTP {status} on {method} {path})")]
    Api {
        status: u16,
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("invalid response to {method} {path}: {reason}")]
    BadResponse {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("User \"{0}\" already exists")]
    UserExists(String),
    #[error("User \"{0}\" does not exist")]
    NoSuchUser(String),
    #[error("Virtual host \"{0}\" does not exist")]
    NoSuchVhost(String),
    #[error("JSON decoding error in {input:?}: {reason}")]
    BadJson { input: String, reason: String },
    /// clear_policy / clear_operator_policy of a policy that is not there.
    #[error("Parameter does not exist")]
    NoSuchParameter,
    #[error("Queue \"{name}\" in vhost \"{vhost}\" does not exist")]
    NoSuchQueue { vhost: String, name: String },
    #[error("Connection \"{0}\" does not exist")]
    NoSuchConnection(String),
    /// A rabbitmq-diagnostics check that ran and failed (the API's 503 and its reason).
    #[error("{0}")]
    CheckFailed(String),
    #[error("the management API did not answer within {0} seconds")]
    Timeout(u64),
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the password from standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CtlError {
    /// The process exit code, rabbitmqctl's (sysexits.h): 64 (usage) for a bad invocation,
    /// 65 (data error) for bad input or a missing vhost, 66 (no input) for a file that cannot
    /// be read, 67 for a missing user, 69 (unavailable) when the API cannot be reached, a
    /// check fails or the object to act on is not there, 70 (software) for a user that
    /// already exists and for server errors, 73 for an output file that cannot be created,
    /// 75 (temporary failure) for a timeout, 77 (no permission) when the login is refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::TlsUnsupported { .. } | CtlError::BadUrl { .. } => EX_USAGE,
            CtlError::Unreachable { .. }
            | CtlError::NoSuchParameter
            | CtlError::NoSuchQueue { .. }
            | CtlError::NoSuchConnection(_)
            | CtlError::CheckFailed(_) => 69,
            CtlError::Api {
                status: 400 | 404, ..
            } => 65,
            CtlError::Api {
                status: 401 | 403, ..
            }
            | CtlError::AuthFailed { .. } => 77,
            CtlError::NoSuchVhost(_) | CtlError::BadJson { .. } => 65,
            CtlError::ReadFile { .. } | CtlError::Stdin(_) => 66,
            CtlError::NoSuchUser(_) => 67,
            CtlError::WriteFile { .. } => 73,
            CtlError::Timeout(_) => 75,
            CtlError::UserExists(_)
            | CtlError::Api { .. }
            | CtlError::BadResponse { .. }
            | CtlError::Output(_) => 70,
        }
    }

    /// Whether this is the API's 404 (an object that is not there).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CtlError::Api { status: 404, .. })
    }
}

/// sysexits.h's EX_USAGE, rabbitmqctl's code for a bad command line (clap's 2 becomes it).
pub const EX_USAGE: u8 = 64;

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` of its UTF-8 bytes, so the vhost `/` is `%2F`.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `/api/` followed by the segments, each percent-encoded: `api_path(&["users", "a b"])` is
/// `/api/users/a%20b`.
pub fn api_path(segments: &[&str]) -> String {
    let mut p = String::from("/api");
    for s in segments {
        p.push('/');
        p.push_str(&encode_segment(s));
    }
    p
}

/// One management API endpoint with its credentials.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    user: String,
    authorization: String,
}

impl Client {
    /// A client for `url` (`http://host:port`, an optional path prefix kept), logging in as
    /// `user`. `https://` is refused with [`CtlError::TlsUnsupported`] until TLS is built in.
    pub fn new(url: &str, user: &str, password: &str) -> Result<Self, CtlError> {
        let base = check_url(url)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Client {
            agent,
            base,
            user: user.to_string(),
            authorization: format!("Basic {token}"),
        })
    }

    /// The base URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The base URL's host, without its port (`[::1]` keeps its brackets).
    pub fn host(&self) -> &str {
        let rest = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.rsplit_once(':') {
            // `[::1]` alone has colons but no port after its bracket.
            Some((h, p)) if !p.contains(']') => h,
            _ => authority,
        }
    }

    /// GET `path` (from [`api_path`]) and parse the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        let body = self.call("GET", path, None)?;
        serde_json::from_str(&body).map_err(|e| CtlError::BadResponse {
            method: "GET",
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// PUT `body` as JSON to `path`.
    pub fn put(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("PUT", path, Some(body)).map(drop)
    }

    /// POST `body` as JSON to `path`.
    pub fn post(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("POST", path, Some(body)).map(drop)
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> Result<(), CtlError> {
        self.call("DELETE", path, None).map(drop)
    }

    /// DELETE `path` with one extra header (`X-Reason` when closing a connection).
    pub fn delete_with(&self, path: &str, header: (&str, &str)) -> Result<(), CtlError> {
        self.call_with("DELETE", path, None, Some(header)).map(drop)
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, CtlError> {
        self.call_with(method, path, body, None)
    }

    fn call_with(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        header: Option<(&str, &str)>,
    ) -> Result<String, CtlError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .request(method, &url)
            // No `Accept: application/json`: RabbitMQ 3.10 answers 406 to it on the limits
            // endpoints (ureq's default `*/*` is what curl sends too).
            .set("Authorization", &self.authorization);
        if let Some((name, value)) = header {
            request = request.set(name, value);
        }
        let answer = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => request.call(),
        };
        match answer {
            Ok(response) => response.into_string().map_err(|e| CtlError::BadResponse {
                method,
                path: path.to_string(),
                reason: e.to_string(),
            }),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.status_text().to_string();
                let reason = reason_of(&text, response.into_string().ok().as_deref());
                if status == 401 {
                    Err(CtlError::AuthFailed {
                        user: self.user.clone(),
                        reason,
                    })
                } else {
                    Err(CtlError::Api {
                        status,
                        method,
                        path: path.to_string(),
                        reason,
                    })
                }
            }
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                    Err(CtlError::BadUrl {
                        url: self.base.clone(),
                        reason: t.to_string(),
                    })
                }
                _ => Err(CtlError::Unreachable {
                    url: self.base.clone(),
                    reason: t.to_string(),
                }),
            },
        }
    }
}

/// The base URL without a trailing `/`, once its scheme is known good.
fn check_url(url: &str) -> Result<String, CtlError> {
    let base = url.trim().trim_end_matches('/');
    let lower = base.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(CtlError::TlsUnsupported {
            url: url.to_string(),
        });
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(CtlError::BadUrl {
            url: url.to_string(),
            reason: "expected http://HOST[:PORT]".to_string(),
        });
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(CtlError::BadUrl {
            url: url.to_string(),
            reason: "no host".to_string(),
        });
    }
    Ok(base.to_string())
}

/// What to tell the user about an error answer: RabbitMQ's `reason`, else its `error`, else
/// the body itself, else the status line's text (`Not Acceptable`).
fn reason_of(status_text: &str, body: Option<&str>) -> String {
    let body = body.map(str::trim).unwrap_or("");
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        for key in ["reason", "error"] {
            match v.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => return s.trim().to_string(),
                Some(other) if !other.is_null() && !other.is_string() => return other.to_string(),
                _ => {}
            }
        }
    }
    if body.is_empty() {
        status_text.to_string()
    } else {
        body.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("alice"), "alice");
        assert_eq!(encode_segment("a b/c%d"), "a%20b%2Fc%25d");
        assert_eq!(encode_segment("x-y.z_w~"), "x-y.z_w~");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment("?#&+="), "%3F%23%26%2B%3D");
        assert_eq!(encode_segment(""), "");
    }

    #[test]
    fn api_paths() {
        assert_eq!(api_path(&["users"]), "/api/users");
        assert_eq!(
            api_path(&["permissions", "/", "bob"]),
            "/api/permissions/%2F/bob"
        );
        assert_eq!(
            api_path(&["vhost-limits", "my vhost", "max-connections"]),
            "/api/vhost-limits/my%20vhost/max-connections"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("http://localhost:15672/").unwrap(),
            "http://localhost:15672"
        );
        assert_eq!(check_url("http://h:1/prefix").unwrap(), "http://h:1/prefix");
        assert!(matches!(
            check_url("https://localhost:15671"),
            Err(CtlError::TlsUnsupported { .. })
        ));
        assert!(matches!(
            check_url("HTTPS://x"),
            Err(CtlError::TlsUnsupported { .. })
        ));
        assert!(matches!(
            check_url("localhost:15672"),
            Err(CtlError::BadUrl { .. })
        ));
        assert!(matches!(check_url("http://"), Err(CtlError::BadUrl { .. })));
        let e = Client::new("https://localhost", "guest", "guest")
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("https is not supported"), "{e}");
    }

    #[test]
    fn hosts_of_urls() {
        let host = |u: &str| Client::new(u, "g", "g").unwrap().host().to_string();
        assert_eq!(host("http://127.0.0.1:15672"), "127.0.0.1");
        assert_eq!(host("http://localhost/prefix"), "localhost");
        assert_eq!(host("http://[::1]:15672/"), "[::1]");
        assert_eq!(host("http://[::1]"), "[::1]");
    }

    #[test]
    fn reasons() {
        assert_eq!(
            reason_of(
                "Bad Request",
                Some(r#"{"error":"bad_request","reason":"vhost_or_user_not_found"}"#)
            ),
            "vhost_or_user_not_found"
        );
        assert_eq!(
            reason_of("Internal Server Error", Some(r#"{"error":"boom"}"#)),
            "boom"
        );
        assert_eq!(reason_of("Bad Gateway", Some("bad gateway")), "bad gateway");
        assert_eq!(
            reason_of("Service Unavailable", None),
            "Service Unavailable"
        );
        assert_eq!(
            reason_of(
                "Bad Request",
                Some("{\"error\":\"bad_request\",\"reason\":\"Validation failed\\n\\nx\\n\"}")
            ),
            "Validation failed\n\nx"
        );
    }

    #[test]
    fn unreachable_is_69() {
        // A port just freed: nothing listens there, so the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "guest", "guest").unwrap();
        let e = c.get("/api/users").err().unwrap();
        assert!(matches!(e, CtlError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 69);
    }
}
