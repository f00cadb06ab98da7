//! `custos db login`'s side of the gateway: a database token for a person signed in in the
//! browser, handed only to the command line that asked (RFC 8252 with PKCE, RFC 7636).
//!
//! - `GET /.custos/db/login?db=D&port=P&challenge=C&state=S`: the browser, sent by the
//!   command line. With a session that satisfies the database's MFA rule (else through
//!   the sign-in and back here), a one-time code is kept with the challenge and the
//!   browser is sent to `http://127.0.0.1:P/callback?code=…&state=S`: a loopback
//!   listener (`127.0.0.1` or `[::1]`, `host=`), never another host.
//! - `POST /.custos/db/device` (`db`, `challenge`, `host`): a login without a browser on
//!   the command line's machine. The answer is a URL and a code; the person opens the URL
//!   anywhere, signs in, compares the code and host name with their terminal, and
//!   confirms (`POST /.custos/db/login`, the form's token bound to the browser session).
//! - `POST /.custos/db/token` (`code` or `device`, with `verifier`): the token, as JSON,
//!   once the verifier matches the challenge, the code is taken (once) or the device
//!   login confirmed, and the browser session still stands with the MFA the database
//!   needs. A device login not yet confirmed answers `authorization_pending`.
//!
//! Whoever merely holds the URL gets nothing: the token needs the verifier, which only
//! the command line that started the login holds. Every refusal is a `db.login_refused`
//! record, every token a `db.token_issued` one; tokens, codes and device ids never are.

use super::{Denial, Reply};
use crate::access::{self, Denial as AccessDenial, Presented, Principal};
use crate::audit::{Code, Kind};
use crate::http::breakglass::page::{esc, page};
use crate::http::enforce::Meta;
use crate::http::respond::{self, Refusal};
use crate::http::{cookies, form, Gateway, RequestCtx};
use crate::session::dbtoken::{self, DbCode, DeviceLogin};
use crate::session::{Lifetime, Lookup, SessionId};
use pingora::proxy::Session;

pub const LOGIN_PATH: &str = "/.custos/db/login";
pub const DEVICE_PATH: &str = "/.custos/db/device";
pub const TOKEN_PATH: &str = "/.custos/db/token";

/// How often the command line polls a device login (seconds), as it is told.
const POLL_SECS: u64 = 2;

/// A database people may get a token for: its name, MFA rule and token lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    pub name: String,
    /// `None`: the site's `oidc.require_mfa`.
    pub require_mfa: Option<bool>,
    pub lifetime: Lifetime,
}

/// The databases of `cfg` (`[[databases]]`), as the sign-in needs them.
pub fn targets(cfg: &crate::config::Config) -> Vec<DbTarget> {
    let _ = cfg;
    Vec::new()
}

/// Why a step of a database sign-in was refused: its audit reason, status and what the
/// person (or the command line) is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRefusal {
    /// No such database (`db=`).
    Database,
    /// The redirect is not to a loopback listener with a numeric port.
    Loopback,
    /// A parameter is missing or malformed.
    Malformed,
    /// The verifier does not match the challenge.
    Verifier,
    /// The code is unknown, used or expired.
    Code,
    /// The device login is unknown, ended or expired.
    Device,
    /// Another browser session confirmed this device login already.
    DeviceConfirmed,
    /// The browser session does not have the multi-factor sign-in the database needs.
    Mfa,
    /// The browser session ended before the token was asked for.
    SessionEnded,
    /// The confirmation form was not the gateway's own page.
    Csrf,
    /// Too many refused attempts (or started logins) from this address this minute.
    Rate,
}

impl DbRefusal {
    /// Status, audit reason and message.
    pub fn parts(self) -> (u16, Code, &'static str) {
        match self {
            DbRefusal::Database => (404, Code::Database, "No database of that name is reachable through this gateway."),
            DbRefusal::Loopback => (
                400,
                Code::Loopback,
                "The sign-in can only return to a listener on this computer (127.0.0.1 or [::1], a numeric port). Start it again with `custos db login`.",
            ),
            DbRefusal::Malformed => (400, Code::Malformed, "The request is missing a part or has one that is malformed."),
            DbRefusal::Verifier => (
                400,
                Code::Verifier,
                "The proof from the command line does not match the sign-in it started. Run `custos db login` again.",
            ),
            DbRefusal::Code => (
                400,
                Code::AuthCode,
                "The sign-in code is unknown, expired or was already used. Run `custos db login` again.",
            ),
            DbRefusal::Device => (
                400,
                Code::Device,
                "This sign-in link expired or was already used. Run `custos db login` again to get a new one.",
            ),
            DbRefusal::DeviceConfirmed => (
                409,
                Code::DeviceConfirmed,
                "Someone else already confirmed this sign-in. If you did not start it, tell your security team.",
            ),
            DbRefusal::Mfa => (
                403,
                Code::Mfa,
                "This database needs a multi-factor sign-in, and your sign-in used one factor. Sign in again with your second factor.",
            ),
            DbRefusal::SessionEnded => (
                403,
                Code::SessionEnded,
                "Your browser session ended before the token was issued. Run `custos db login` again.",
            ),
            DbRefusal::Csrf => (
                403,
                Code::Csrf,
                "The confirmation did not come from this gateway's own page. Open the link again and confirm there.",
            ),
            DbRefusal::Rate => (
                429,
                Code::LoginRate,
                "Too many database sign-in attempts from your address. Wait a minute and try again.",
            ),
        }
    }
}

/// A loopback redirect, as the command line asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loopback {
    /// `127.0.0.1` or `[::1]`.
    pub host: &'static str,
    pub port: u16,
}

/// The loopback listener named by `host` (default `127.0.0.1`) and `port`: only the
/// loopback addresses, written as addresses (no name that DNS could answer), and a port
/// of digits only (no `@host`, no sign, no spaces).
pub fn loopback(host: Option<&str>, port: Option<&str>) -> Result<Loopback, DbRefusal> {
    let host = match host {
        None | Some("127.0.0.1") => "127.0.0.1",
        Some("[::1]" | "::1") => "[::1]",
        Some(_) => return Err(DbRefusal::Loopback),
    };
    let port = port
        .filter(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or(DbRefusal::Loopback)?;
    Ok(Loopback { host, port })
}

/// A `state` the command line made: what RFC 7636 allows a verifier, shorter.
fn is_state(s: &str) -> bool {
    (8..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A host name as the command line reports it: letters, digits, `.`, `-`, `_`.
fn is_host_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// A device login's code as the page shows it: `BCDF-GHJK`.
fn shown_code(c: &str) -> String {
    match c.len() {
        8 => format!("{}-{}", &c[..4], &c[4..]),
        _ => c.to_string(),
    }
}

/// The form token of a device login's confirmation: derived from the session id (only
/// the browser holds it) and the device login, so it fits that page in that browser only.
fn confirm_token(session_cookie: &str, device: &SessionId) -> String {
    crate::session::sha256_hex(format!("custos-db-login-form:{session_cookie}:{}", device.hash()).as_bytes())
}

fn client_of(session: &Session) -> Option<String> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string())
}

fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

impl Gateway {
    /// The database named `db=`, among those this gateway hands tokens out for.
    fn db_target(&self, params: &form::Fields) -> Option<&DbTarget> {
        let name = params.get("db")?;
        self.endpoints.databases.iter().find(|d| &d.name == name)
    }

    fn db_needs_mfa(&self, db: &DbTarget) -> bool {
        db.require_mfa.unwrap_or_else(|| self.auth().is_some_and(|a| a.settings.oidc.require_mfa))
    }

    /// Records a refusal (`db.login_refused`) and answers it: a page for the browser, JSON
    /// for the command line.
    fn db_refused(&self, session: &Session, ctx: &RequestCtx, db: Option<&str>, r: DbRefusal, html: bool) -> Reply {
        let (status, code, msg) = r.parts();
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::DbLoginRefused);
            ev.decision = Some(crate::audit::Decision::Deny);
            ev.reason = Some(code.into());
            ev.status = Some(status);
            ev.database = db.map(str::to_string);
            audit.append(ev);
        }
        tracing::info!(reason = code.as_str(), "database sign-in refused");
        if html {
            page(status, "Database sign-in refused", &format!("<p>{}</p>", esc(msg)))
        } else {
            Reply::json(status, &serde_json::json!({ "error": code.as_str(), "message": msg }))
        }
    }

    /// The person signed in in this browser with the MFA `db` needs, or the answer
    /// already given: sent to sign in (or step up) and back, or a refusal the access core
    /// recorded.
    async fn db_person(&self, session: &mut Session, ctx: &mut RequestCtx, db: &DbTarget) -> Result<Person, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        let need_mfa = self.db_needs_mfa(db);
        let outcome = {
            let head = session.req_header();
            let meta = Meta { session, ctx };
            // The session cookie only: a bearer token is no browser sign-in.
            let credentials = Presented {
                bearer: None,
                session: cookies::get(head, &auth.settings.session.cookie_name),
                password: None,
            };
            let req = access::Request {
                credentials,
                route: None,
                path: ctx.path.as_ref(),
                database: None,
                held: None,
                claimed_user: None,
                role: None,
                action: head.method.as_str(),
                client: "",
                objection: None,
                start: ctx.timings.start,
                status: respond::denial_status,
                meta: &meta,
            };
            self.access().authenticate(&req).await
        };
        let (principal, reauth) = match outcome {
            Ok(p) => (Some(p), None),
            // Short of the site's MFA rule only: the database's own rule decides below.
            Err(AccessDenial::SignIn(s)) if s.step_up && s.principal.is_some() => (s.principal, None),
            Err(AccessDenial::SignIn(s)) => (None, s.reauth),
            // Recorded by the access core: its page only.
            Err(d) => return Ok(Person::Answered(Reply::refusal(respond::refusal_of(&d)))),
        };
        match principal {
            Some(p) if !need_mfa || p.mfa => {
                ctx.principal = Some(p.clone());
                Ok(Person::Found(p))
            }
            Some(p) => {
                ctx.principal = Some(p);
                Box::pin(self.challenge(session, ctx, true, true, Some(auth.step_up_max_age()))).await?;
                Ok(Person::Answered(Reply::sent()))
            }
            None => {
                Box::pin(self.challenge(session, ctx, need_mfa, false, reauth)).await?;
                Ok(Person::Answered(Reply::sent()))
            }
        }
    }

    /// `/.custos/db/login`: the browser's part.
    pub(in crate::http) async fn db_login_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let post = session.req_header().method == http::Method::POST;
        let params = if post {
            match form::read(session).await {
                Ok(f) => f,
                Err(_) => return Ok(self.db_refused(session, ctx, None, DbRefusal::Malformed, true)),
            }
        } else {
            form::query(session.req_header())
        };
        let Some(db) = self.db_target(&params).cloned() else {
            return Ok(self.db_refused(session, ctx, None, DbRefusal::Database, true));
        };
        let name = Some(db.name.as_str());
        // The request is checked before anyone is asked to sign in: a bad link fails now.
        if let Some(device) = params.get("device") {
            let Some(id) = SessionId::parse(device) else {
                return Ok(self.db_refused(session, ctx, name, DbRefusal::Device, true));
            };
            let p = match self.db_person(session, ctx, &db).await? {
                Person::Found(p) => p,
                Person::Answered(reply) => return Ok(reply),
            };
            return self.db_device_page(session, ctx, &db, &id, &p, post.then_some(&params)).await;
        }
        if post {
            return Ok(self.db_refused(session, ctx, name, DbRefusal::Malformed, true));
        }
        let back = match loopback(params.get("host").map(String::as_str), params.get("port").map(String::as_str)) {
            Ok(l) => l,
            Err(r) => return Ok(self.db_refused(session, ctx, name, r, true)),
        };
        let (Some(challenge), Some(state)) =
            (params.get("challenge").filter(|c| dbtoken::is_challenge(c)), params.get("state").filter(|s| is_state(s)))
        else {
            return Ok(self.db_refused(session, ctx, name, DbRefusal::Malformed, true));
        };
        let p = match self.db_person(session, ctx, &db).await? {
            Person::Found(p) => p,
            Person::Answered(reply) => return Ok(reply),
        };
        let (Some(auth), Some(browser)) = (self.auth(), p.session_hash()) else {
            return Err(Denial::Refused(Refusal::Internal));
        };
        let Ok(code) = SessionId::generate() else { return Err(Denial::Refused(Refusal::Internal)) };
        let pending = DbCode { challenge: challenge.clone(), db: db.name.clone(), browser: browser.to_string() };
        if let Err(e) = auth.store.put_db_code(&code, &pending).await {
            tracing::warn!(error = %e, "session store unavailable; cannot keep a database sign-in code");
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
        }
        // RFC 8252 §7.3: the loopback address, never `localhost` (which a resolver or a
        // hosts file could point elsewhere).
        Ok(Reply::redirect(format!(
            "http://{}:{}/callback?code={}&state={}",
            back.host,
            back.port,
            code.cookie_value(),
            enc(state)
        )))
    }

    /// A device login's page (GET: the code, host name and address to compare) or its
    /// confirmation (POST, with the form's token).
    async fn db_device_page(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        db: &DbTarget,
        id: &SessionId,
        p: &Principal,
        confirm: Option<&form::Fields>,
    ) -> Result<Reply, Denial> {
        let (Some(auth), Some(browser)) = (self.auth(), p.session_hash()) else {
            return Err(Denial::Refused(Refusal::Internal));
        };
        let name = Some(db.name.as_str());
        let (login, confirmed) = match auth.store.device(id).await {
            Ok(Some((d, c))) if d.db == db.name => (d, c),
            Ok(_) => return Ok(self.db_refused(session, ctx, name, DbRefusal::Device, true)),
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        };
        let done = || {
            page(
                200,
                "Database sign-in confirmed",
                "<p>Your terminal receives its database token now. You can close this tab.</p>",
            )
        };
        match confirmed.as_deref() {
            Some(h) if h == browser => return Ok(done()),
            Some(_) => return Ok(self.db_refused(session, ctx, name, DbRefusal::DeviceConfirmed, true)),
            None => {}
        }
        let cookie = cookies::get(session.req_header(), &auth.settings.session.cookie_name).unwrap_or("").to_string();
        let token = confirm_token(&cookie, id);
        let Some(fields) = confirm else {
            let body = format!(
                "<p>Signed in as <b>{who}</b>. A command line asks for a token to the database <b>{db}</b> in your name.</p>\
                 <p>Confirm only if <b>you</b> started it, in your own terminal, and it shows exactly this:</p>\
                 <p style=\"font-size:2em\"><code>{code}</code></p>\
                 <p>on the computer <b>{host}</b> (the gateway saw it start from {client}).</p>\
                 <p>If someone sent you this link, or the code or computer differ, close this tab: confirming would give them your access.</p>\
                 <form method=\"post\" action=\"{LOGIN_PATH}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"db\" value=\"{db}\"><input type=\"hidden\" name=\"device\" value=\"{device}\">\
                 <button type=\"submit\" id=\"confirm\">My terminal shows {code} on {host}: give it a token</button></form>",
                who = esc(&p.user.subject),
                db = esc(&db.name),
                code = esc(&shown_code(&login.user_code)),
                host = esc(&login.host),
                client = esc(&login.client),
                device = esc(id.cookie_value()),
            );
            return Ok(page(200, "Confirm a database sign-in", &body));
        };
        if form::check_csrf(session.req_header(), fields, &cookie, &token, &auth.settings.oidc.origin).is_err() {
            return Ok(self.db_refused(session, ctx, name, DbRefusal::Csrf, true));
        }
        match auth.store.confirm_device(id, browser, auth.settings.oidc.login_timeout).await {
            Ok(true) => Ok(done()),
            // Another tab of this browser, or another session, was first.
            Ok(false) => match auth.store.device(id).await {
                Ok(Some((_, Some(h)))) if h == browser => Ok(done()),
                Ok(_) => Ok(self.db_refused(session, ctx, name, DbRefusal::DeviceConfirmed, true)),
                Err(_) => Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
            },
            Err(_) => Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        }
    }

    /// `POST /.custos/db/device`: starts a device login for the command line.
    pub(in crate::http) async fn db_device_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        if session.req_header().method != http::Method::POST {
            return Err(Denial::Refused(Refusal::MethodNotAllowed));
        }
        let Ok(params) = form::read(session).await else {
            return Ok(self.db_refused(session, ctx, None, DbRefusal::Malformed, false));
        };
        let Some(db) = self.db_target(&params).cloned() else {
            return Ok(self.db_refused(session, ctx, None, DbRefusal::Database, false));
        };
        let name = Some(db.name.as_str());
        let (Some(challenge), Some(host)) = (
            params.get("challenge").filter(|c| dbtoken::is_challenge(c)),
            params.get("host").filter(|h| is_host_name(h)),
        ) else {
            return Ok(self.db_refused(session, ctx, name, DbRefusal::Malformed, false));
        };
        // Each is a record in Redis, like a sign-in started: bounded the same way.
        let client = client_of(session).unwrap_or_else(|| "-".into());
        match auth.store.count_login(&client).await {
            Ok(n) if n > auth.settings.oidc.max_logins_per_minute => {
                return Ok(self.db_refused(session, ctx, name, DbRefusal::Rate, false));
            }
            Ok(_) => {}
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        }
        let (Ok(id), Ok(user_code)) = (SessionId::generate(), dbtoken::new_user_code()) else {
            return Err(Denial::Refused(Refusal::Internal));
        };
        let ttl = auth.settings.oidc.login_timeout;
        let login = DeviceLogin {
            challenge: challenge.clone(),
            db: db.name.clone(),
            user_code: user_code.clone(),
            host: host.clone(),
            client,
            started: crate::session::now_secs(),
        };
        if auth.store.put_device(&id, &login, ttl).await.is_err() {
            return Err(Denial::Refused(Refusal::SessionStoreUnavailable));
        }
        let url =
            format!("{}{LOGIN_PATH}?db={}&device={}", auth.settings.oidc.origin, enc(&db.name), id.cookie_value());
        Ok(Reply::json(
            200,
            &serde_json::json!({
                "device": id.cookie_value(), "user_code": user_code, "url": url,
                "expires_in": ttl.as_secs(), "interval": POLL_SECS,
            }),
        ))
    }

    /// `POST /.custos/db/token`: the token, for the verifier's holder.
    pub(in crate::http) async fn db_token_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Reply, Denial> {
        let Some(auth) = self.auth() else { return Err(Denial::Refused(Refusal::NoRoute)) };
        if session.req_header().method != http::Method::POST {
            return Err(Denial::Refused(Refusal::MethodNotAllowed));
        }
        let client = client_of(session).unwrap_or_else(|| "-".into());
        // Codes and verifiers cannot be guessed, but refusals are bounded anyway.
        match auth.store.db_refusals(&client).await {
            Ok(n) if n >= auth.settings.oidc.max_logins_per_minute => {
                return Ok(self.db_refused(session, ctx, None, DbRefusal::Rate, false));
            }
            Ok(_) => {}
            Err(_) => return Err(Denial::Refused(Refusal::SessionStoreUnavailable)),
        }
        let Ok(params) = form::read(session).await else {
            return Ok(self.db_refused(session, ctx, None, DbRefusal::Malformed, false));
        };
        match self.db_token(session, ctx, &params).await {
            Ok(reply) => Ok(reply),
            Err(TokenError::Denial(d)) => Err(d),
            Err(TokenError::Refused(r, db)) => {
                let _ = auth.store.count_db_refusal(&client).await;
                Ok(self.db_refused(session, ctx, db.as_deref(), r, false))
            }
        }
    }

    async fn db_token(&self, session: &Session, ctx: &RequestCtx, params: &form::Fields) -> Result<Reply, TokenError> {
        let Some(auth) = self.auth() else { return Err(TokenError::Denial(Denial::Refused(Refusal::NoRoute))) };
        let unavailable = || TokenError::Denial(Denial::Refused(Refusal::SessionStoreUnavailable));
        let verifier = params.get("verifier").map(String::as_str).unwrap_or("");
        let (db_name, browser, how) = if let Some(code) = params.get("code") {
            let code = SessionId::parse(code).ok_or(TokenError::Refused(DbRefusal::Code, None))?;
            // Taken before the verifier is checked: a code has one try.
            let c = auth.store.take_db_code(&code).await.map_err(|_| unavailable())?;
            let c = c.ok_or(TokenError::Refused(DbRefusal::Code, None))?;
            if !dbtoken::verifier_matches(verifier, &c.challenge) {
                return Err(TokenError::Refused(DbRefusal::Verifier, Some(c.db)));
            }
            (c.db, c.browser, Code::Loopback)
        } else if let Some(device) = params.get("device") {
            let id = SessionId::parse(device).ok_or(TokenError::Refused(DbRefusal::Device, None))?;
            let (d, confirmed) = auth
                .store
                .device(&id)
                .await
                .map_err(|_| unavailable())?
                .ok_or(TokenError::Refused(DbRefusal::Device, None))?;
            if !dbtoken::verifier_matches(verifier, &d.challenge) {
                // Whoever holds the URL but not the verifier ends the login: it was sent
                // somewhere it should not have been.
                let _ = auth.store.take_device(&id).await;
                return Err(TokenError::Refused(DbRefusal::Verifier, Some(d.db)));
            }
            let Some(browser) = confirmed else {
                return Ok(Reply::json(
                    400,
                    &serde_json::json!({ "error": "authorization_pending", "interval": POLL_SECS }),
                ));
            };
            if !auth.store.take_device(&id).await.map_err(|_| unavailable())? {
                return Err(TokenError::Refused(DbRefusal::Device, Some(d.db)));
            }
            (d.db, browser, Code::Device)
        } else {
            return Err(TokenError::Refused(DbRefusal::Malformed, None));
        };
        let Some(db) = self.endpoints.databases.iter().find(|d| d.name == db_name) else {
            return Err(TokenError::Refused(DbRefusal::Database, Some(db_name)));
        };
        let refuse = |r| TokenError::Refused(r, Some(db.name.clone()));
        let person = match auth.store.load_by_hash(&browser).await.map_err(|_| unavailable())? {
            Lookup::Active(s) if s.db.is_none() => s,
            _ => return Err(refuse(DbRefusal::SessionEnded)),
        };
        let mfa = auth.settings.oidc.mfa.satisfied(&person.amr, person.acr.as_deref());
        if self.db_needs_mfa(db) && !mfa {
            return Err(refuse(DbRefusal::Mfa));
        }
        let client = client_of(session);
        let max = auth.settings.session.max_per_user;
        let token = match auth.store.create_db_token(&person, &db.name, db.lifetime, client, max).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; cannot make a database token");
                return Err(unavailable());
            }
        };
        if let Some(audit) = &self.audit {
            let mut ev = self.auth_event(session, ctx, Kind::DbTokenIssued);
            ev.actor = Some(crate::http::auth::actor_of(&person));
            ev.session = Some(token.hash());
            ev.from_session = Some(browser.clone());
            ev.database = Some(db.name.clone());
            ev.mfa = Some(mfa);
            ev.reason = Some(how.into());
            ev.status = Some(200);
            audit.append(ev);
        }
        let now = crate::session::now_secs();
        Ok(Reply::json(
            200,
            &serde_json::json!({
                "token": token.cookie_value(),
                "user": person.subject,
                "database": db.name,
                "session": token.hash(),
                "idle_timeout_secs": db.lifetime.idle_secs,
                "expires_at": now + db.lifetime.absolute_secs,
            }),
        ))
    }
}

/// Who asked, or what they were answered instead.
enum Person {
    Found(Principal),
    Answered(Reply),
}

/// Why a token request got no token.
enum TokenError {
    /// A refusal of this flow, about this database when known.
    Refused(DbRefusal, Option<String>),
    /// The gateway cannot answer it (the session store is down).
    Denial(Denial),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_with_numeric_ports() {
        assert_eq!(loopback(None, Some("8123")), Ok(Loopback { host: "127.0.0.1", port: 8123 }));
        assert_eq!(loopback(Some("[::1]"), Some("65535")), Ok(Loopback { host: "[::1]", port: 65535 }));
        for (host, port) in [
            (Some("localhost"), Some("8123")),
            (Some("evil.example"), Some("8123")),
            (Some("127.0.0.2"), Some("8123")),
            (Some("127.0.0.1.evil.example"), Some("8123")),
            (None, Some("8123@evil.example")),
            (None, Some("80.evil.example")),
            (None, Some("+80")),
            (None, Some("0")),
            (None, Some("65536")),
            (None, Some("")),
            (None, None),
            (None, Some("123456")),
        ] {
            assert_eq!(loopback(host, port), Err(DbRefusal::Loopback), "{host:?} {port:?}");
        }
    }

    #[test]
    fn states_and_host_names_are_plain() {
        assert!(is_state("abcdefgh-_.~12"));
        assert!(!is_state("short"));
        assert!(!is_state("abcdefgh&x=1"));
        assert!(is_host_name("build-01.example.test"));
        assert!(!is_host_name("a<b>"));
        assert!(!is_host_name(""));
        assert_eq!(shown_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn the_confirmation_token_is_the_browsers_and_the_logins() {
        let (a, b) = (SessionId::generate().unwrap(), SessionId::generate().unwrap());
        assert_ne!(confirm_token("c1", &a), confirm_token("c2", &a));
        assert_ne!(confirm_token("c1", &a), confirm_token("c1", &b));
        assert_eq!(confirm_token("c1", &a), confirm_token("c1", &a));
    }

    #[test]
    fn every_refusal_has_its_own_reason() {
        let all = [
            DbRefusal::Database,
            DbRefusal::Loopback,
            DbRefusal::Malformed,
            DbRefusal::Verifier,
            DbRefusal::Code,
            DbRefusal::Device,
            DbRefusal::DeviceConfirmed,
            DbRefusal::Mfa,
            DbRefusal::SessionEnded,
            DbRefusal::Csrf,
            DbRefusal::Rate,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(|r| r.parts().1).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
