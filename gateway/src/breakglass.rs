//! Break-glass emergency access: declared emergencies (a signed-in user with MFA whose
//! policy allows the gateway action `custos:breakglass` on a route states why and gets a time-bound
//! grant during which the policy sees `breakglass = true`), sealed links for when the
//! identity provider is down (single use, 256-bit token stored as a hash, optional TOTP),
//! real-time alerts, and a review queue. The justification may hold PHI: it lives only in
//! the review record in Redis; audit records and alerts carry its SHA-256 and length.

use crate::audit::{Audit, Event, Kind};
use crate::secret::Secret;
use crate::session::{sha256_hex, SessionStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// `[breakglass]`, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default: Duration,
    pub max: Duration,
    pub justification_max: usize,
    pub max_per_day: u64,
    pub retention: Duration,
    pub audit_justification: bool,
    /// The policy domain the review page's `custos:review` check is made in.
    pub review_domain: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    Slack,
    Json,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub url: String,
    pub format: AlertFormat,
    pub secret: Option<Secret>,
}

/// An emergency grant, held on the session it was given to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub route: String,
    /// Unix seconds.
    pub expires: u64,
    /// Made by a sealed link (the session exists only for the grant).
    #[serde(default)]
    pub sealed: bool,
}

/// The review record: who, what, why (the text), and the auditor's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub subject: String,
    pub route: String,
    /// `declared` or `sealed`.
    pub kind: String,
    pub started: u64,
    pub expires: u64,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    /// `justified` or `unjustified`.
    pub verdict: String,
    pub reviewer: String,
    pub note: String,
    pub at: u64,
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
}

/// What using a sealed link found.
pub enum LinkState {
    Valid(Link),
    /// Used before: a second use (the link as it was).
    Used(Link),
    /// Issued, not used, past its time.
    Expired,
    Unknown,
}

/// Keeps a used/issued marker this long after a link's own expiry (to tell a second use
/// or a late use from a forged token).
const MARKER_SECS: u64 = 30 * 86_400;

/// Store operations (keys under `<session prefix>:bg:`).
pub struct Store<'a>(pub &'a SessionStore);

impl Store<'_> {
    /// Counts a declaration by `subject` today (UTC); the count so far.
    pub async fn count_today(&self, subject: &str) -> Result<u64, crate::session::SessionError> {
        let day = crate::session::now_secs() / 86_400;
        self.0.bg_incr(&format!("day:{}:{day}", sha256_hex(subject.as_bytes())), Duration::from_secs(2 * 86_400)).await
    }

    pub async fn put_record(&self, r: &Record, retention: Duration) -> Result<(), crate::session::SessionError> {
        let body = serde_json::to_string(r).map_err(|_| crate::session::SessionError::Corrupt)?;
        self.0.bg_set(&format!("r:{}", r.id), &body, retention).await?;
        self.0.bg_index_add("reviews", r.started, &r.id).await?;
        // Records past their retention are gone from Redis; so are their index entries.
        self.0.bg_index_trim("reviews", r.started.saturating_sub(retention.as_secs())).await
    }

    pub async fn record(&self, id: &str) -> Result<Option<Record>, crate::session::SessionError> {
        Ok(self.0.bg_get(&format!("r:{id}")).await?.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Every kept record, oldest first.
    pub async fn records(&self) -> Result<Vec<Record>, crate::session::SessionError> {
        let mut out = Vec::new();
        for id in self.0.bg_index("reviews").await? {
            if let Some(r) = self.record(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Writes a review into a record, keeping its remaining time.
    pub async fn save_record(&self, r: &Record) -> Result<(), crate::session::SessionError> {
        let body = serde_json::to_string(r).map_err(|_| crate::session::SessionError::Corrupt)?;
        self.0.bg_replace(&format!("r:{}", r.id), &body).await
    }

    pub async fn put_link(&self, token_hash: &str, l: &Link) -> Result<(), crate::session::SessionError> {
        let body = serde_json::to_string(l).map_err(|_| crate::session::SessionError::Corrupt)?;
        self.0.bg_set(&format!("l:{token_hash}"), &body, Duration::from_secs(l.ttl_secs)).await?;
        self.0.bg_set(&format!("li:{token_hash}"), "1", Duration::from_secs(l.ttl_secs + MARKER_SECS)).await
    }

    /// Reads a link without using it.
    pub async fn link(&self, token_hash: &str) -> Result<LinkState, crate::session::SessionError> {
        if let Some(l) = self.0.bg_get(&format!("l:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::Valid(l));
            }
        }
        if let Some(l) = self.0.bg_get(&format!("lu:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::Used(l));
            }
        }
        if self.0.bg_get(&format!("li:{token_hash}")).await?.is_some() {
            return Ok(LinkState::Expired);
        }
        Ok(LinkState::Unknown)
    }

    /// Uses a link up: true for exactly one caller. The used marker keeps the link's
    /// user and route (for the alert on a second use).
    pub async fn consume_link(&self, token_hash: &str) -> Result<bool, crate::session::SessionError> {
        let Some(body) = self.0.bg_take(&format!("l:{token_hash}")).await? else { return Ok(false) };
        self.0.bg_set(&format!("lu:{token_hash}"), &body, Duration::from_secs(MARKER_SECS)).await?;
        Ok(true)
    }

    /// Counts a code try for a link; the count so far.
    pub async fn code_try(&self, token_hash: &str) -> Result<u64, crate::session::SessionError> {
        self.0.bg_incr(&format!("lw:{token_hash}"), Duration::from_secs(MARKER_SECS)).await
    }

    /// True the first time a used link is presented again (one alert per link).
    pub async fn first_reuse(&self, token_hash: &str) -> Result<bool, crate::session::SessionError> {
        Ok(self.0.bg_incr(&format!("lr:{token_hash}"), Duration::from_secs(MARKER_SECS)).await? == 1)
    }
}

/// Why a review was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum ReviewError {
    BadVerdict,
    BadNote,
    NoSuchGrant,
    /// The reviewer used or issued this emergency access.
    OwnUse,
    AlreadyReviewed,
    Unavailable,
}

impl ReviewError {
    pub fn status(&self) -> u16 {
        match self {
            ReviewError::BadVerdict | ReviewError::BadNote => 400,
            ReviewError::NoSuchGrant => 404,
            ReviewError::OwnUse => 403,
            ReviewError::AlreadyReviewed => 409,
            ReviewError::Unavailable => 503,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ReviewError::BadVerdict => "the verdict is justified or unjustified",
            ReviewError::BadNote => "a note of 1 to 4000 characters is needed",
            ReviewError::NoSuchGrant => "no such grant",
            ReviewError::OwnUse => "nobody may review an emergency access they used or issued",
            ReviewError::AlreadyReviewed => "already reviewed",
            ReviewError::Unavailable => "the session store is unreachable",
        }
    }
}

/// The person behind an administrator name or an IdP subject: case aside, and `alice`
/// is `alice@hospital.org`.
pub fn person(a: &str) -> String {
    a.trim().split('@').next().unwrap_or("").to_ascii_lowercase()
}

/// Records `reviewer`'s verdict on grant `id` (once; never on their own use).
pub async fn review(
    store: &Store<'_>,
    id: &str,
    reviewer: &str,
    verdict: &str,
    note: &str,
) -> Result<Record, ReviewError> {
    if verdict != "justified" && verdict != "unjustified" {
        return Err(ReviewError::BadVerdict);
    }
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 4000 {
        return Err(ReviewError::BadNote);
    }
    // One reviewer at a time per grant: the second finds it reviewed.
    let lock = format!("bg-review:{id}");
    if !store.0.lock(&lock, Duration::from_secs(10)).await.map_err(|_| ReviewError::Unavailable)? {
        return Err(ReviewError::AlreadyReviewed);
    }
    let result = async {
        let mut r = store.record(id).await.map_err(|_| ReviewError::Unavailable)?.ok_or(ReviewError::NoSuchGrant)?;
        let same = |a: &str| person(a) == person(reviewer);
        if same(&r.subject) || r.issued_by.as_deref().is_some_and(same) {
            return Err(ReviewError::OwnUse);
        }
        if r.review.is_some() {
            return Err(ReviewError::AlreadyReviewed);
        }
        r.review = Some(Review {
            verdict: verdict.to_string(),
            reviewer: reviewer.to_string(),
            note: note.to_string(),
            at: crate::session::now_secs(),
        });
        store.save_record(&r).await.map_err(|_| ReviewError::Unavailable)?;
        Ok(r)
    }
    .await;
    store.0.unlock(&lock).await;
    result
}

/// A new random token, 256 bits, URL-safe base64.
pub fn new_token() -> Result<String, String> {
    use base64::Engine;
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| "no randomness".to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A new TOTP secret (160 bits, base32).
pub fn new_totp_secret() -> Result<String, String> {
    let mut b = [0u8; 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| "no randomness".to_string())?;
    Ok(totp(&b).get_secret_base32())
}

fn totp(secret: &[u8]) -> totp_rs::TOTP {
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec())
}

/// Checks a TOTP code (RFC 6238, SHA-1, 6 digits, 30 s, one step of skew) in constant
/// time.
pub fn totp_ok(secret_base32: &str, code: &str) -> bool {
    let Some(secret) = totp_rs::Secret::Encoded(secret_base32.to_string()).to_bytes().ok() else { return false };
    totp(&secret).check(code.trim(), crate::session::now_secs())
}

/// The form token for a session: derived from the session id (which only the browser
/// and nobody else holds), so a cross-site page cannot make one.
pub fn csrf_token(session_cookie_value: &str) -> String {
    sha256_hex(format!("custos-breakglass-form:{session_cookie_value}").as_bytes())
}

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    constant_time_eq::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// What an alert says. No PHI: who, which route, when, the grant, the case reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `breakglass.started`, `breakglass.link_used`, `breakglass.link_reused`.
    pub event: String,
    pub who: String,
    pub route: String,
    /// RFC 3339.
    pub when: String,
    pub grant: Option<String>,
    pub case_ref: Option<String>,
    pub expires: Option<u64>,
    pub justification_sha256: Option<String>,
    pub justification_len: Option<usize>,
    /// Only with `audit_justification = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// Signs an alert body as Custos does: `x-custos-signature: v1=<hex HMAC-SHA256(secret,
/// "v1:" + timestamp + ":" + body)>` with the timestamp in `x-custos-timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("v1:{timestamp}:").as_bytes());
    ctx.update(body);
    format!("v1={}", crate::session::hex_lower(ctx.sign().as_ref()))
}

pub(crate) fn slack_text(e: &AlertEvent) -> String {
    let what = match e.event.as_str() {
        "breakglass.link_used" => "Sealed emergency link used",
        "breakglass.link_reused" => "SECOND USE of a sealed emergency link refused",
        _ => "Break-glass emergency access started",
    };
    let mut t = format!(":rotating_light: *{what}*: `{}` on route `{}` at {}", e.who, e.route, e.when);
    if let Some(g) = &e.grant {
        t.push_str(&format!(", grant `{g}`"));
    }
    if let Some(c) = &e.case_ref {
        t.push_str(&format!(", case `{c}`"));
    }
    t
}

/// Queues `e` for every configured receiver, durably: a `breakglass.alert` record on
/// the audit spool (written with the next group commit), which each receiver's alert
/// sink ([`crate::audit::sinks::alert`]) delivers, signed, retried until taken, across
/// restarts and receiver outages.
pub fn alert(settings: &Arc<Settings>, e: AlertEvent, audit: Option<Audit>) {
    if settings.alerts.is_empty() {
        return;
    }
    let Some(audit) = audit else {
        // Config refuses [breakglass] without the audit trail; never silently.
        tracing::error!(grant = ?e.grant, "ALERT: a break-glass alert cannot be queued: the audit trail is off");
        return;
    };
    let mut ev = Event::new(Kind::BreakglassAlert);
    ev.target = Some(e.who.clone());
    ev.route = Some(e.route.clone());
    ev.grant = e.grant.clone();
    ev.case_ref = e.case_ref.clone();
    ev.reason = Some(e.event.clone());
    ev.alert = serde_json::to_value(&e).ok();
    audit.append(ev);
}
