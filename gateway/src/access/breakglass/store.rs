//! Break-glass records in Redis, in the keyspace `<session prefix>:bg:` of the
//! key-value layer: review records and their index, sealed links and their markers
//! (used, spent, issued), daily counters, and the shared schedule of grant ends with
//! the claims on them.

use super::review::Review;
use super::Grant;
use crate::session::{now_secs, sha256_hex, SessionError, SessionStore, Space};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a grant was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// Declared by a signed-in user.
    Declared,
    /// Made by a sealed link.
    Sealed,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Declared => "declared",
            GrantKind::Sealed => "sealed",
        }
    }
}

fn whole_route() -> String {
    super::WHOLE_ROUTE.to_string()
}

/// The review record: who, what, why (the text), and the auditor's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub subject: String,
    pub route: String,
    pub kind: GrantKind,
    pub started: u64,
    pub expires: u64,
    /// What the grant covers: `route`, or the path declared.
    #[serde(default = "whole_route")]
    pub scope: String,
    #[serde(default)]
    pub case_ref: Option<String>,
    pub justification: String,
    pub justification_sha256: String,
    pub justification_len: usize,
    /// SHA-256 of the session id.
    #[serde(default)]
    pub session: Option<String>,
    /// The administrator who issued the sealed link.
    #[serde(default)]
    pub issued_by: Option<String>,
    #[serde(default)]
    pub review: Option<Review>,
}

/// A sealed link, stored under the hash of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Link {
    pub user: String,
    pub route: String,
    pub ttl_secs: u64,
    pub expires: u64,
    /// Base32 TOTP secret the user must also answer with.
    #[serde(default)]
    pub totp: Option<String>,
    pub issued_by: String,
    pub issued_at: u64,
    /// Where the user lands (and what the policy was asked about at issue).
    #[serde(default)]
    pub path: Option<String>,
    /// The grant covers the whole route, not only `path`.
    #[serde(default)]
    pub whole_route: bool,
}

/// What using a sealed link found.
pub enum LinkState {
    Valid(Link),
    /// Used before: a second use (the link as it was).
    Used(Link),
    /// Spent by wrong TOTP codes (the link as it was).
    SpentByCodes(Link),
    /// Issued, not used, past its time.
    Expired,
    Unknown,
}

/// Keeps a used/issued marker this long after a link's own expiry (to tell a second use
/// or a late use from a forged token).
pub(super) const MARKER_SECS: u64 = 30 * 86_400;
/// How long a claim on a grant's end holds before another gateway may take it over.
const CLAIM_SECS: u64 = 60;
/// The sorted set of grant ends (score: unix seconds), shared by the gateways.
pub(super) const ENDS: &str = "ends";
/// A scheduled end's details outlive the grant by this much (gateways all down that long
/// still record it, with what the schedule holds).
const SCHEDULED_KEEP_SECS: u64 = 7 * 86_400;

/// Store operations (keys under `<session prefix>:bg:`).
pub struct Store<'a>(pub &'a SessionStore);

impl Store<'_> {
    /// The break-glass keyspace.
    pub(super) fn bg(&self) -> Space<'_> {
        self.0.kv().space("bg")
    }

    /// Counts a declaration by `subject` today (UTC); the count so far.
    pub async fn count_today(&self, subject: &str) -> Result<u64, SessionError> {
        let day = now_secs() / 86_400;
        self.bg().incr(&format!("day:{}:{day}", sha256_hex(subject.as_bytes())), Duration::from_secs(2 * 86_400)).await
    }

    pub async fn put_record(&self, r: &Record, retention: Duration) -> Result<(), SessionError> {
        let body = serde_json::to_string(r).map_err(|_| SessionError::Corrupt)?;
        self.bg().set(&format!("r:{}", r.id), &body, retention).await?;
        self.bg().index_add("reviews", r.started, &r.id).await?;
        // Records past their retention are gone from Redis; so are their index entries.
        self.bg().index_trim("reviews", r.started.saturating_sub(retention.as_secs())).await
    }

    pub async fn record(&self, id: &str) -> Result<Option<Record>, SessionError> {
        Ok(self.bg().get(&format!("r:{id}")).await?.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Every kept record, oldest first.
    pub async fn records(&self) -> Result<Vec<Record>, SessionError> {
        let mut out = Vec::new();
        for id in self.bg().index("reviews").await? {
            if let Some(r) = self.record(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Writes a review into a record, keeping its remaining time.
    pub async fn save_record(&self, r: &Record) -> Result<(), SessionError> {
        let body = serde_json::to_string(r).map_err(|_| SessionError::Corrupt)?;
        self.bg().replace(&format!("r:{}", r.id), &body).await
    }

    pub async fn put_link(&self, token_hash: &str, l: &Link) -> Result<(), SessionError> {
        let body = serde_json::to_string(l).map_err(|_| SessionError::Corrupt)?;
        self.bg().set(&format!("l:{token_hash}"), &body, Duration::from_secs(l.ttl_secs)).await?;
        self.bg().set(&format!("li:{token_hash}"), "1", Duration::from_secs(l.ttl_secs + MARKER_SECS)).await
    }

    /// Reads a link without using it.
    pub async fn link(&self, token_hash: &str) -> Result<LinkState, SessionError> {
        let bg = self.bg();
        if let Some(l) = bg.get(&format!("l:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::Valid(l));
            }
        }
        if let Some(l) = bg.get(&format!("lu:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::Used(l));
            }
        }
        if let Some(l) = bg.get(&format!("lf:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::SpentByCodes(l));
            }
        }
        if bg.get(&format!("li:{token_hash}")).await?.is_some() {
            return Ok(LinkState::Expired);
        }
        Ok(LinkState::Unknown)
    }

    /// Uses a link up: true for exactly one caller. The used marker keeps the link's
    /// user and route (for the alert on a second use).
    pub async fn consume_link(&self, token_hash: &str) -> Result<bool, SessionError> {
        let Some(body) = self.bg().take(&format!("l:{token_hash}")).await? else { return Ok(false) };
        self.bg().set(&format!("lu:{token_hash}"), &body, Duration::from_secs(MARKER_SECS)).await?;
        Ok(true)
    }

    /// Spends a link after too many wrong codes: true for exactly one caller (the one
    /// that alerts). The marker keeps the link as it was, so that a later presentation
    /// is told apart from a second use.
    pub async fn spend_link(&self, token_hash: &str) -> Result<bool, SessionError> {
        let Some(body) = self.bg().take(&format!("l:{token_hash}")).await? else { return Ok(false) };
        self.bg().set(&format!("lf:{token_hash}"), &body, Duration::from_secs(MARKER_SECS)).await?;
        Ok(true)
    }

    /// Counts a code try for a link; the count so far.
    pub async fn code_try(&self, token_hash: &str) -> Result<u64, SessionError> {
        self.bg().incr(&format!("lw:{token_hash}"), Duration::from_secs(MARKER_SECS)).await
    }

    /// True the first time a used link is presented again (one alert per link).
    pub async fn first_reuse(&self, token_hash: &str) -> Result<bool, SessionError> {
        Ok(self.bg().incr(&format!("lr:{token_hash}"), Duration::from_secs(MARKER_SECS)).await? == 1)
    }

    /// Puts a new grant's end on the shared schedule (what the sweep needs to record it
    /// without the session). Before the grant is given: a grant that could not be
    /// scheduled is not given.
    pub async fn schedule_end(&self, e: &Scheduled) -> Result<(), SessionError> {
        let body = serde_json::to_string(e).map_err(|_| SessionError::Corrupt)?;
        let ttl = e.expires.saturating_sub(now_secs()) + SCHEDULED_KEEP_SECS;
        self.bg().set(&format!("g:{}", e.grant), &body, Duration::from_secs(ttl)).await?;
        self.bg().index_add(ENDS, e.expires, &e.grant).await
    }

    /// What the schedule holds of grant `id`.
    pub async fn scheduled(&self, id: &str) -> Result<Option<Scheduled>, SessionError> {
        Ok(self.bg().get(&format!("g:{id}")).await?.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Up to `limit` grants due by `now`, soonest first.
    pub async fn due(&self, now: u64, limit: usize) -> Result<Vec<String>, SessionError> {
        self.bg().index_due(ENDS, now, limit).await
    }

    /// Claims the end of grant `id` for `why`: true for exactly one caller at a time,
    /// whichever end (expiry on any gateway, logout, revocation) comes first, and never
    /// once the end is recorded. The claim is short-lived: a claimer that dies or cannot
    /// make the record durable leaves it to a later sweep, so an end is never lost to a
    /// claim.
    pub async fn claim_end(&self, id: &str, why: super::GrantEnd) -> Result<bool, SessionError> {
        if self.bg().get(&format!("ended:{id}")).await?.is_some() {
            return Ok(false);
        }
        self.bg().set_once(&format!("end:{id}"), why.as_str(), Duration::from_secs(CLAIM_SECS)).await
    }

    /// The end of grant `id` is in the audit trail: no other claim is given, and the
    /// grant leaves the schedule.
    pub async fn ended(&self, id: &str) {
        if let Err(e) = self.bg().set(&format!("ended:{id}"), "1", Duration::from_secs(MARKER_SECS)).await {
            tracing::warn!(error = %e, grant = %id, "could not mark a grant's end as recorded");
        }
        self.unschedule(id).await;
    }

    /// Gives a claim back (the record could not be made durable): the sweep tries again.
    pub async fn release_end(&self, id: &str) {
        let _ = self.bg().del(&format!("end:{id}")).await;
    }

    /// Whether the end of grant `id` is already recorded.
    pub async fn is_ended(&self, id: &str) -> Result<bool, SessionError> {
        Ok(self.bg().get(&format!("ended:{id}")).await?.is_some())
    }

    /// Takes an ended (or never given) grant off the schedule.
    pub async fn unschedule(&self, id: &str) {
        let _ = self.bg().index_remove(ENDS, id).await;
        let _ = self.bg().del(&format!("g:{id}")).await;
    }
}

/// What the shared schedule keeps of a grant, to record its end without its session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scheduled {
    pub grant: String,
    pub subject: String,
    pub route: String,
    pub scope: String,
    /// SHA-256 of the session holding the grant.
    pub session: Option<String>,
    pub sealed: bool,
    pub expires: u64,
}

impl Scheduled {
    pub fn of(g: &Grant, subject: &str, session: Option<&str>) -> Scheduled {
        Scheduled {
            grant: g.id.clone(),
            subject: subject.to_string(),
            route: g.route.clone(),
            scope: g.scope_name(),
            session: session.map(str::to_string),
            sealed: g.sealed,
            expires: g.expires,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_kinds_are_stored_as_before() {
        for (k, s) in [(GrantKind::Declared, "declared"), (GrantKind::Sealed, "sealed")] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{s}\""));
            assert_eq!(k.as_str(), s);
            assert_eq!(serde_json::from_str::<GrantKind>(&format!("\"{s}\"")).unwrap(), k);
        }
    }
}
