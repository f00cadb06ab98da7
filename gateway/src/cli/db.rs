//! `custos db login`: a database token after a browser sign-in, the way native apps sign
//! in (RFC 8252): a listener of our own on 127.0.0.1, a PKCE verifier (RFC 7636, S256)
//! that never leaves this process until the token is asked for, and a `state` checked on
//! the way back. Without a browser (`--no-browser`), a URL to open anywhere and a code to
//! compare, then polling. The token is written where libpq finds it (`~/.pgpass`, or
//! printed), always with `sslmode=verify-full` and `sslrootcert`.

use super::{block_on, failed, CliError};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Subcommand)]
pub(super) enum DbCommand {
    /// Sign in in your browser and get a token for DATABASE (written to ~/.pgpass).
    ///
    /// `custos db login ehr --gateway https://gateway.example` opens your browser at the
    /// gateway. You sign in there (with your second factor if the database needs one) and
    /// the browser hands a one-time code back to this command, on 127.0.0.1 only. The
    /// command trades it for a database token: a session of its own that ends with the
    /// database's idle timeout or lifetime, or when it is revoked. The token is written
    /// to ~/.pgpass (or $PGPASSFILE) and the `psql` command to run is printed; your own
    /// database password never exists.
    ///
    /// No browser on this machine (ssh)? Use --no-browser: open the printed URL on any
    /// computer, check that the page shows the same code and computer name as this
    /// terminal, and confirm. Never confirm a code you did not start yourself: whoever
    /// started it would get your access.
    #[command(verbatim_doc_comment)]
    Login(LoginArgs),
}

#[derive(Args)]
pub(super) struct LoginArgs {
    /// The database's name at the gateway (`[[databases]] name`).
    database: String,
    /// The gateway's URL (default: $CUSTOS_GATEWAY).
    #[arg(long)]
    gateway: Option<String>,
    /// Print a URL and a code to confirm instead of opening a browser here.
    #[arg(long)]
    no_browser: bool,
    /// What to do with the token: add it to ~/.pgpass (default), print PGPASSWORD=…,
    /// or print a connection URI.
    #[arg(long, value_enum, default_value_t = Print::Pgpass)]
    print: Print,
    /// The CA certificate (PEM) that signed the gateway's certificates, for this command
    /// and for psql's sslrootcert (default: $CUSTOS_CA; without one, the system's roots,
    /// which needs libpq 16 or later).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The host psql connects to (default: the gateway's host).
    #[arg(long)]
    pg_host: Option<String>,
    /// The port psql connects to.
    #[arg(long, default_value_t = 5432)]
    pg_port: u16,
    /// How long to wait for the sign-in, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Where the token goes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Print {
    Pgpass,
    Password,
    Uri,
}

/// What the gateway answers for a token.
#[derive(serde::Deserialize)]
struct Token {
    token: String,
    user: String,
    database: String,
    #[serde(default)]
    expires_at: u64,
}

pub(super) fn run(command: DbCommand) -> Result<(), CliError> {
    match command {
        DbCommand::Login(a) => login(a),
    }
}

fn login(a: LoginArgs) -> Result<(), CliError> {
    let gateway = a
        .gateway
        .clone()
        .or_else(|| std::env::var("CUSTOS_GATEWAY").ok().filter(|g| !g.is_empty()))
        .ok_or_else(|| CliError::Usage("give --gateway URL or set CUSTOS_GATEWAY".into()))?;
    let gateway = gateway.trim_end_matches('/').to_string();
    let base = url::Url::parse(&gateway).map_err(|e| CliError::Usage(format!("--gateway {gateway}: {e}")))?;
    if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
        return Err(CliError::Usage(format!("--gateway {gateway}: give an https:// URL")));
    }
    let ca = match a.ca.clone().or_else(|| std::env::var_os("CUSTOS_CA").filter(|c| !c.is_empty()).map(PathBuf::from)) {
        Some(p) => Some(std::fs::canonicalize(&p).map_err(|e| CliError::Usage(format!("--ca {}: {e}", p.display())))?),
        None => None,
    };
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = &ca {
        let pem = std::fs::read(ca).map_err(|e| CliError::Usage(format!("--ca {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| CliError::Usage(format!("--ca {}: not a PEM certificate: {e}", ca.display())))?;
        http = http.add_root_certificate(cert);
    }
    let http = http.build().map_err(failed)?;
    let verifier = random_b64(32)?;
    let challenge = crate::session::dbtoken::s256(&verifier);
    let timeout = Duration::from_secs(a.timeout.max(10));
    let token = block_on(async {
        if a.no_browser {
            device_login(&http, &gateway, &a.database, &verifier, &challenge, timeout).await
        } else {
            loopback_login(&http, &gateway, &a.database, &verifier, &challenge, timeout).await
        }
    })??;
    let host = a.pg_host.clone().unwrap_or_else(|| base.host_str().unwrap_or("localhost").to_string());
    let root = ca.as_ref().map_or_else(|| "system".to_string(), |p| p.display().to_string());
    let psql = format!(
        "psql \"host={host} port={port} dbname={db} user={user} sslmode=verify-full sslrootcert={root}\"",
        port = a.pg_port,
        db = conninfo_value(&token.database),
        user = conninfo_value(&token.user),
        root = conninfo_value(&root),
    );
    let until = if token.expires_at > 0 {
        format!(" (it lasts until {} at the latest)", when(token.expires_at))
    } else {
        String::new()
    };
    match a.print {
        Print::Pgpass => {
            let file = pgpass_file()?;
            write_pgpass(&file, &host, a.pg_port, &token.user, &token.token)?;
            eprintln!("Token for {} saved in {}{until}. Connect with:", token.database, file.display());
            println!("{psql}");
        }
        Print::Password => {
            eprintln!("Token for {}{until}. Set it in your shell, then connect with:\n  {psql}", token.database);
            println!("PGPASSWORD={}", token.token);
        }
        Print::Uri => {
            eprintln!("Connection URI for {}{until}:", token.database);
            println!(
                "postgresql://{user}:{pass}@{host}:{port}/{db}?sslmode=verify-full&sslrootcert={root}",
                user = enc(&token.user),
                pass = enc(&token.token),
                host = if host.contains(':') { format!("[{host}]") } else { host.clone() },
                port = a.pg_port,
                db = enc(&token.database),
                root = enc(&root),
            );
        }
    }
    Ok(())
}

/// `n` random bytes, base64url without padding.
fn random_b64(n: usize) -> Result<String, CliError> {
    let mut b = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| CliError::Failed("the system random source failed".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// A libpq conninfo value: quoted when it has a space or a quote.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\', '"']) {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Unix seconds as RFC 3339 (UTC).
fn when(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// The browser's way: a listener on 127.0.0.1, the browser at the gateway, the code back.
async fn loopback_login(
    http: &reqwest::Client,
    gateway: &str,
    db: &str,
    verifier: &str,
    challenge: &str,
    timeout: Duration,
) -> Result<Token, CliError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    let state = random_b64(16)?;
    let url = format!("{gateway}/.custos/db/login?db={}&port={port}&challenge={challenge}&state={state}", enc(db));
    open_browser(&url)?;
    eprintln!("Sign in in your browser. If it did not open, open this URL on this computer:\n  {url}");
    let code = tokio::time::timeout(timeout, callback(&listener, &state))
        .await
        .map_err(|_| CliError::Failed(format!("no sign-in within {} s", timeout.as_secs())))??;
    let r = http
        .post(format!("{gateway}/.custos/db/token"))
        .form(&[("code", code.as_str()), ("verifier", verifier)])
        .send()
        .await
        .map_err(|e| CliError::Failed(format!("{gateway}: {e}")))?;
    token_of(r).await
}

/// `$BROWSER URL`, else `xdg-open URL`; not waited for.
fn open_browser(url: &str) -> Result<(), CliError> {
    let program = std::env::var("BROWSER").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "xdg-open".into());
    match std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => Ok(()),
        // Not fatal: the URL is printed for the person to open.
        Err(e) => {
            eprintln!("custos: could not start the browser ({program}: {e})");
            Ok(())
        }
    }
}

/// Waits for the browser's `GET /callback?code=…&state=…` with our `state`; the code.
/// Anything else (a favicon, a stray request) is answered 404 and waited past.
async fn callback(listener: &tokio::net::TcpListener, state: &str) -> Result<String, CliError> {
    loop {
        let (mut conn, _) = listener.accept().await.map_err(failed)?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        // The request line and headers, bounded.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let target = text.lines().next().and_then(|l| l.strip_prefix("GET ")).and_then(|l| l.split(' ').next());
        let params: Option<(String, String)> = target.and_then(|t| t.strip_prefix("/callback?")).map(|q| {
            let mut code = String::new();
            let mut st = String::new();
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                match &*k {
                    "code" => code = v.into_owned(),
                    "state" => st = v.into_owned(),
                    _ => {}
                }
            }
            (code, st)
        });
        let (status, body, outcome) = match params {
            Some((code, st))
                if !code.is_empty() && constant_time_eq::constant_time_eq(st.as_bytes(), state.as_bytes()) =>
            {
                ("200 OK", "Signed in. Go back to your terminal; you can close this tab.", Some(Ok(code)))
            }
            Some(_) => (
                "400 Bad Request",
                "This sign-in is not the one this terminal started. Nothing was done.",
                Some(Err(CliError::Failed(
                    "the browser came back from another sign-in (state differs); nothing was done".into(),
                ))),
            ),
            None => ("404 Not Found", "Not found.", None),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
        let _ = conn.shutdown().await;
        if let Some(o) = outcome {
            return o;
        }
    }
}

/// What the device start answers.
#[derive(serde::Deserialize)]
struct Device {
    device: String,
    user_code: String,
    url: String,
    #[serde(default)]
    interval: u64,
}

/// No browser here: a URL and a code for the person, then polling for the token.
async fn device_login(
    http: &reqwest::Client,
    gateway: &str,
    db: &str,
    verifier: &str,
    challenge: &str,
    timeout: Duration,
) -> Result<Token, CliError> {
    let host = host_name();
    let r = http
        .post(format!("{gateway}/.custos/db/device"))
        .form(&[("db", db), ("challenge", challenge), ("host", host.as_str())])
        .send()
        .await
        .map_err(|e| CliError::Failed(format!("{gateway}: {e}")))?;
    let status = r.status();
    let body = r.text().await.map_err(failed)?;
    if !status.is_success() {
        return Err(refusal(status, &body));
    }
    let d: Device = serde_json::from_str(&body).map_err(|e| CliError::Failed(format!("the gateway's answer: {e}")))?;
    let shown = if d.user_code.len() == 8 {
        format!("{}-{}", &d.user_code[..4], &d.user_code[4..])
    } else {
        d.user_code.clone()
    };
    eprintln!(
        "Open this URL in a browser on any computer and sign in:\n  {}\nThe page must show the code {shown} and the computer {host}. Confirm only then.",
        d.url
    );
    let deadline = Instant::now() + timeout;
    let every = Duration::from_secs(d.interval.clamp(1, 10));
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() > deadline {
            return Err(CliError::Failed(format!("not confirmed within {} s", timeout.as_secs())));
        }
        let r = http
            .post(format!("{gateway}/.custos/db/token"))
            .form(&[("device", d.device.as_str()), ("verifier", verifier)])
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("{gateway}: {e}")))?;
        if r.status() == reqwest::StatusCode::BAD_REQUEST {
            let body = r.text().await.map_err(failed)?;
            if body.contains("\"authorization_pending\"") {
                continue;
            }
            return Err(refusal(reqwest::StatusCode::BAD_REQUEST, &body));
        }
        return token_of(r).await;
    }
}

/// This machine's name, as the confirmation page shows it (only the characters the
/// gateway accepts).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c)).take(64).collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// The token out of the gateway's answer, or its refusal as an error.
async fn token_of(r: reqwest::Response) -> Result<Token, CliError> {
    let status = r.status();
    let body = r.text().await.map_err(failed)?;
    if !status.is_success() {
        return Err(refusal(status, &body));
    }
    serde_json::from_str(&body).map_err(|e| CliError::Failed(format!("the gateway's answer: {e}")))
}

/// A refusal's message, as the gateway said it.
fn refusal(status: reqwest::StatusCode, body: &str) -> CliError {
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().or(v["error"].as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(300).collect());
    CliError::Failed(format!("the gateway refused ({status}): {msg}"))
}

/// `$PGPASSFILE`, else `~/.pgpass`.
fn pgpass_file() -> Result<PathBuf, CliError> {
    if let Some(f) = std::env::var_os("PGPASSFILE").filter(|f| !f.is_empty()) {
        return Ok(PathBuf::from(f));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
        CliError::Usage("HOME is not set: set PGPASSFILE, or use --print password or --print uri".into())
    })?;
    Ok(Path::new(&home).join(".pgpass"))
}

/// A `.pgpass` field: `:` and `\` escaped.
fn pgpass_field(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

/// Adds `host:port:*:user:token` to the file, replacing the line for the same host, port,
/// any database and user; the file is (re)written with mode 0600 (libpq ignores it
/// otherwise), through a temporary file renamed over it.
fn write_pgpass(file: &Path, host: &str, port: u16, user: &str, token: &str) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = format!("{}:{port}:*:{}:", pgpass_field(host), pgpass_field(user));
    let old = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(CliError::Failed(format!("{}: {e}", file.display()))),
    };
    let mut out: String = old.lines().filter(|l| !l.starts_with(&key)).map(|l| format!("{l}\n")).collect();
    out.push_str(&format!("{key}{}\n", pgpass_field(token)));
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".pgpass.custos-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::Failed(format!("{}: {e}", file.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_are_replaced_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(&f, "other:5432:*:bob:x\ngw.example:5432:*:alice:old\n").unwrap();
        write_pgpass(&f, "gw.example", 5432, "alice", "new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "other:5432:*:bob:x\ngw.example:5432:*:alice:new\n");
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        write_pgpass(&f, "gw.example", 6432, "a:b", "t\\").unwrap();
        assert!(std::fs::read_to_string(&f).unwrap().ends_with("gw.example:6432:*:a\\:b:t\\\\\n"));
    }

    #[test]
    fn conninfo_values_are_quoted_when_they_must_be() {
        assert_eq!(conninfo_value("alice"), "alice");
        assert_eq!(conninfo_value("/a b/ca.pem"), "'/a b/ca.pem'");
        assert_eq!(conninfo_value("o'k"), "'o\\'k'");
        assert_eq!(conninfo_value(""), "''");
    }

    /// One request to the listener at `port`; the answer's status line.
    async fn ask(port: u16, target: &str) -> String {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        c.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out.lines().next().unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn the_listener_takes_the_code_of_its_own_state_only() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let wait = tokio::spawn(async move { callback(&l, "our-state").await.map_err(|e| e.to_string()) });
        assert_eq!(ask(port, "/favicon.ico").await, "HTTP/1.1 404 Not Found");
        assert_eq!(ask(port, "/callback?code=c1&state=our-state").await, "HTTP/1.1 200 OK");
        assert_eq!(wait.await.unwrap().unwrap(), "c1");

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let wait = tokio::spawn(async move { callback(&l, "our-state").await.map_err(|e| e.to_string()) });
        assert_eq!(ask(port, "/callback?code=c2&state=their-state").await, "HTTP/1.1 400 Bad Request");
        assert!(wait.await.unwrap().unwrap_err().contains("state differs"));
    }

    #[test]
    fn a_verifier_is_rfc_7636s() {
        let v = random_b64(32).unwrap();
        assert_eq!(v.len(), 43);
        assert!(crate::session::dbtoken::is_verifier(&v));
        assert!(crate::session::dbtoken::is_challenge(&crate::session::dbtoken::s256(&v)));
    }
}
