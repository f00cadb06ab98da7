//! The end-to-end fixtures, one file each: the gateway under test ([`Gateway::builder`]),
//! the upstreams, the test OpenID provider, Redis, HTTP receivers for sinks and alerts, the
//! sign-in fixture, and the audit trail read as typed [`Event`]s. This file keeps what they
//! share: dev certificates, ports, clients, raw exchanges, and [`tool`], which finds every
//! outside program (redis-server, node, chromium, openssl…) where Debian puts it;
//! `scripts/test` installs the same list.

mod audit;
mod gateway;
mod idp;
pub mod postgres;
mod receiver;
mod redis;
mod signin;
mod site;

pub use audit::*;
pub use gateway::*;
pub use idp::*;
pub use receiver::*;
pub use redis::*;
pub use signin::*;
pub use site::*;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CUSTOS: &str = env!("CARGO_BIN_EXE_custos");

/// Dev certificates shared by every test in this run.
pub fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("custos-e2e-certs-{}", std::process::id()));
        let out =
            Command::new(CUSTOS).args(["certs", "dev", "--out"]).arg(&dir).output().expect("run custos certs dev");
        assert!(out.status.success(), "certs dev failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// The path of an outside program a test runs: on `PATH`, else where Debian installs it
/// (`/usr/sbin`, `/sbin`, `/usr/lib/postgresql/<version>/bin`, newest version first).
/// Missing, the test fails with one line naming the Debian package that has it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_tool(name, &path, Path::new("/")).unwrap_or_else(|| {
        let line = format!("test needs `{name}` (Debian package {package}): run scripts/test");
        eprintln!("{line}");
        // Unwinding without the panic hook: the test fails with this line alone, not a
        // panic location and backtrace (RUST_BACKTRACE is often set).
        std::panic::resume_unwind(Box::new(line))
    })
}

/// [`tool`]'s search: the `path` list, then Debian's directories under `root`.
pub fn find_tool(name: &str, path: &std::ffi::OsStr, root: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
    for d in ["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"] {
        dirs.push(root.join(d));
    }
    // /usr/lib/postgresql/16/bin before …/15/bin.
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(root.join("usr/lib/postgresql"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versioned.into_iter().map(|(_, d)| d));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

pub fn client() -> reqwest::Client {
    // Generous: the machine may be loaded.
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client")
}

/// Sends raw bytes over one TCP connection and reads until the peer closes or goes
/// quiet; returns everything received. The first byte may take long on a loaded machine
/// (up to 30 s); once the answer has begun, 1.5 s of silence ends it (a kept-alive
/// connection).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let quiet = if out.is_empty() { Duration::from_secs(30) } else { Duration::from_millis(1500) };
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if out.is_empty() => return Err(e),
            Ok(Err(_)) => break,
        }
    }
    Ok(out)
}

/// Status code of the first response in `raw` bytes, and the whole text.
pub async fn raw_status(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<(u16, String)> {
    let out = raw(addr, bytes).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

/// How many responses (status lines) are in a raw exchange.
pub fn responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

/// Blocks until something accepts connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The clock in unix seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
