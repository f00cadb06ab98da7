//! The sign-in fixture: a gateway with a test IdP client of its own and sessions in Redis
//! ([`site`]), a browser-like client, the provider's login form, cookies, and a session
//! id's hash as the audit trail names it.

use super::*;
use std::path::Path;
use std::time::Duration;

/// A gateway signed in through a test IdP client of its own.
pub struct Site {
    pub gw: Gateway,
    pub demo: demo_ephi::Demo,
    pub origin: String,
    pub prefix: String,
    pub redis: String,
    pub idp: String,
    _secrets: tempfile::TempDir,
}

pub struct Opts<'a> {
    pub idp: &'a str,
    pub redis: &'a str,
    /// Extra `[oidc]` lines.
    pub oidc: &'a str,
    /// Extra `[session]` lines.
    pub session: &'a str,
    /// `client_name` at registration (`tamper` makes the IdP alter ID tokens).
    pub client_name: &'a str,
    /// `[[routes]]` instead of the default set.
    pub routes: Option<String>,
    /// The `[policy]` table (none: every signed-in request is allowed).
    pub policy: &'a str,
    /// The `[breakglass]` table.
    pub breakglass: &'a str,
    /// Redis key prefix (gateways that share sessions share it). Default: a fresh one.
    pub prefix: Option<String>,
    /// `[admin] tokens` file.
    pub admin_tokens: Option<&'a Path>,
    /// More `[listen]` lines (the PostgreSQL listener).
    pub listen: &'a str,
    /// Any other tables, after the routes (`[[databases]]`).
    pub extra: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            idp: idp_url(),
            redis: redis_url(),
            oidc: "",
            session: "",
            client_name: "custos-test",
            routes: None,
            policy: "",
            breakglass: "",
            prefix: None,
            admin_tokens: None,
            listen: "",
            extra: "",
        }
    }
}

/// Routes: `/` needs a session but no MFA, `/patients` needs MFA, `/admin` follows the
/// site default (MFA), `/plain` is public.
pub async fn site(o: Opts<'_>) -> Site {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    // The demo verifies identity assertions with the gateway's keys (`/whoami`).
    let demo = demo_ephi::start_verifying(
        "127.0.0.1:0".parse().unwrap(),
        true,
        None,
        Some(format!("{origin}/.custos/jwks.json")),
    )
    .await
    .unwrap();
    let redirect = format!("{origin}/.custos/callback");
    let (id, secret) = register_client(o.idp, &redirect, &format!("{origin}/plain"), o.client_name).await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let prefix = o.prefix.clone().unwrap_or_else(|| format!("custos:test:{}", uuid::Uuid::now_v7().simple()));
    // Lines of the harness's [admin] table come first.
    let admin = o.admin_tokens.map(|p| format!("tokens = {{ file = \"{}\" }}\n", p.display())).unwrap_or_default();
    let up = demo.addr;
    let config = format!(
        r#"{admin}
[oidc]
issuer = "{idp}"
client_id = "{id}"
client_secret = {{ file = "{secret}" }}
redirect_url = "{redirect}"
scopes = ["openid", "email", "profile", "groups"]
post_logout_redirect_url = "{origin}/plain"
{oidc}

[oidc.mfa]
acr = ["urn:custos:mfa"]
step_up_max_age_secs = 300

[session]
redis_url = "{redis}"
key_prefix = "{prefix}"
redis_timeout_ms = 3000
{session}
"#,
        idp = o.idp,
        secret = secret_file.display(),
        redis = o.redis,
        oidc = o.oidc,
        session = o.session,
    );
    let routes = o.routes.clone().unwrap_or_else(|| {
        format!(
            r#"[[routes]]
name = "app"
upstream = "http://{up}"
require_mfa = false

[[routes]]
name = "records"
path = "/patients"
upstream = "http://{up}"
require_mfa = true

[[routes]]
name = "admin"
path = "/admin"
upstream = "http://{up}"

[[routes]]
name = "open"
path = "/plain"
upstream = "http://{up}"
public = true
"#,
            up = up
        )
    });
    let gw = Gateway::builder()
        .config(&config)
        .route(&routes)
        .policy(o.policy)
        .breakglass(o.breakglass)
        .http_port(port)
        .listen(o.listen)
        .config(o.extra)
        .start()
        .await;
    Site { gw, demo, origin, prefix, redis: o.redis.to_string(), idp: o.idp.to_string(), _secrets: secrets }
}

/// A browser-like client: its own cookie jar, redirects followed by hand.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn nav(c: &reqwest::Client, url: &str) -> reqwest::Response {
    c.get(url).header("accept", "text/html,application/xhtml+xml").send().await.unwrap()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").unwrap_or_else(|| panic!("no Location on {}", r.status())).to_str().unwrap().to_string()
}

pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

pub fn cookie_value(r: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(r)
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_string()))
}

fn absolute(base: &str, l: &str) -> String {
    if l.starts_with("http") {
        l.to_string()
    } else {
        format!("{base}{l}")
    }
}

/// At the IdP: from the authorization URL through the login form to the redirect back
/// to the gateway. Returns the callback URL (not visited yet).
pub async fn idp_login(
    c: &reqwest::Client,
    idp: &str,
    auth_url: &str,
    user: &str,
    pass: &str,
    otp: Option<&str>,
) -> String {
    let mut url = auth_url.to_string();
    for _ in 0..5 {
        let r = nav(c, &url).await;
        if r.status() == 200 {
            break;
        }
        url = absolute(idp, &location(&r));
    }
    assert!(url.contains("/interaction/"), "no login page: {url}");
    let mut form = vec![("username", user), ("password", pass)];
    if let Some(o) = otp {
        form.push(("otp", o));
    }
    let r = c.post(format!("{url}/login")).form(&form).send().await.unwrap();
    assert!(r.status().is_redirection(), "login form refused: {} {}", r.status(), r.text().await.unwrap());
    let mut next = absolute(idp, &location(&r));
    for _ in 0..10 {
        if next.contains("/.custos/callback") {
            return next;
        }
        let r = nav(c, &next).await;
        assert!(r.status().is_redirection(), "stuck at the IdP: {next} {}", r.status());
        next = absolute(idp, &location(&r));
    }
    panic!("never sent back to the gateway");
}

/// Opens `path` (a protected page), signs in, and returns the callback's response (a
/// redirect to where the user was going, with the session cookie).
pub async fn sign_in(
    s: &Site,
    c: &reqwest::Client,
    path: &str,
    user: &str,
    pass: &str,
    otp: Option<&str>,
) -> reqwest::Response {
    let r = nav(c, &format!("{}{path}", s.origin)).await;
    assert_eq!(r.status(), 302, "{path}: {}", r.text().await.unwrap());
    let auth = location(&r);
    let callback = idp_login(c, &s.idp, &auth, user, pass, otp).await;
    nav(c, &callback).await
}

/// The status of `GET /` with session cookie `id`, as an API client sends it.
pub async fn status_with(s: &Site, id: &str) -> u16 {
    client()
        .get(format!("{}/", s.origin))
        .header("cookie", format!("custos_session={id}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub fn sha256(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A site on the example HIPAA policy, in front of its own demo upstream.
pub async fn policy_site() -> (Site, demo_ephi::Demo) {
    let p = policies();
    policy_site_with(&format!(
        "[policy]\nmodel = \"{}\"\npolicy = \"{}\"\n",
        p.join("hipaa_model.conf").display(),
        p.join("hipaa_policy.csv").display()
    ))
    .await
}

/// A site with `policy` (a `[policy]` table) and bearer tokens, one route `ehr` in the
/// cardiology domain, in front of its own demo upstream.
pub async fn policy_site_with(policy: &str) -> (Site, demo_ephi::Demo) {
    let demo = demo().await;
    let routes = format!(
        "[[routes]]\nname = \"ehr\"\nupstream = \"http://{}\"\nrequire_mfa = false\nresource = \"ehr\"\ndomain = \"cardiology\"\n",
        demo.addr
    );
    let s =
        site(Opts { oidc: "api_audience = \"urn:custos:api\"", policy, routes: Some(routes), ..Default::default() })
            .await;
    (s, demo)
}
