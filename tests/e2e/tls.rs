//! The TLS listener: TLS 1.3 and 1.2 succeed, TLS 1.1 is refused, HTTP/2 by ALPN; and
//! https upstreams verified against a CA bundle, with a client certificate (mTLS).

use crate::harness::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::{self, pki_types::ServerName};

fn roots() -> rustls::RootCertStore {
    let pem = std::fs::read(certs().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// Handshakes offering only `version`; returns the negotiated version and ALPN.
async fn handshake(
    addr: SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> Result<(rustls::ProtocolVersion, Option<Vec<u8>>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, c) = conn.get_ref();
    Ok((c.protocol_version().unwrap(), c.alpn_protocol().map(|p| p.to_vec())))
}

/// Whether a TLS 1.1 handshake with `addr` completes, asked of Debian's `openssl
/// s_client` (rustls cannot speak TLS 1.1). `SECLEVEL=0` stops the client refusing on
/// its own side.
fn tls11_accepted(addr: SocketAddr) -> bool {
    let out = Command::new(tool("openssl", "openssl"))
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl s_client: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("TLSv1.1") && !text.contains("Cipher is (NONE)")
}

#[tokio::test]
async fn tls_1_3_and_1_2_succeed_and_1_1_is_refused() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let (v, _) = handshake(gw.tls, &rustls::version::TLS13, &[]).await.unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3);
    let (v, _) = handshake(gw.tls, &rustls::version::TLS12, &[]).await.unwrap();
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_2);
    let addr = gw.tls;
    assert!(!tokio::task::spawn_blocking(move || tls11_accepted(addr)).await.unwrap(), "TLS 1.1 was accepted");
}

/// The probe above can fail: against a server that does accept TLS 1.1 it says so.
#[tokio::test]
async fn the_tls_1_1_probe_detects_a_server_that_accepts_it() {
    let port = free_port();
    let dir = certs();
    let mut server = Command::new(tool("openssl", "openssl"))
        .args(["s_server", "-accept", &port.to_string(), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-www"])
        .arg("-cert")
        .arg(dir.join("server.pem"))
        .arg("-key")
        .arg(dir.join("server-key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting openssl s_server: {e}"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut accepted = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            accepted = tokio::task::spawn_blocking(move || tls11_accepted(addr)).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(accepted, "the probe did not see a TLS 1.1 handshake succeed");
}

#[tokio::test]
async fn http2_over_tls_by_alpn() {
    let demo = demo().await;
    let gw = Gateway::builder().route(route_all(demo.addr)).start().await;
    let (_, alpn) = handshake(gw.tls, &rustls::version::TLS13, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, alpn) = handshake(gw.tls, &rustls::version::TLS13, &[b"http/1.1"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs().join("ca.pem")).unwrap()).unwrap();
    let c = reqwest::Client::builder().no_proxy().add_root_certificate(ca).build().unwrap();
    let url = format!("https://localhost:{}/debug/h2?x=1", gw.tls.port());
    let r = c.post(&url).body("over h2").header("x-custos-user", "mallory").send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = demo.seen().pop().unwrap();
    assert_eq!(seen.target, "/debug/h2?x=1");
    assert_eq!(seen.body, b"over h2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-custos-user"), None);
    assert!(seen.header("host").is_some_and(|h| h.starts_with("localhost")), "{:?}", seen.headers);
}

#[tokio::test]
async fn https_upstream_with_ca_bundle_and_client_certificate() {
    let dir = certs();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = demo_ephi::Tls {
        cert_pem: read("server.pem"),
        key_pem: read("server-key.pem"),
        client_ca_pem: Some(read("ca.pem")),
    };
    let demo = demo_ephi::start("127.0.0.1:0".parse().unwrap(), true, Some(tls)).await.unwrap();
    let port = demo.addr.port();
    let d = dir.display();
    let gw = Gateway::builder().config(format!(
        "[[routes]]\npublic = true\nname = \"mtls\"\npath = \"/mtls\"\nstrip_prefix = \"/mtls\"\nupstream = \"https://127.0.0.1:{port}\"\n\
         [routes.upstream_tls]\nca = \"{d}/ca.pem\"\nsni = \"localhost\"\nclient_cert = \"{d}/client.pem\"\nclient_key = {{ file = \"{d}/client-key.pem\" }}\n\
         [[routes]]\npublic = true\nname = \"no-client-cert\"\npath = \"/anon\"\nupstream = \"https://127.0.0.1:{port}\"\n\
         [routes.upstream_tls]\nca = \"{d}/ca.pem\"\nsni = \"localhost\"\n\
         [[routes]]\npublic = true\nname = \"wrong-ca\"\npath = \"/wrongca\"\nupstream = \"https://127.0.0.1:{port}\"\n"
    )).start()
    .await;
    let c = client();
    let r = c.get(gw.url("/mtls/patients/1")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    assert_eq!(demo.seen().len(), 1);
    // Without a client certificate the upstream refuses the handshake.
    assert_eq!(c.get(gw.url("/anon/patients/1")).send().await.unwrap().status(), 502);
    // Without the CA bundle the upstream's certificate is not trusted.
    assert_eq!(c.get(gw.url("/wrongca/patients/1")).send().await.unwrap().status(), 502);
    assert_eq!(demo.seen().len(), 1);
}
