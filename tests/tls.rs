//! AMQPS: a real broker with a `[tls]` listener beside its plain one, certificates made at
//! run time with rcgen (a CA, a server certificate for localhost and 127.0.0.1, client
//! certificates named as users). lapin over TLS; raw frames over tokio-rustls for what lapin
//! cannot show (the mechanisms offered, EXTERNAL, refusals, the TLS version); certificate
//! reloads, in-process and by SIGHUP to the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{connection as conn, AMQPClass};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use support::child::{free_port, ChildBroker, Spawn};
use support::raw::{client_properties, conn_frame, Raw, Read, PROTOCOL_HEADER};
use support::{within, TestBroker};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use warren::config::{Config, TlsConfig, UserConfig};

// ---- certificates ----------------------------------------------------------------------

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A certificate signed by `ca` with subject CN `cn` and these SANs: (cert PEM, key PEM).
fn issue(ca: &Ca, cn: &str, sans: &[&str]) -> (String, String) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A directory with `ca.pem`, and `server.pem` / `server.key` from that CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("warren test CA");
        let pki = Pki { dir, ca };
        pki.install_server_cert();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA and a server certificate it signs, written over the broker's files.
    fn install_server_cert(&self) {
        let (cert, key) = issue(&self.ca, "localhost", &["localhost", "127.0.0.1"]);
        std::fs::write(self.path("ca.pem"), &self.ca.pem).unwrap();
        std::fs::write(self.path("server.pem"), cert).unwrap();
        std::fs::write(self.path("server.key"), key).unwrap();
    }

    /// A client certificate with CN `cn`.
    fn client(&self, cn: &str) -> (String, String) {
        issue(&self.ca, cn, &[])
    }

    fn tls_config(&self, verify_peer: bool, fail_if_no_peer_cert: bool) -> TlsConfig {
        TlsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            certfile: self.path("server.pem"),
            keyfile: self.path("server.key"),
            cacertfile: Some(self.path("ca.pem")),
            verify_peer,
            fail_if_no_peer_cert,
        }
    }
}

// ---- the client side ------------------------------------------------------------------

#[allow(deprecated)] // ring's provider: see src/tls.rs
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca_pem`, presenting `identity` (cert PEM, key PEM) if given, speaking
/// only `versions`.
fn client_config(
    ca_pem: &str,
    identity: Option<&(String, String)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    within(tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await
}

/// Protocol header sent, connection.start read: the mechanisms it offers.
async fn start(r: &mut Raw) -> String {
    r.write(PROTOCOL_HEADER).await;
    let s = r.expect_start().await;
    s.mechanisms.to_string()
}

async fn start_ok(r: &mut Raw, mechanism: &str, response: &str) {
    r.send(&conn_frame(conn::AMQPMethod::StartOk(conn::StartOk {
        client_properties: client_properties(true),
        mechanism: mechanism.into(),
        response: response.into(),
        locale: "en_US".into(),
    })))
    .await;
}

/// Logged in as guest with PLAIN, "/" open.
async fn plain_login(r: &mut Raw) {
    start(r).await;
    r.start_ok("guest", true).await;
    r.finish_login(|t| t).await;
}

/// A broker whose `[tls]` listener uses `pki`'s files; `tweak` adjusts the rest.
async fn broker(tls: TlsConfig, tweak: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::start_with(|c| {
        c.tls = Some(tls);
        tweak(c);
    })
    .await
}

fn tls_addr(b: &TestBroker) -> std::net::SocketAddr {
    b.handle.tls_addrs[0]
}

// ---- the tests ------------------------------------------------------------------------

#[tokio::test]
async fn lapin_publishes_and_consumes_over_tls_beside_plain_amqp() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(false, false), |_| {}).await;
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", tls_addr(&b).port());
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pki.ca.pem.clone()),
    };
    let conn = within(lapin::Connection::connect_with_config(
        &uri,
        ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime().unwrap(),
    ))
    .await
    .expect("lapin connects over TLS");
    let ch = within(conn.create_channel()).await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    let mut consumer = within(ch.basic_consume(
        q.as_str().into(),
        "tls".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    // Enough to take several TLS records, and a large body (sent as a slice, not copied).
    let big = vec![7u8; 300_000];
    for i in 0..200u32 {
        support::publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    support::publish_with(&ch, "", &q, &big, BasicProperties::default()).await;
    for i in 0..200u32 {
        let d = support::next_delivery(&mut consumer).await;
        assert_eq!(d.data, format!("m{i}").as_bytes());
        within(d.ack(BasicAckOptions::default())).await.unwrap();
    }
    let d = within(consumer.next()).await.unwrap().unwrap();
    assert_eq!(d.data, big);

    // Plain AMQP on the other listener, at the same time.
    let (_plain, pch) = b.open().await;
    let pq = support::exclusive_queue(&pch).await;
    support::publish(&pch, "", &pq, b"plain").await;
    assert_eq!(support::drain(&pch, &pq).await, ["plain"]);
    within(conn.close(200, "bye".into())).await.unwrap();
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_served() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(false, false), |_| {}).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, None, &[version]))
            .await
            .unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(expected));
        let mut r = Raw::over(s);
        plain_login(&mut r).await;
        r.open_channel(1).await;
    }
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_a_client_without_one() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(true, true), |_| {}).await;
    // TLS 1.3: the client's side of the handshake ends before the server has seen (and
    // refused) its empty certificate, so the refusal shows on the first read.
    let refused = match tls_connect(tls_addr(&b), client_config(&pki.ca.pem, None, BOTH)).await {
        Err(_) => true,
        Ok(s) => {
            let mut r = Raw::over(s);
            r.write(PROTOCOL_HEADER).await;
            matches!(r.next().await, Read::Closed)
        }
    };
    assert!(refused, "a client without a certificate got in");
    // One from another CA is refused too; one from ours gets in.
    let other = ca("someone else");
    let stranger = issue(&other, "guest", &[]);
    let refused = match tls_connect(
        tls_addr(&b),
        client_config(&pki.ca.pem, Some(&stranger), BOTH),
    )
    .await
    {
        Err(_) => true,
        Ok(s) => {
            let mut r = Raw::over(s);
            r.write(PROTOCOL_HEADER).await;
            matches!(r.next().await, Read::Closed)
        }
    };
    assert!(refused, "a certificate from an unknown CA got in");
    let client = pki.client("guest");
    let s = tls_connect(
        tls_addr(&b),
        client_config(&pki.ca.pem, Some(&client), BOTH),
    )
    .await
    .unwrap();
    let mut r = Raw::over(s);
    plain_login(&mut r).await;
}

/// Users: guest, and "app" who may open only "other".
fn with_external(c: &mut Config) {
    c.auth_mechanisms = vec!["PLAIN".into(), "AMQPLAIN".into(), "EXTERNAL".into()];
    c.vhosts = vec!["/".into(), "other".into()];
    c.users.push(UserConfig {
        name: "guest".into(),
        password: "guest".into(),
        vhosts: vec![],
        remote: false,
        tags: vec!["administrator".into()],
    });
    c.users.push(UserConfig {
        name: "app".into(),
        password: "secret".into(),
        vhosts: vec!["other".into()],
        remote: true,
        tags: vec![],
    });
}

/// connection.close from the broker: its code and text.
async fn expect_refusal(r: &mut Raw) -> (u16, String) {
    let c = r.expect_close_frame().await;
    (c.reply_code, c.reply_text.to_string())
}

#[tokio::test]
async fn external_logs_in_as_the_client_certificates_common_name() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(true, false), with_external).await;
    let app = pki.client("app");
    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, Some(&app), BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    assert_eq!(start(&mut r).await, "PLAIN AMQPLAIN EXTERNAL");
    start_ok(&mut r, "EXTERNAL", "").await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    // Logged in as "app": "/" is not its vhost, "other" is.
    r.send_open("/").await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 530, "{text}");
    assert!(text.contains("for user 'app'"), "{text}");

    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, Some(&app), BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    start(&mut r).await;
    start_ok(&mut r, "EXTERNAL", "").await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    r.send_open("other").await;
    r.expect_open_ok().await;
    r.open_channel(1).await;
}

#[tokio::test]
async fn external_is_refused_without_a_certificate_or_for_an_unknown_name() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(true, false), with_external).await;
    let refusal = |text: &str| {
        assert!(
            text.starts_with("ACCESS_REFUSED") && text.contains("EXTERNAL"),
            "{text}"
        )
    };
    // A verified certificate whose CN is no user.
    let nobody = pki.client("nobody");
    let s = tls_connect(
        tls_addr(&b),
        client_config(&pki.ca.pem, Some(&nobody), BOTH),
    )
    .await
    .unwrap();
    let mut r = Raw::over(s);
    start(&mut r).await;
    start_ok(&mut r, "EXTERNAL", "").await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 403);
    refusal(&text);

    // TLS without a client certificate (verify_peer lets it in; EXTERNAL has no name).
    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, None, BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    start(&mut r).await;
    start_ok(&mut r, "EXTERNAL", "guest").await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 403);
    refusal(&text);

    // Plain TCP: no certificate either, whatever the response says.
    let mut r = Raw::tcp(b.addr).await;
    start(&mut r).await;
    start_ok(&mut r, "EXTERNAL", "guest").await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 403);
    refusal(&text);
}

#[tokio::test]
async fn mechanisms_offered_are_the_configured_ones_and_others_are_unknown() {
    let pki = Pki::new();
    // Default: PLAIN and AMQPLAIN; EXTERNAL is unknown even with a good certificate.
    let b = broker(pki.tls_config(true, false), |_| {}).await;
    let guest = pki.client("guest");
    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, Some(&guest), BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    assert_eq!(start(&mut r).await, "PLAIN AMQPLAIN");
    start_ok(&mut r, "EXTERNAL", "").await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("unknown authentication mechanism"), "{text}");

    // EXTERNAL only: PLAIN is unknown.
    let b = broker(pki.tls_config(true, false), |c| {
        c.auth_mechanisms = vec!["EXTERNAL".into()];
    })
    .await;
    let mut r = Raw::tcp(b.addr).await;
    assert_eq!(start(&mut r).await, "EXTERNAL");
    r.start_ok("guest", true).await;
    let (code, text) = expect_refusal(&mut r).await;
    assert_eq!(code, 503, "{text}");
}

#[tokio::test]
async fn the_tls_handshake_is_under_the_handshake_timeout_and_limit() {
    let pki = Pki::new();
    let b = broker(pki.tls_config(false, false), |c| {
        c.handshake_timeout = Duration::from_secs(1);
        c.max_handshakes = 1;
    })
    .await;
    // A socket that never starts its TLS handshake holds the one slot...
    let mut idle = Raw::tcp(tls_addr(&b)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so the next socket is closed at once, TLS or plain.
    let mut next = Raw::tcp(b.addr).await;
    next.wait_eof(Duration::from_millis(500))
        .await
        .expect("closed: the handshake slot is taken");
    // After the timeout the idle one is dropped, and the slot is free again.
    idle.wait_eof(Duration::from_secs(3))
        .await
        .expect("an idle TLS socket is closed at the handshake timeout");
    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, None, BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    plain_login(&mut r).await;
    // A client that speaks garbage instead of TLS does no harm.
    let mut junk = Raw::tcp(tls_addr(&b)).await;
    junk.write(b"AMQP\x00\x00\x09\x01 not a TLS hello").await;
    junk.wait_eof(Duration::from_secs(2)).await.unwrap();
    r.open_channel(1).await;
}

/// Whether a new TLS connection to `addr` trusting only `ca_pem` gets to connection.start.
async fn trusts(addr: std::net::SocketAddr, ca_pem: &str) -> bool {
    match tls_connect(addr, client_config(ca_pem, None, BOTH)).await {
        Err(_) => false,
        Ok(s) => {
            let mut r = Raw::over(s);
            r.write(PROTOCOL_HEADER).await;
            matches!(
                r.next().await,
                Read::Frame(AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(conn::AMQPMethod::Start(_))
                ))
            )
        }
    }
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let mut pki = Pki::new();
    let b = broker(pki.tls_config(false, false), |_| {}).await;
    let old_ca = pki.ca.pem.clone();
    let s = tls_connect(tls_addr(&b), client_config(&old_ca, None, BOTH))
        .await
        .unwrap();
    let mut old = Raw::over(s);
    plain_login(&mut old).await;

    // A broken key file: the reload fails and the old certificate stays.
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    assert!(b.handle.reload_tls().is_err());
    assert!(trusts(tls_addr(&b), &old_ca).await);

    pki.ca = ca("the next CA");
    pki.install_server_cert();
    assert!(trusts(tls_addr(&b), &old_ca).await, "not reloaded yet");
    b.handle.reload_tls().unwrap();
    assert!(!trusts(tls_addr(&b), &old_ca).await);
    assert!(trusts(tls_addr(&b), &pki.ca.pem).await);
    // The connection made before goes on.
    old.open_channel(1).await;
}

fn write_config(dir: &Path, pki: &Pki, tls_port: u16) -> PathBuf {
    let path = dir.join("warren.toml");
    std::fs::write(
        &path,
        format!(
            "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncertfile = {:?}\nkeyfile = {:?}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_a_running_binary() {
    let mut pki = Pki::new();
    let tls_port = free_port();
    let config = write_config(pki.dir.path(), &pki, tls_port);
    let config = config.to_str().unwrap().to_string();
    let b = ChildBroker::in_temp_dir(Spawn {
        args: &["--config", &config],
        ..Spawn::default()
    })
    .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let old_ca = pki.ca.pem.clone();
    let s = tls_connect(addr, client_config(&old_ca, None, BOTH))
        .await
        .unwrap();
    let mut old = Raw::over(s);
    plain_login(&mut old).await;

    pki.ca = ca("the next CA");
    pki.install_server_cert();
    let hup = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(b.pid().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !trusts(addr, &pki.ca.pem).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served after SIGHUP; log:\n{}",
            support::child::tail(b.log())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!trusts(addr, &old_ca).await);
    old.open_channel(1).await;
    // Plain AMQP beside it, and the broker still there after the signal.
    let mut plain = Raw::login(b.addr()).await;
    plain.open_channel(1).await;
    support::child::assert_no_panic(b.log(), "after SIGHUP");
    b.stop();
}

#[tokio::test]
async fn bad_certificate_files_are_a_clear_error_at_start() {
    let pki = Pki::new();
    let missing = TlsConfig {
        certfile: pki.path("nope.pem"),
        ..pki.tls_config(false, false)
    };
    let data = tempfile::tempdir().unwrap();
    let config = |tls| Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: data.path().to_path_buf(),
        metrics_listen: None,
        management_listen: None,
        tls: Some(tls),
        ..Config::default()
    };
    let e = warren::server::start(config(missing)).await.err().unwrap();
    assert!(e.to_string().contains("nope.pem"), "{e}");
    std::fs::write(pki.path("garbage.pem"), "hello").unwrap();
    let garbage = TlsConfig {
        keyfile: pki.path("garbage.pem"),
        ..pki.tls_config(false, false)
    };
    let e = warren::server::start(config(garbage)).await.err().unwrap();
    assert!(e.to_string().contains("garbage.pem"), "{e}");
    // A key that is not the certificate's.
    let (_, other_key) = pki.client("x");
    std::fs::write(pki.path("other.key"), other_key).unwrap();
    let mismatch = TlsConfig {
        keyfile: pki.path("other.key"),
        ..pki.tls_config(false, false)
    };
    assert!(warren::server::start(config(mismatch)).await.is_err());
}

#[tokio::test]
async fn output_left_inside_the_tls_session_is_flushed_when_the_client_catches_up() {
    // The broker writes faster than this client reads, so the socket fills and rustls holds
    // the tail of the output; once the client reads again, that tail must come without
    // any further write from the broker (no heartbeats here) to push it out.
    let pki = Pki::new();
    let b = broker(pki.tls_config(false, false), |_| {}).await;
    let s = tls_connect(tls_addr(&b), client_config(&pki.ca.pem, None, BOTH))
        .await
        .unwrap();
    let mut r = Raw::over(s);
    plain_login(&mut r).await;
    r.open_channel(1).await;
    // 14 MiB: more than loopback's socket buffers hold, less than the 16 MiB of output past
    // which the broker stops reading.
    const N: usize = 56;
    const SIZE: usize = 256 * 1024 + 17;
    let body = vec![b'x'; SIZE];
    let mut out = Vec::new();
    for _ in 0..N {
        // Mandatory to no queue: each comes back as basic.return with its body.
        support::raw::publish_frames_mandatory("", "no.such.queue", &body, &mut out);
    }
    r.write(&out).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = 0;
    while got < N * SIZE {
        match r.recv().await {
            AMQPFrame::Body(1, b) => {
                got += b.len();
                // Slower than the broker writes: its socket stays full to the end.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            AMQPFrame::Method(1, AMQPClass::Basic(_)) | AMQPFrame::Header(1, ..) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn metrics_tls_serves_the_endpoint_over_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let port = free_port();
    let _b = broker(pki.tls_config(false, false), |c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
        c.metrics_tls = true;
    })
    .await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = tls_connect(addr, client_config(&pki.ca.pem, None, BOTH))
        .await
        .expect("an HTTPS handshake on the metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    let _ = within(s.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
