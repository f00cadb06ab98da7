//! `custos certs dev --out DIR`: a local CA and certificates signed by it, for the
//! quickstart and the tests. Never for production. Keys are written with mode 0600 and
//! the CA's own key is not kept at all: run the command again for new certificates.
//!
//! Files: `ca.pem`, `server.pem` + `server-key.pem` (for `localhost`, `127.0.0.1`,
//! `::1` and any `--host`), `client.pem` + `client-key.pem` (for mTLS to upstreams).

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why the development certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

fn validity(params: &mut CertificateParams) {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

fn write(dir: &Path, name: &str, contents: &str, private: bool) -> Result<(), CertsError> {
    let path = dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(&path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|source| CertsError::Write { path, source })
}

/// Writes the development CA and certificates into `out`.
pub fn dev(out: &Path, extra_hosts: &[String]) -> Result<(), CertsError> {
    std::fs::create_dir_all(out).map_err(|source| CertsError::CreateDir { path: out.to_path_buf(), source })?;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Custos development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra_hosts.iter().cloned());
    let mut server = CertificateParams::new(names)?;
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server);
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, "custos-gateway");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client);
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key)?;

    write(out, "ca.pem", &ca_cert.pem(), false)?;
    write(out, "server.pem", &server_cert.pem(), false)?;
    write(out, "server-key.pem", &server_key.serialize_pem(), true)?;
    write(out, "client.pem", &client_cert.pem(), false)?;
    write(out, "client-key.pem", &client_key.serialize_pem(), true)?;
    Ok(())
}
