//! TLS (AMQPS) as RabbitMQ offers it: the PEM files of the `[tls]` table read into a rustls
//! `ServerConfig` (TLS 1.2 and 1.3 only, ring's ciphers), client certificates checked against
//! `cacertfile` when `verify = "verify_peer"`, and the login name EXTERNAL takes from a
//! verified client certificate.
//!
//! The config lives in a [`Tls`] holder that every accept reads: a reload (SIGHUP) swaps in
//! a config built from the files as they are now, or keeps the old one if they do not make
//! one. Connections already open keep the session they made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tracing::{error, info};

use crate::config::{CertLogin, TlsConfig};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verification with {path}: {reason}")]
    Verifier { path: PathBuf, reason: String },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

/// Every certificate in a PEM file (a chain, or a CA bundle); at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
        what,
        path: path.into(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&read(what, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// When each certificate of a PEM file expires (seconds since the epoch): the management
/// API's certificate-expiration check.
pub fn not_after(path: &Path) -> Result<Vec<i64>, TlsError> {
    Ok(certificates("certfile", path)?
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| c.validity().not_after.timestamp())
        .collect())
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read("keyfile", path)?).map_err(|e| TlsError::Pem {
        what: "keyfile",
        path: path.into(),
        reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

/// The rustls config the files of `c` make now.
pub fn server_config(c: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; the
    // alternative, aws-lc-rs, needs cmake and nasm to build. The classical groups (X25519,
    // P-256, P-384) are what RabbitMQ's Erlang/OTP offers too.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("certfile", &c.certfile)?;
    let key = private_key(&c.keyfile)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (&c.cacertfile, c.verify_peer) {
        (Some(ca), true) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("cacertfile", ca)? {
                roots.add(cert).map_err(|e| TlsError::Verifier {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // verify_peer alone checks a certificate the client sends, but lets one without
            // any in (it cannot use EXTERNAL), as RabbitMQ's fail_if_no_peer_cert = false.
            let verifier = if c.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::Verifier {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        // verify_none: no certificate is asked for.
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

/// The files and the config they made last; read per accept, replaced by a reload.
pub struct Tls {
    settings: TlsConfig,
    /// A read lock for one `Arc` clone per accept; the write lock only for the swap (the
    /// files are read and parsed before it is taken).
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn new(settings: TlsConfig) -> Result<Tls, TlsError> {
        let config = server_config(&settings)?;
        Ok(Tls {
            settings,
            current: RwLock::new(config),
        })
    }

    pub fn settings(&self) -> &TlsConfig {
        &self.settings
    }

    /// The config a new connection's handshake uses.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Re-reads the certificate, key and CA files; on failure the old config stays (and the
    /// error is logged and returned).
    pub fn reload(&self) -> Result<(), TlsError> {
        match server_config(&self.settings) {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut c) => *c = config,
                    Err(poisoned) => *poisoned.into_inner() = config,
                }
                info!(certfile = %self.settings.certfile.display(), "TLS certificates reloaded");
                Ok(())
            }
            Err(e) => {
                error!("TLS reload failed, keeping the previous certificates: {e}");
                Err(e)
            }
        }
    }
}

/// The name EXTERNAL logs in as, from a client's (verified) certificate: its subject's first
/// CN, or its first DNS or email SAN. None if the certificate does not parse or has no such
/// name.
pub fn login_name(cert: &CertificateDer<'_>, from: CertLogin) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    match from {
        CertLogin::CommonName => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        CertLogin::SubjectAlternativeName => {
            let san = cert.subject_alternative_name().ok()??;
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => Some(s.to_string()),
                _ => None,
            })
        }
    }
}

/// The login name of the peer certificate of an accepted TLS session, if it sent one (a
/// certificate is only there if the verifier accepted it).
pub fn peer_login<IO>(
    stream: &tokio_rustls::server::TlsStream<IO>,
    from: CertLogin,
) -> Option<String> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    login_name(cert, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn login_name_is_the_cn_or_the_first_dns_or_email_san() {
        let c = cert("app", &["127.0.0.1", "app.example", "other.example"]);
        assert_eq!(
            login_name(&c, CertLogin::CommonName).as_deref(),
            Some("app")
        );
        assert_eq!(
            login_name(&c, CertLogin::SubjectAlternativeName).as_deref(),
            Some("app.example")
        );
        let c = cert("app", &["127.0.0.1"]);
        assert_eq!(login_name(&c, CertLogin::SubjectAlternativeName), None);
        assert_eq!(
            login_name(
                &CertificateDer::from(vec![0x30, 0x03, 1, 2]),
                CertLogin::CommonName
            ),
            None
        );
    }
}
