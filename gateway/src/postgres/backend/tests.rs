//! The upstream side against scripted servers on 127.0.0.1: each test plays the server's
//! half of one start-up (plain or TLS) and checks what Custos sent and what it concluded.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::postgres::auth::md5;
use crate::postgres::messages::authentication::Authentication;
use crate::postgres::messages::backend_key_data::BackendKeyData;
use crate::postgres::messages::error_response::ErrorResponse;
use crate::postgres::messages::parameter_status::ParameterStatus;
use crate::postgres::messages::password::{Expecting, Password};
use crate::postgres::messages::ready_for_query::TransactionStatus;
use crate::postgres::messages::startup::{read_initial, Initial};
use crate::postgres::messages::{encoded, frame, read_message, Message};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A listener on 127.0.0.1 and its port.
async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn target<'a>(port: u16, tls: &'a UpstreamTls, params: &'a [(String, String)]) -> Upstream<'a> {
    Upstream {
        host: "localhost",
        port,
        dbname: "ehr",
        user: "ehr_ro",
        password: "upstream-secret",
        tls,
        params,
        timeout: Duration::from_secs(5),
    }
}

/// Accepts one connection: TLS if the client asks (with `acceptor`), then the startup
/// packet's parameters. `None` when the client gave up in the TLS handshake.
async fn try_accept(
    l: &TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> Option<(Box<dyn Io>, Vec<(String, String)>)> {
    let (mut tcp, _) = l.accept().await.unwrap();
    let mut first = read_initial(&mut tcp).await.unwrap().unwrap();
    let mut s: Box<dyn Io> = Box::new(tcp);
    if first == Initial::SslRequest {
        let acceptor = acceptor.expect("a TLS request only where the test offers TLS");
        s.write_all(b"S").await.unwrap();
        let mut tls: Box<dyn Io> = Box::new(acceptor.accept(s).await.ok()?);
        first = read_initial(&mut tls).await.unwrap().unwrap();
        s = tls;
    }
    match first {
        Initial::Startup { major: 3, minor: 0, params, protocol_options } if protocol_options.is_empty() => {
            Some((s, params))
        }
        other => panic!("not a 3.0 startup: {other:?}"),
    }
}

async fn accept(l: &TcpListener, acceptor: Option<tokio_rustls::TlsAcceptor>) -> (Box<dyn Io>, Vec<(String, String)>) {
    try_accept(l, acceptor).await.expect("a startup packet")
}

async fn send(s: &mut Box<dyn Io>, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

async fn recv(s: &mut Box<dyn Io>) -> Option<Message> {
    read_message(s, &mut BytesMut::new(), 1 << 16).await.ok().flatten()
}

fn auth(code: i32, data: &[u8]) -> Bytes {
    encoded(|o| {
        frame(o, b'R', |b| {
            b.extend_from_slice(&code.to_be_bytes());
            b.extend_from_slice(data);
        })
    })
}

/// Ok, two parameters, the key, a notice and ReadyForQuery: a start-up's end.
fn session_start() -> Bytes {
    encoded(|o| {
        Authentication::encode_ok(o);
        ParameterStatus { name: "server_version", value: "15.8" }.encode(o);
        ParameterStatus { name: "client_encoding", value: "UTF8" }.encode(o);
        BackendKeyData { pid: 4242, secret: vec![9; 4] }.encode(o);
        ErrorResponse { severity: "NOTICE".into(), code: "00000".into(), message: "hello".into() }.encode_notice(o);
        TransactionStatus::Idle.encode(o);
    })
}

#[tokio::test]
async fn trust_start_up_keeps_parameters_key_notices_and_what_came_after() {
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, params) = accept(&l, None).await;
        let mut reply = session_start().to_vec();
        reply.extend_from_slice(b"A\0\0"); // the start of a later message
        send(&mut s, &reply).await;
        params
    });
    let (tls, extra) = (UpstreamTls::disabled(), vec![("application_name".to_owned(), "custos:alice".to_owned())]);
    let b = connect(&target(port, &tls, &extra)).await.unwrap();
    let params = server.await.unwrap();
    assert_eq!(
        params,
        [("user", "ehr_ro"), ("database", "ehr"), ("application_name", "custos:alice")]
            .map(|(n, v)| (n.into(), v.into()))
    );
    assert!(!b.tls && !b.stream.is_tls());
    assert_eq!(
        b.params.iter().map(|p| (&*p.name, &*p.value)).collect::<Vec<_>>(),
        [("server_version", "15.8"), ("client_encoding", "UTF8")]
    );
    assert_eq!(
        &b.params[0].raw[..],
        &encoded(|o| ParameterStatus { name: "server_version", value: "15.8" }.encode(o))[..]
    );
    assert_eq!(b.key, Some(BackendKeyData { pid: 4242, secret: vec![9; 4] }));
    assert_eq!((b.notices.len(), b.notices[0][0]), (1, b'N'));
    assert_eq!(&b.buffered[..], b"A\0\0");
}

#[tokio::test]
async fn md5_is_answered_with_the_salted_hash() {
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = accept(&l, None).await;
        send(&mut s, &auth(5, &[7, 7, 7, 7])).await;
        let m = recv(&mut s).await.unwrap();
        let got = match Password::decode(&m.body, Expecting::Password).unwrap() {
            Password::Cleartext(p) => p.to_owned(),
            other => panic!("{other:?}"),
        };
        send(&mut s, &session_start()).await;
        got
    });
    let tls = UpstreamTls::disabled();
    connect(&target(port, &tls, &[])).await.unwrap();
    assert_eq!(server.await.unwrap(), md5::answer("ehr_ro", "upstream-secret", [7, 7, 7, 7]));
}

#[tokio::test]
async fn a_cleartext_password_is_never_sent_without_tls() {
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = accept(&l, None).await;
        send(&mut s, &auth(3, b"")).await;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let tls = UpstreamTls::disabled();
    let err = connect(&target(port, &tls, &[])).await.unwrap_err();
    assert!(matches!(err.kind, Failure::AuthMethod(_)), "{err}");
    assert_eq!(server.await.unwrap(), b"", "nothing follows the startup packet");
}

/// A SCRAM exchange whose server ends with `last` instead of a signature it can compute.
async fn scram_ending_with(last: Bytes) -> BackendError {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, None).await;
        send(&mut s, &auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")).await;
        let m = recv(&mut s).await.unwrap();
        let Password::SaslInitial { mechanism: "SCRAM-SHA-256", data: Some(first) } =
            Password::decode(&m.body, Expecting::SaslInitial).unwrap()
        else {
            panic!("not a SCRAM-SHA-256 initial response");
        };
        let nonce = std::str::from_utf8(first).unwrap().strip_prefix("n,,n=,r=").unwrap().to_owned();
        send(&mut s, &auth(11, format!("r={nonce}srv,s=c2FsdA==,i=4096").as_bytes())).await;
        let m = recv(&mut s).await.unwrap();
        assert!(
            matches!(Password::decode(&m.body, Expecting::SaslResponse).unwrap(), Password::SaslResponse(p) if p.starts_with(b"c=biws,r="))
        );
        send(&mut s, &last).await;
        let _ = recv(&mut s).await;
    });
    let tls = UpstreamTls::disabled();
    connect(&target(port, &tls, &[])).await.unwrap_err()
}

#[tokio::test]
async fn scram_refuses_a_server_that_cannot_sign() {
    let forged = auth(12, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert!(matches!(scram_ending_with(forged).await.kind, Failure::BadServerSignature));
    // Skipping the signature altogether proves nothing either.
    assert!(matches!(scram_ending_with(auth(0, b"")).await.kind, Failure::BadServerSignature));
}

#[tokio::test]
async fn refusals_and_unsupported_methods() {
    for (reply, check) in [
        (
            encoded(|o| ErrorResponse::fatal("28P01", "password authentication failed for user \"ehr_ro\"").encode(o)),
            (|f: &Failure| matches!(f, Failure::Refused { code } if code == "28P01")) as fn(&Failure) -> bool,
        ),
        (auth(7, b""), |f| matches!(f, Failure::AuthMethod("GSSAPI"))),
        (auth(9, b""), |f| matches!(f, Failure::AuthMethod("SSPI"))),
        (auth(10, b"OAUTHBEARER\0\0"), |f| matches!(f, Failure::AuthMethod(_))),
        (encoded(|o| TransactionStatus::Idle.encode(o)), |f| matches!(f, Failure::Protocol(_))),
        (Bytes::new(), |f| matches!(f, Failure::Protocol(_))),
    ] {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = accept(&l, None).await;
            send(&mut s, &reply).await;
        });
        let tls = UpstreamTls::disabled();
        let err = connect(&target(port, &tls, &[])).await.unwrap_err();
        assert!(check(&err.kind), "{err:?}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("database localhost:{port}: ")), "{shown}");
        assert!(!shown.contains("ehr_ro") && !shown.contains("upstream-secret"), "{shown}");
    }
}

#[tokio::test]
async fn parameters_custos_sets_cannot_be_given_again() {
    let tls = UpstreamTls::disabled();
    for name in ["user", "database", "_pq_.x", ""] {
        let extra = vec![(name.to_owned(), "x".to_owned())];
        let err = connect(&target(1, &tls, &extra)).await.unwrap_err();
        assert!(matches!(err.kind, Failure::Protocol(_)), "{name}: {err}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_closed_port_fails_to_connect() {
    let (l, port) = listener().await;
    let tls = UpstreamTls::disabled();
    let mut t = target(port, &tls, &[]);
    t.timeout = Duration::from_millis(200);
    let err = connect(&t).await.unwrap_err();
    assert!(matches!(err.kind, Failure::Timeout(_)), "{err}");
    drop(l);
    assert!(matches!(connect(&t).await.unwrap_err().kind, Failure::Connect(_)));
}

/// A server certificate for localhost and 127.0.0.1 (its own trust anchor), and a
/// server-side acceptor presenting it.
fn server_identity() -> (CertificateDer<'static>, tokio_rustls::TlsAcceptor) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (cert, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Connects to a TLS server presenting `server_identity()`, with `tls`, to `host`.
async fn over_tls(tls: &UpstreamTls, host: &str) -> Result<Backend, BackendError> {
    let (l, port) = listener().await;
    let (_, acceptor) = SERVER.with(|s| s.clone());
    tokio::spawn(async move {
        let Some((mut s, _)) = try_accept(&l, Some(acceptor)).await else { return };
        send(&mut s, &auth(3, b"")).await;
        let m = recv(&mut s).await.unwrap();
        assert_eq!(Password::decode(&m.body, Expecting::Password).unwrap(), Password::Cleartext("upstream-secret"));
        send(&mut s, &session_start()).await;
    });
    let mut t = target(port, tls, &[]);
    t.host = host;
    connect(&t).await
}

thread_local! {
    static SERVER: (CertificateDer<'static>, tokio_rustls::TlsAcceptor) = server_identity();
}

#[tokio::test]
async fn tls_modes() {
    let anchor = SERVER.with(|s| s.0.clone());
    let full = UpstreamTls::new(TlsMode::VerifyFull, vec![anchor], None).unwrap();
    let b = over_tls(&full, "localhost").await.unwrap();
    assert!(b.tls && b.stream.is_tls());
    // Cleartext inside TLS is answered; under the wrong name or CA the handshake fails.
    let wrong_name = over_tls(&full, "127.0.0.1").await.unwrap_err();
    assert!(matches!(wrong_name.kind, Failure::Tls(_)), "{wrong_name}");
    let other_ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.der().clone();
    let wrong_ca = UpstreamTls::new(TlsMode::VerifyFull, vec![other_ca], None).unwrap();
    assert!(matches!(over_tls(&wrong_ca, "localhost").await.unwrap_err().kind, Failure::Tls(_)));
    // `require` takes any certificate, under any name.
    let require = UpstreamTls::new(TlsMode::Require, vec![], None).unwrap();
    assert!(over_tls(&require, "127.0.0.1").await.unwrap().tls);
    assert!(UpstreamTls::new(TlsMode::VerifyFull, vec![CertificateDer::from(vec![1, 2, 3])], None).is_err());
}

#[tokio::test]
async fn a_server_without_tls_is_refused_when_tls_is_required() {
    for mode in [TlsMode::Require, TlsMode::VerifyFull] {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let (mut tcp, _) = l.accept().await.unwrap();
            assert_eq!(read_initial(&mut tcp).await.unwrap(), Some(Initial::SslRequest));
            tcp.write_all(b"N").await.unwrap();
            let _ = tcp.read(&mut [0u8; 1]).await;
        });
        let tls = UpstreamTls::new(mode, SERVER.with(|s| vec![s.0.clone()]), None).unwrap();
        let err = connect(&target(port, &tls, &[])).await.unwrap_err();
        assert!(matches!(err.kind, Failure::Tls(_)), "{mode:?}: {err}");
    }
}

#[tokio::test]
async fn cancel_sends_the_upstream_key_plain_and_inside_tls() {
    let key = BackendKeyData { pid: 77, secret: vec![1, 2, 3, 4] };
    let require = UpstreamTls::new(TlsMode::Require, vec![], None).unwrap();
    for tls in [UpstreamTls::disabled(), require] {
        let (l, port) = listener().await;
        let acceptor = SERVER.with(|s| s.1.clone());
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut s: Box<dyn Io> = Box::new(tcp);
            let mut first = read_initial(&mut s).await.unwrap().unwrap();
            if first == Initial::SslRequest {
                s.write_all(b"S").await.unwrap();
                s = Box::new(acceptor.accept(s).await.unwrap());
                first = read_initial(&mut s).await.unwrap().unwrap();
            }
            first
        });
        cancel(&target(port, &tls, &[]), &key).await.unwrap();
        let got = server.await.unwrap();
        assert_eq!(
            got,
            Initial::Cancel(crate::postgres::messages::startup::Cancel { pid: 77, secret: vec![1, 2, 3, 4] })
        );
    }
}
