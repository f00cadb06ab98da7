//! The upstream TLS modes, libpq's meanings: `disable` (plaintext), `require` (TLS, the
//! certificate not checked: against a passive eavesdropper only) and `verify-full` (the
//! chain against the configured CA bundle, or the system's roots when none is given, and
//! the host name). TLS 1.2 and 1.3 only, the ring provider, an optional client
//! certificate. Built once per database; every connection shares the `ClientConfig`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Require,
    VerifyFull,
}

/// A client certificate chain and its key, for an upstream that asks for one.
#[derive(Debug)]
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("upstream TLS: {0}")]
pub struct TlsSetupError(String);

/// A database's TLS side, built once.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    mode: TlsMode,
    /// Present unless the mode is `Disable`.
    config: Option<Arc<ClientConfig>>,
}

/// Where Debian, Fedora and Alpine keep the system's CA bundle (`SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

impl UpstreamTls {
    pub fn disabled() -> UpstreamTls {
        UpstreamTls { mode: TlsMode::Disable, config: None }
    }

    /// `ca` is the bundle `verify-full` checks against (empty: the system's roots, read
    /// now, once); `require` ignores it. Reads files only for the system roots, so call it
    /// at start-up, not per connection.
    pub fn new(
        mode: TlsMode,
        ca: Vec<CertificateDer<'static>>,
        client: Option<ClientCert>,
    ) -> Result<UpstreamTls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?;
        let builder = match mode {
            TlsMode::Disable => return Ok(UpstreamTls::disabled()),
            TlsMode::Require => {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            }
            TlsMode::VerifyFull => {
                let ca = if ca.is_empty() { system_roots()? } else { ca };
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(ca);
                if added == 0 {
                    return Err(TlsSetupError("the CA bundle holds no usable certificate".into()));
                }
                builder.with_root_certificates(roots)
            }
        };
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(c.chain, c.key)
                .map_err(|e| TlsSetupError(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        // PostgreSQL 17 and later check it for direct TLS; earlier servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(UpstreamTls { mode, config: Some(Arc::new(config)) })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    pub(super) fn config(&self) -> Option<&Arc<ClientConfig>> {
        self.config.as_ref()
    }
}

fn system_roots() -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let path = from_env
        .as_deref()
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().copied())
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or_else(|| TlsSetupError("no CA bundle given and no system CA bundle found".into()))?;
    let pem = std::fs::read(path).map_err(|e| TlsSetupError(format!("{path}: {e}")))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError(format!("{path}: {e}")))
}

/// `require`: any certificate is taken (libpq's meaning of the mode), but the handshake's
/// signatures are still checked, so the session keys belong to whoever sent it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
