//! Database sign-ins (`custos db login`): what is kept between the browser's sign-in and
//! the command line's request for its token, and the token itself. The token is a
//! session of its own ([`SessionStore::create_db_token`]): a [`SessionId`] whose record
//! copies the person from their browser session, names its database (`db`) and carries
//! the database's timeouts, so it is listed, counted, revoked and announced like any
//! session, and Redis holds it only by hash.
//!
//! Two ways to hand it over, both tied to a PKCE verifier only the command line holds
//! (RFC 7636, S256): a one-time code sent to the command line's loopback listener
//! (RFC 8252, [`DbCode`], 60 s, taken once), or a device login the person confirms on a
//! page that shows its code and host name ([`DeviceLogin`]), which the command line polls.
//! Every key is under a hash of its secret: `<prefix>:dbc:…` (codes), `<prefix>:dbd:…`
//! (device logins), `<prefix>:dbk:…` (their confirmations), `<prefix>:dbr:…` (refused
//! token requests per client address and minute).

use super::{now_secs, Lifetime, Session, SessionError, SessionId, SessionStore};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a one-time code lives (the command line redeems it at once).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// The letters of a device login's code: consonants only, none that look alike (RFC 8628
/// §6.1's base-20 set): no digits, no vowels, so no words and no 0/O or 1/I.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A one-time code, between the redirect to the loopback listener and its redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCode {
    /// `BASE64URL(SHA-256(verifier))`, as the command line sent it.
    pub challenge: String,
    pub db: String,
    /// SHA-256 (hex) of the browser session that signed in.
    pub browser: String,
}

/// A device login (`custos db login --no-browser`), between its start and its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLogin {
    pub challenge: String,
    pub db: String,
    /// The code the terminal shows (8 letters of [`USER_CODE_ALPHABET`]).
    pub user_code: String,
    /// The host name the command line gave.
    pub host: String,
    /// The address the command line started it from, as the gateway saw it.
    pub client: String,
    /// Unix seconds.
    pub started: u64,
}

/// `BASE64URL(SHA-256(verifier))`: the S256 challenge of a PKCE verifier.
pub fn s256(verifier: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// A verifier as RFC 7636 §4.1 has it: 43 to 128 unreserved characters.
pub fn is_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// An S256 challenge: 43 characters of base64url (a SHA-256, unpadded).
pub fn is_challenge(c: &str) -> bool {
    c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` is the one `challenge` was made from, compared in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier) && constant_time_eq::constant_time_eq(s256(verifier).as_bytes(), challenge.as_bytes())
}

/// A new device login code, 8 letters (about 34 bits: it is compared by a person, not
/// guessed against; the device id and the verifier are the secrets).
pub fn new_user_code() -> Result<String, SessionError> {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).map_err(|_| SessionError::Random)?;
    // 256 is not a multiple of 20: the bias (at most 6 in 256 per letter) does not
    // matter for a code a person compares.
    Ok(b.iter().map(|x| USER_CODE_ALPHABET[usize::from(*x) % USER_CODE_ALPHABET.len()] as char).collect())
}

impl SessionStore {
    /// Keeps a one-time code (by its hash) for [`CODE_TTL`].
    pub async fn put_db_code(&self, code: &SessionId, c: &DbCode) -> Result<(), SessionError> {
        let body = serde_json::to_string(c).map_err(|_| SessionError::Corrupt)?;
        self.kv().space("dbc").set_once(&code.hash(), &body, CODE_TTL).await.map(|_| ())
    }

    /// Takes a one-time code away: its record for the one caller that gets it.
    pub async fn take_db_code(&self, code: &SessionId) -> Result<Option<DbCode>, SessionError> {
        let raw = self.kv().space("dbc").take(&code.hash()).await?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| SessionError::Corrupt)).transpose()
    }

    /// Keeps a device login (by its id's hash) for `ttl`.
    pub async fn put_device(&self, id: &SessionId, d: &DeviceLogin, ttl: Duration) -> Result<(), SessionError> {
        let body = serde_json::to_string(d).map_err(|_| SessionError::Corrupt)?;
        self.kv().space("dbd").set_once(&id.hash(), &body, ttl).await.map(|_| ())
    }

    /// A device login in progress, and the hash of the browser session that confirmed
    /// it, once one has.
    pub async fn device(&self, id: &SessionId) -> Result<Option<(DeviceLogin, Option<String>)>, SessionError> {
        let h = id.hash();
        let Some(raw) = self.kv().space("dbd").get(&h).await? else { return Ok(None) };
        let d: DeviceLogin = serde_json::from_str(&raw).map_err(|_| SessionError::Corrupt)?;
        let confirmed = self.kv().space("dbk").get(&h).await?;
        Ok(Some((d, confirmed)))
    }

    /// Records that the browser session `browser` (its hash) confirmed a device login:
    /// true for the first confirmation only, which no later one replaces.
    pub async fn confirm_device(&self, id: &SessionId, browser: &str, ttl: Duration) -> Result<bool, SessionError> {
        self.kv().space("dbk").set_once(&id.hash(), browser, ttl).await
    }

    /// Ends a device login (its token was handed over, or it was refused): true for the
    /// one caller that ended it.
    pub async fn take_device(&self, id: &SessionId) -> Result<bool, SessionError> {
        let h = id.hash();
        let taken = self.kv().space("dbd").take(&h).await?.is_some();
        self.kv().space("dbk").del(&h).await?;
        Ok(taken)
    }

    /// Counts a refused token request from `client` this minute; the count so far.
    pub async fn count_db_refusal(&self, client: &str) -> Result<u64, SessionError> {
        let name = format!("{client}:{}", now_secs() / 60);
        self.kv().space("dbr").incr(&name, Duration::from_secs(120)).await
    }

    /// How many token requests from `client` were refused this minute.
    pub async fn db_refusals(&self, client: &str) -> Result<u64, SessionError> {
        let name = format!("{client}:{}", now_secs() / 60);
        Ok(self.kv().space("dbr").get(&name).await?.and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    /// Makes a database token for `db` from the person's browser session: a session of
    /// its own (the person, their sign-in methods and the provider's session, so the
    /// provider's back-channel logout ends it too), with the database's `lifetime`,
    /// counted in `max_per_user`. The browser session is left as it is.
    pub async fn create_db_token(
        &self,
        browser: &Session,
        db: &str,
        lifetime: Lifetime,
        client: Option<String>,
        max_per_user: Option<usize>,
    ) -> Result<SessionId, SessionError> {
        let record = Session {
            subject: browser.subject.clone(),
            email: browser.email.clone(),
            name: browser.name.clone(),
            groups: browser.groups.clone(),
            amr: browser.amr.clone(),
            acr: browser.acr.clone(),
            auth_time: browser.auth_time,
            created: 0,
            last_seen: 0,
            client,
            sid: browser.sid.clone(),
            idp_sub: browser.idp_sub.clone(),
            validated: 0,
            breakglass: None,
            sealed: false,
            db: Some(db.to_string()),
            lifetime: Some(lifetime),
        };
        self.create(record, max_per_user, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_is_rfc_7636s_example() {
        // RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        // Too short to be a verifier, whatever it hashes to.
        assert!(!verifier_matches("abc", &s256("abc")));
        assert!(is_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="));
        assert!(!is_challenge("short"));
    }

    #[test]
    fn user_codes_use_the_unambiguous_letters() {
        let a = new_user_code().unwrap();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{a}");
        assert!((0..20).map(|_| new_user_code().unwrap()).any(|b| b != a), "codes repeat");
    }
}
