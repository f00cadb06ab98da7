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
use crate::audit::Kind;
use crate::http::breakglass::page::{esc, page};
use crate::http::enforce::Meta;
use crate::http::respond::{self, Refusal};
use crate::http::{cookies, form, Gateway, RequestCtx};
use crate::session::dbtoken::{self, DbCode};
use crate::session::{Lifetime, SessionId};
use pingora::proxy::Session;

mod device;
mod refusal;
mod token;

pub use refusal::DbRefusal;

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
    cfg.databases
        .iter()
        .map(|d| DbTarget {
            name: d.name.clone(),
            require_mfa: d.require_mfa,
            lifetime: Lifetime { idle_secs: d.idle_timeout.as_secs(), absolute_secs: d.absolute_timeout.as_secs() },
        })
        .collect()
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
            Some(p) if p.user.sealed => {
                ctx.principal = Some(p);
                Ok(Person::Answered(self.db_refused(session, ctx, Some(&db.name), DbRefusal::Sealed, true)))
            }
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
}

/// Who asked, or what they were answered instead.
enum Person {
    Found(Principal),
    Answered(Reply),
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
    fn states_are_plain() {
        assert!(is_state("abcdefgh-_.~12"));
        assert!(!is_state("short"));
        assert!(!is_state("abcdefgh&x=1"));
    }
}
