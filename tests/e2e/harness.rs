//! Starts and stops what the tests need: dev certificates (made once by `custos certs
//! dev`), the demo upstream, and `custos serve` as a child process. Every outside program
//! (redis-server, node, chromium, openssl…) is found by [`tool`], where Debian puts it;
//! `scripts/test` installs the same list.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

pub async fn demo() -> demo_ephi::Demo {
    demo_ephi::start("127.0.0.1:0".parse().unwrap(), true, None).await.expect("start the demo upstream")
}

/// A running gateway. Killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub http: SocketAddr,
    pub tls: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `custos serve` with `[[routes]]` (and any other tables) from `extra`.
    pub async fn start(extra: &str) -> Gateway {
        Self::start_with(extra, 5).await
    }

    pub async fn start_with(extra: &str, grace_secs: u64) -> Gateway {
        Self::start_full(extra, grace_secs, None).await
    }

    /// `wrapper` is a shell snippet run before `exec custos …` (e.g. a `ulimit`).
    pub async fn start_full(extra: &str, grace_secs: u64, wrapper: Option<&str>) -> Gateway {
        Self::start_ports(extra, grace_secs, wrapper, None, None).await
    }

    /// With the plain HTTP listener on `http_port` (a sign-in redirect URL registered
    /// with the provider names it before the gateway starts).
    pub async fn start_on(extra: &str, http_port: u16) -> Gateway {
        Self::start_ports(extra, 5, None, Some(http_port), None).await
    }

    /// With the TLS listener on `tls_port`.
    pub async fn start_on_tls(extra: &str, tls_port: u16) -> Gateway {
        Self::start_ports(extra, 5, None, None, Some(tls_port)).await
    }

    async fn start_ports(
        extra: &str,
        grace_secs: u64,
        wrapper: Option<&str>,
        http_port: Option<u16>,
        tls_port: Option<u16>,
    ) -> Gateway {
        let certs = certs();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let (http, tls, admin) =
                (http_port.unwrap_or_else(free_port), tls_port.unwrap_or_else(free_port), free_port());
            let config = format!(
                r#"
[server]
threads = 1
grace_period_secs = {grace_secs}

[listen]
http = "127.0.0.1:{http}"

[listen.tls]
addr = "127.0.0.1:{tls}"
cert = "{certs}/server.pem"
key = {{ file = "{certs}/server-key.pem" }}

[log]
format = "json"
level = "warn"

[admin]
listen = "127.0.0.1:{admin}"
{extra}
"#,
                certs = certs.display()
            );
            let path = dir.path().join("custos.toml");
            std::fs::write(&path, config).expect("write config");
            let log = std::fs::File::create(dir.path().join("custos.log")).expect("log file");
            let mut cmd = match wrapper {
                None => Command::new(CUSTOS),
                Some(w) => {
                    let mut c = Command::new("sh");
                    c.arg("-c").arg(format!("{w}; exec \"$0\" \"$@\"")).arg(CUSTOS);
                    c
                }
            };
            let child = cmd
                .args(["serve", "--config"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn custos");
            let mut gw = Gateway {
                child,
                http: ([127, 0, 0, 1], http).into(),
                tls: ([127, 0, 0, 1], tls).into(),
                admin: ([127, 0, 0, 1], admin).into(),
                dir,
            };
            if gw.wait_healthy().await {
                return gw;
            }
            // Most likely a port taken between picking and binding: try new ports.
            eprintln!("gateway did not start; log:\n{}", gw.log());
        }
        panic!("custos did not start in three attempts");
    }

    async fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok((200, _)) =
                raw_status(self.http, b"GET /.custos/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("custos.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The default audit directory (beside the config).
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// SIGTERM, then wait for the exit (the audit chain is closed by then).
    pub async fn stop(&mut self) {
        let _ = Command::new(tool("kill", "procps")).args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("custos did not stop after SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A routes table pointing everything at `upstream`.
pub fn route_all(upstream: SocketAddr) -> String {
    format!("[[routes]]\npublic = true\nname = \"demo\"\nupstream = \"http://{upstream}\"\n")
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

/// Every record of an audit directory's chain, parsed, in order. The gateway may be
/// writing as this reads: bytes after a file's last newline are a record not yet
/// complete (or torn by a kill, which the gateway cuts on restart), so they are left out.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("audit directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| complete_lines(f)).collect()
}

/// The newline-terminated JSON lines of `file`, parsed.
fn complete_lines(file: &Path) -> Vec<serde_json::Value> {
    // A segment removed between listing and reading (rotation, retention) holds nothing.
    let text = std::fs::read(file).unwrap_or_default();
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&text[..complete])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: a bad audit line ({e}): {l}", file.display())))
        .collect()
}

/// `custos audit verify ARGS…`: exit code and output.
pub fn audit_verify(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(CUSTOS).args(["audit", "verify"]).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A redis-server on `port`, killed when the thread that started it ends (setpriv
/// --pdeathsig fires on the parent *thread*).
pub fn start_redis(port: u16) -> RedisServer {
    start_redis_with(port, &["--port".into(), port.to_string(), "--protected-mode".into(), "no".into()])
}

/// Blocks until something accepts connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running redis-server, stopped when dropped.
pub struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis shared by the tests of this run; tests keep apart by key prefixes.
pub fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        // A missing program fails here, in the test, rather than in the thread below.
        tool("setpriv", "util-linux");
        tool("redis-server", "redis-server");
        // Started from a thread that lives as long as the test process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let port = free_port();
            let _child = start_redis(port);
            tx.send(port).unwrap();
            loop {
                std::thread::park();
            }
        });
        let port = rx.recv().unwrap_or_else(|_| panic!("the shared redis-server did not start (see above)"));
        format!("redis://127.0.0.1:{port}/")
    })
}

/// Every entry of a stream: (id field, record field).
pub fn stream_entries(url: &str, stream: &str) -> Vec<(String, String)> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut c).unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let get = |k: &str| match e.map.get(k) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("field {k}: {other:?}"),
            };
            (get("id"), get("record"))
        })
        .collect()
}

fn idp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/idp");
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if !dir.join("node_modules/oidc-provider").exists() || !dir.join("node_modules/playwright-core").exists() {
            let out = Command::new(tool("npm", "npm"))
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("npm ci in tests/idp: {e}"));
            assert!(out.status.success(), "npm ci in tests/idp failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    });
    dir
}

/// A test IdP process on `port`, killed when the thread that started it ends.
fn spawn_idp(port: u16) -> Child {
    // Its log, for when a test needs to know what the provider did.
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("custos-e2e-idp-{port}.log"))).expect("IdP log file");
    let child = Command::new(tool("setpriv", "util-linux"))
        .args(["--pdeathsig", "KILL", "--"])
        .arg(tool("node", "nodejs"))
        .arg("server.mjs")
        .env("PORT", port.to_string())
        .env("CUSTOS_IDP_TEST_SIGNER", "1")
        .current_dir(idp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting the test IdP: {e}"));
    wait_for_port(port, "the test IdP", Duration::from_secs(60));
    child
}

/// A test IdP of one test's own (to stop it), on `port`.
pub struct IdpServer(Child);

impl IdpServer {
    pub fn start(port: u16) -> IdpServer {
        IdpServer(spawn_idp(port))
    }
}

impl Drop for IdpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A redis-server with `args` (port, TLS, ACL users…) after in-memory defaults;
/// `ready_port` is where it accepts.
pub fn start_redis_with(ready_port: u16, args: &[String]) -> RedisServer {
    let child = Command::new(tool("setpriv", "util-linux"))
        .args(["--pdeathsig", "KILL", "--"])
        .arg(tool("redis-server", "redis-server"))
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
    wait_for_port(ready_port, "redis-server", Duration::from_secs(30));
    RedisServer(child)
}

/// A redis-server on `port` that keeps its data in `dir` (append-only file, fsync per
/// write), so a restart finds the sessions it had.
pub fn start_redis_persistent(port: u16, dir: &Path) -> RedisServer {
    let args =
        ["--port", &port.to_string(), "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--dir".to_string(), dir.display().to_string()])
            .collect::<Vec<_>>();
    start_redis_with(port, &args)
}

/// Registers a confidential web client at the test IdP: (client_id, client_secret).
pub async fn register_client(idp: &str, redirect: &str, post_logout: &str, name: &str) -> (String, String) {
    let r: serde_json::Value = client()
        .post(format!("{idp}/reg"))
        .json(&serde_json::json!({
            "client_name": name,
            "redirect_uris": [redirect],
            "post_logout_redirect_uris": [post_logout],
            "backchannel_logout_uri": redirect.replace("/.custos/callback", "/.custos/backchannel-logout"),
            "backchannel_logout_session_required": true,
            "response_types": ["code"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
            "application_type": "web"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        r["client_id"].as_str().unwrap_or_else(|| panic!("{r}")).to_string(),
        r["client_secret"].as_str().unwrap().to_string(),
    )
}

/// The local OpenID provider (tests/idp: panva's oidc-provider) shared by this run,
/// installed with `npm ci` when missing and killed with the test process.
pub fn idp_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        // A missing program fails here, in the test, rather than in the thread below.
        tool("setpriv", "util-linux");
        tool("node", "nodejs");
        idp_dir();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let port = free_port();
            let mut child = spawn_idp(port);
            tx.send(port).unwrap();
            let _ = child.wait();
        });
        let port = rx.recv().unwrap_or_else(|_| panic!("the shared test IdP did not start (see above)"));
        format!("http://127.0.0.1:{port}")
    })
}

/// `tests/idp`, with its npm packages installed (the browser driver lives there too).
pub fn node_dir() -> PathBuf {
    idp_dir()
}
