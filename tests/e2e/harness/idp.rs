//! The test OpenID provider (tests/idp: panva's oidc-provider under node): the one shared
//! by the run, providers of a test's own, client registration, tokens from a full code
//! flow, and JWTs signed with its test signer.

use super::{client, free_port, tool, wait_for_port};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

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

/// Follows redirects by hand until `stop` matches, returning that location.
async fn follow(c: &reqwest::Client, idp: &str, mut url: String, stop: &str) -> String {
    for _ in 0..10 {
        if url.starts_with(stop) {
            return url;
        }
        let r = c.get(&url).send().await.unwrap();
        match r.headers().get("location") {
            Some(l) => {
                let l = l.to_str().unwrap();
                url = if l.starts_with("http") { l.to_string() } else { format!("{idp}{l}") };
            }
            None => return url,
        }
    }
    panic!("too many redirects");
}

/// The token endpoint's answer for a code flow with PKCE through the login page
/// (`otp` empty: one factor). Its `access_token` is a JWT for `urn:custos:api`.
pub async fn tokens(idp: &str, user: &str, password: &str, otp: &str) -> Value {
    let redirect = format!("http://127.0.0.1:{}/.custos/callback", free_port());
    let (id, secret) = register_client(idp, &redirect, &redirect, "idp-test").await;
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let verifier = "a-pkce-code-verifier-of-sufficient-length-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let auth = format!(
        "{}/auth?client_id={id}&response_type=code&scope=openid%20email%20profile%20groups&redirect_uri={}&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256",
        idp,
        urlencode(&redirect)
    );
    let login = follow(&c, idp, auth, &format!("{idp}/interaction/")).await;
    let page = c.get(&login).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"username\""), "{page}");
    let r = c
        .post(format!("{login}/login"))
        .form(&[("username", user), ("password", password), ("otp", otp)])
        .send()
        .await
        .unwrap();
    let next = r.headers()["location"].to_str().unwrap().to_string();
    let back = follow(&c, idp, next, &redirect).await;
    assert!(back.starts_with(&redirect), "{back}");
    let code = back.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert!(back.contains("state=s1"));
    let token: Value = c
        .post(format!("{idp}/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["id_token"].is_string(), "{token}");
    token
}

/// The payload of a compact JWT.
pub fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JWT signed with the provider's own key (its test signer), with any claims.
pub async fn signed(idp: &str, header: Value, payload: Value) -> String {
    client()
        .post(format!("{idp}/test/sign"))
        .json(&json!({ "header": header, "payload": payload }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
