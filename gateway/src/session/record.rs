//! What a session record holds ([`Session`]), what re-validation keeps beside it
//! ([`Revalidation`]), and the judgement of a record against the idle timeout and the
//! absolute lifetime ([`judge`]), on the server's clock.

use super::grant::Grant;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a session knows about its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub subject: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub acr: Option<String>,
    /// Unix seconds of the authentication at the IdP.
    #[serde(default)]
    pub auth_time: Option<u64>,
    /// Unix seconds.
    pub created: u64,
    pub last_seen: u64,
    #[serde(default)]
    pub client: Option<String>,
    /// The provider's session id (`sid` claim), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The provider's `sub` (may differ from `subject`), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sub: Option<String>,
    /// When the session is next due for a check with the provider: unix seconds of the
    /// last check or attempt (0: at creation). A hint only: the refresh token and the
    /// authoritative time live in their own key, which a last-seen write cannot undo.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validated: u64,
    /// An emergency grant held by this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<Grant>,
    /// Made by a sealed emergency link: the session lives only as long as its grant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// A database token (`custos db login`): the name of the database it reaches. Such a
    /// session is a credential for that database only, never a browser's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// The record's own idle timeout and absolute lifetime (a database token has its
    /// database's); without them the store's apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Lifetime>,
}

/// A session's own timeouts, in seconds, kept in its record so that every gateway judges
/// it the same way whatever its own `[session]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetime {
    pub idle_secs: u64,
    pub absolute_secs: u64,
}

impl Session {
    /// The idle timeout and absolute lifetime (seconds) that apply to this record: its
    /// own, else the store's.
    pub fn limits(&self, t: &Timeouts) -> (u64, u64) {
        match self.lifetime {
            Some(l) => (l.idle_secs, l.absolute_secs),
            None => (t.idle.as_secs(), t.absolute.as_secs()),
        }
    }
}

/// What re-validation keeps per session, in its own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revalidation {
    /// Useless without the client secret, which Redis never holds.
    pub refresh_token: RefreshToken,
    /// Unix seconds of the last successful check.
    pub validated: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A refresh token; `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshToken(pub String);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(..)")
    }
}

/// Why a session could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Shared with the session cache: never copied per request.
    Active(std::sync::Arc<Session>),
    /// No such session (never existed, logged out, or its TTL ran out).
    Missing,
    /// Idle longer than the idle timeout: automatic logoff.
    IdleTimeout(Box<Session>),
    /// Older than the absolute lifetime.
    Expired(Box<Session>),
}

pub use crate::config::session::Timeouts;

/// How long a record stays in Redis past its end: long enough for the next request to
/// find it and record *why* it ended (idle or expired); it is never accepted then.
pub const ENDED_GRACE_SECS: u64 = 300;

/// The decision on a stored record at time `now`, and the TTL it has left. A record with
/// its own [`Lifetime`] is judged by it, not by `t`.
pub fn judge(s: &Session, now: u64, t: &Timeouts) -> (Option<Lookup>, u64) {
    let (idle, absolute) = s.limits(t);
    let absolute_end = s.created + absolute;
    let idle_end = s.last_seen + idle;
    if now >= absolute_end {
        return (Some(Lookup::Expired(Box::new(s.clone()))), 0);
    }
    if now >= idle_end {
        return (Some(Lookup::IdleTimeout(Box::new(s.clone()))), 0);
    }
    (None, absolute_end.min(idle_end) - now)
}

#[cfg(test)]
impl Session {
    /// A bare record of `subject` (no groups, no MFA), for tests.
    pub(crate) fn test(subject: &str, created: u64, last_seen: u64) -> Session {
        Session {
            subject: subject.into(),
            email: None,
            name: None,
            groups: vec![],
            amr: vec![],
            acr: None,
            auth_time: None,
            created,
            last_seen,
            client: None,
            sid: None,
            idp_sub: None,
            validated: 0,
            breakglass: None,
            sealed: false,
            db: None,
            lifetime: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn s(created: u64, last_seen: u64) -> Session {
        Session::test("u", created, last_seen)
    }

    #[test]
    fn idle_and_absolute_limits() {
        let t = Timeouts {
            idle: Duration::from_secs(900),
            absolute: Duration::from_secs(43_200),
            touch_interval: Duration::from_secs(60),
        };
        assert_eq!(judge(&s(0, 0), 899, &t), (None, 1));
        assert!(matches!(judge(&s(0, 0), 900, &t).0, Some(Lookup::IdleTimeout(_))));
        assert!(matches!(judge(&s(0, 43_000), 43_200, &t).0, Some(Lookup::Expired(_))));
        // The TTL never outlives the absolute end.
        assert_eq!(judge(&s(0, 43_000), 43_100, &t), (None, 100));
    }

    #[test]
    fn a_record_with_its_own_lifetime_is_judged_by_it() {
        let t = Timeouts {
            idle: Duration::from_secs(900),
            absolute: Duration::from_secs(43_200),
            touch_interval: Duration::from_secs(60),
        };
        let mut own = s(0, 0);
        own.lifetime = Some(Lifetime { idle_secs: 60, absolute_secs: 3_600 });
        assert_eq!(judge(&own, 59, &t), (None, 1));
        assert!(matches!(judge(&own, 60, &t).0, Some(Lookup::IdleTimeout(_))), "the store's 900 s applied");
        own.last_seen = 3_590;
        assert!(matches!(judge(&own, 3_600, &t).0, Some(Lookup::Expired(_))), "the store's 12 h applied");
        // Longer than the store's too.
        own.lifetime = Some(Lifetime { idle_secs: 2_000, absolute_secs: 50_000 });
        own.last_seen = 43_000;
        assert_eq!(judge(&own, 43_300, &t), (None, 1_700));
        // Round trip: a record without them reads back without them.
        let plain: Session = serde_json::from_str(&serde_json::to_string(&s(1, 1)).unwrap()).unwrap();
        assert_eq!(plain.lifetime, None);
        assert_eq!(plain.db, None);
        let back: Session = serde_json::from_str(&serde_json::to_string(&own).unwrap()).unwrap();
        assert_eq!(back, own);
    }
}
