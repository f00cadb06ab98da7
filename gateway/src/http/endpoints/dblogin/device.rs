//! A database sign-in without a browser on the command line's machine: its start
//! (`POST /.custos/db/device`), and the page where the person compares the code, host
//! name and address with their terminal and confirms (`/.custos/db/login?device=…`, the
//! form's token bound to the browser session and to the login).

use super::{client_of, enc, DbRefusal, DbTarget, LOGIN_PATH, POLL_SECS};
use crate::access::Principal;
use crate::http::breakglass::page::{esc, page};
use crate::http::endpoints::{Denial, Reply};
use crate::http::respond::Refusal;
use crate::http::{cookies, form, Gateway, RequestCtx};
use crate::session::dbtoken::{self, DeviceLogin};
use crate::session::SessionId;
use pingora::proxy::Session;

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

impl Gateway {
    /// A device login's page (GET: the code, host name and address to compare) or its
    /// confirmation (POST, with the form's token).
    pub(super) async fn db_device_page(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_token_is_the_browsers_and_the_logins() {
        let (a, b) = (SessionId::generate().unwrap(), SessionId::generate().unwrap());
        assert_ne!(confirm_token("c1", &a), confirm_token("c2", &a));
        assert_ne!(confirm_token("c1", &a), confirm_token("c1", &b));
        assert_eq!(confirm_token("c1", &a), confirm_token("c1", &a));
    }

    #[test]
    fn host_names_are_plain_and_codes_are_grouped() {
        assert!(is_host_name("build-01.example.test"));
        assert!(!is_host_name("a<b>"));
        assert!(!is_host_name(""));
        assert_eq!(shown_code("BCDFGHJK"), "BCDF-GHJK");
    }
}
