//! The gateway under test: `custos serve` as a child process on ephemeral ports, set up
//! by one builder (routes, policy, break-glass, grace period, a shell wrapper, fixed ports,
//! any other TOML), killed when dropped.

use super::{certs, client, free_port, raw_status, tool, CUSTOS};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running gateway. Killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub http: SocketAddr,
    pub tls: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// How a [`Gateway`] starts: pieces of TOML after the harness's own tables (in the order
/// given; bare keys first land in `[admin]`), the shutdown grace period, a shell wrapper
/// and fixed ports.
pub struct GatewayBuilder {
    extra: String,
    /// More `[listen]` lines (`postgres = "…"`).
    listen: String,
    grace_secs: u64,
    wrapper: Option<String>,
    http_port: Option<u16>,
    tls_port: Option<u16>,
}

impl Gateway {
    /// A gateway with a grace period of 5 s, ephemeral ports and nothing else.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            extra: String::new(),
            listen: String::new(),
            grace_secs: 5,
            wrapper: None,
            http_port: None,
            tls_port: None,
        }
    }
}

impl GatewayBuilder {
    /// Appends TOML text, on a line of its own.
    fn push(mut self, toml: &str) -> Self {
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self.extra.push_str(toml);
        self
    }

    /// A `[[routes]]` table (with its sub-tables), e.g. [`route_all`]'s.
    pub fn route(self, table: impl AsRef<str>) -> Self {
        self.push(table.as_ref())
    }

    /// The `[policy]` table.
    pub fn policy(self, table: impl AsRef<str>) -> Self {
        self.push(table.as_ref())
    }

    /// The `[breakglass]` table (with its sub-tables).
    pub fn breakglass(self, table: impl AsRef<str>) -> Self {
        self.push(table.as_ref())
    }

    /// Any other TOML (`[audit]`, `[oidc]`, `[session]`, …, or lines of `[admin]` when
    /// first).
    pub fn config(self, extra: impl AsRef<str>) -> Self {
        self.push(extra.as_ref())
    }

    /// More lines of the `[listen]` table (e.g. `postgres = "127.0.0.1:PORT"`).
    pub fn listen(mut self, lines: &str) -> Self {
        self.listen.push_str(lines);
        self.listen.push('\n');
        self
    }

    /// `[server] grace_period_secs` (default 5).
    pub fn grace(mut self, secs: u64) -> Self {
        self.grace_secs = secs;
        self
    }

    /// A shell snippet run before `exec custos …` (e.g. a `ulimit`).
    pub fn wrapper(mut self, snippet: &str) -> Self {
        self.wrapper = Some(snippet.to_string());
        self
    }

    /// The plain HTTP listener on `port` (a sign-in redirect URL registered with the
    /// provider names it before the gateway starts).
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// The TLS listener on `port`.
    pub fn tls_port(mut self, port: u16) -> Self {
        self.tls_port = Some(port);
        self
    }

    /// Starts `custos serve` and waits until it answers its health check; ephemeral ports
    /// taken meanwhile are picked again (three attempts).
    pub async fn start(self) -> Gateway {
        let GatewayBuilder { extra, listen, grace_secs, wrapper, http_port, tls_port } = self;
        let wrapper = wrapper.as_deref();
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
{listen}
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
}

impl Gateway {
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

/// The value of a metric line `name` (with its labels) on the admin listener, if any.
pub async fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let m = client().get(format!("http://{}/metrics", gw.admin)).send().await.ok()?.text().await.ok()?;
    m.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// An administrator token for `name`: (file holding the token, the tokens-file line).
pub fn admin_token(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = Command::new(CUSTOS).args(["admin-token", name]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    let line = text.lines().nth(1).unwrap().split(':').nth(1).unwrap().trim().to_string();
    let f = dir.join(format!("{name}-token"));
    std::fs::write(&f, token).unwrap();
    (f, line)
}
