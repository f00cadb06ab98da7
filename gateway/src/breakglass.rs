//! Break-glass emergency access: declared emergencies (a signed-in user with MFA whose
//! policy allows the gateway action `custos:breakglass` on a route states why and gets a time-bound
//! grant during which the policy sees `breakglass = true`), sealed links for when the
//! identity provider is down (single use, 256-bit token stored as a hash, optional TOTP),
//! real-time alerts, and a review queue. The justification may hold PHI: it lives only in
//! the review record in Redis; audit records and alerts carry its SHA-256 and length.
//!
//! A grant covers what was declared: the record at a path (and what is below it), or the
//! whole route when the person chose so. Its end is recorded exactly once across the
//! gateways sharing the Redis: every end (expiry, logout, revocation, …) first claims the
//! grant with `SET NX`, and expiries are found on time without a further request, by a
//! timer in the gateway that made the grant and by a sweep of a sorted set of grant ends
//! that every gateway runs each second (so a grant whose gateway died still ends on the
//! record).

use crate::audit::{Actor, Audit, Event, Kind};
use crate::session::{now_secs, sha256_hex, SessionStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::breakglass::{Alert, AlertFormat, Settings};

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
    /// The path declared (the grant covers it and what is below it); `None`: the whole
    /// route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The scope of a grant covering the whole route, as records and alerts name it.
pub const WHOLE_ROUTE: &str = "route";

impl Grant {
    /// Whether a request for `path` (normalised, as the client sent it) on `route` runs
    /// under this grant.
    pub fn covers(&self, route: &str, path: &str) -> bool {
        self.route == route && self.scope.as_deref().is_none_or(|p| within(p, path))
    }

    /// `route`, or the path declared.
    pub fn scope_name(&self) -> String {
        self.scope.clone().unwrap_or_else(|| WHOLE_ROUTE.to_string())
    }
}

/// Whether `path` is `base` or below it, by whole segments (`/patients/1` holds
/// `/patients/1/notes`, not `/patients/10`).
pub fn within(base: &str, path: &str) -> bool {
    let b = base.trim_end_matches('/');
    b.is_empty() || path == b || path.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

fn whole_route() -> String {
    WHOLE_ROUTE.to_string()
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
const MARKER_SECS: u64 = 30 * 86_400;
/// How long a claim on a grant's end holds before another gateway may take it over.
const CLAIM_SECS: u64 = 60;

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
        if let Some(l) = self.0.bg_get(&format!("lf:{token_hash}")).await? {
            if let Ok(l) = serde_json::from_str(&l) {
                return Ok(LinkState::SpentByCodes(l));
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

    /// Spends a link after too many wrong codes: true for exactly one caller (the one
    /// that alerts). The marker keeps the link as it was, so that a later presentation
    /// is told apart from a second use.
    pub async fn spend_link(&self, token_hash: &str) -> Result<bool, crate::session::SessionError> {
        let Some(body) = self.0.bg_take(&format!("l:{token_hash}")).await? else { return Ok(false) };
        self.0.bg_set(&format!("lf:{token_hash}"), &body, Duration::from_secs(MARKER_SECS)).await?;
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

    /// Puts a new grant's end on the shared schedule (what the sweep needs to record it
    /// without the session). Before the grant is given: a grant that could not be
    /// scheduled is not given.
    pub async fn schedule_end(&self, e: &Scheduled) -> Result<(), crate::session::SessionError> {
        let body = serde_json::to_string(e).map_err(|_| crate::session::SessionError::Corrupt)?;
        let ttl = e.expires.saturating_sub(now_secs()) + SCHEDULED_KEEP_SECS;
        self.0.bg_set(&format!("g:{}", e.grant), &body, Duration::from_secs(ttl)).await?;
        self.0.bg_index_add(ENDS, e.expires, &e.grant).await
    }

    /// Claims the end of grant `id` for `why`: true for exactly one caller at a time,
    /// whichever end (expiry on any gateway, logout, revocation) comes first, and never
    /// once the end is recorded. The claim is short-lived: a claimer that dies or cannot
    /// make the record durable leaves it to a later sweep, so an end is never lost to a
    /// claim.
    pub async fn claim_end(&self, id: &str, why: &str) -> Result<bool, crate::session::SessionError> {
        if self.0.bg_get(&format!("ended:{id}")).await?.is_some() {
            return Ok(false);
        }
        self.0.bg_set_once(&format!("end:{id}"), why, Duration::from_secs(CLAIM_SECS)).await
    }

    /// The end of grant `id` is in the audit trail: no other claim is given, and the
    /// grant leaves the schedule.
    pub async fn ended(&self, id: &str) {
        if let Err(e) = self.0.bg_set(&format!("ended:{id}"), "1", Duration::from_secs(MARKER_SECS)).await {
            tracing::warn!(error = %e, grant = %id, "could not mark a grant's end as recorded");
        }
        self.unschedule(id).await;
    }

    /// Gives a claim back (the record could not be made durable): the sweep tries again.
    pub async fn release_end(&self, id: &str) {
        let _ = self.0.bg_del(&format!("end:{id}")).await;
    }

    /// Whether the end of grant `id` is already recorded.
    pub async fn is_ended(&self, id: &str) -> Result<bool, crate::session::SessionError> {
        Ok(self.0.bg_get(&format!("ended:{id}")).await?.is_some())
    }

    /// Takes an ended (or never given) grant off the schedule.
    pub async fn unschedule(&self, id: &str) {
        let _ = self.0.bg_index_remove(ENDS, id).await;
        let _ = self.0.bg_del(&format!("g:{id}")).await;
    }
}

/// The sorted set of grant ends (score: unix seconds), shared by the gateways.
const ENDS: &str = "ends";
/// A scheduled end's details outlive the grant by this much (gateways all down that long
/// still record it, with what the schedule holds).
const SCHEDULED_KEEP_SECS: u64 = 7 * 86_400;
/// The most grant ends one sweep records (the rest, the next second).
const SWEEP_BATCH: usize = 100;

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

/// Records a grant's end (`ev`, a `breakglass.ended` with its `grant` and `reason`) if
/// this is the first end claimed for it; in a task of its own (the claim is a Redis
/// round trip). Without Redis the end is recorded anyway: a second record of an end is
/// better than none.
pub fn record_end(store: Option<SessionStore>, audit: Option<Audit>, ev: Event) {
    let Some(id) = ev.grant.clone() else { return };
    tokio::spawn(async move {
        let why = ev.reason.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default();
        if let Some(store) = &store {
            let st = Store(store);
            match st.claim_end(&id, &why).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, grant = %id, "could not claim a grant's end; recording it anyway");
                    if let Some(a) = audit {
                        a.append(ev);
                    }
                    return;
                }
            }
        }
        tracing::warn!(grant = %id, route = ?ev.route, why = %why, "break-glass grant ended");
        let durable = match &audit {
            Some(a) => a.append_durable(ev).await.map(|_| ()).map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Some(store) = &store {
            let st = Store(store);
            match durable {
                Ok(()) => st.ended(&id).await,
                Err(e) => {
                    tracing::error!(error = %e, grant = %id, "ALERT: the end of a break-glass grant is not durable yet; the sweep records it again");
                    st.release_end(&id).await;
                }
            }
        }
    });
}

/// Ends a grant found due on the schedule, if no other end was claimed first: its
/// sealed session goes with it, and `breakglass.ended` (`expired`, or how its session
/// ended before) is made durable.
async fn expire(store: &SessionStore, audit: Option<&Audit>, id: &str) -> Result<(), crate::session::SessionError> {
    let st = Store(store);
    let scheduled: Option<Scheduled> =
        store.bg_get(&format!("g:{id}")).await?.and_then(|b| serde_json::from_str(&b).ok());
    if st.is_ended(id).await? {
        st.unschedule(id).await;
        return Ok(());
    }
    let why = ended_why(store, scheduled.as_ref()).await;
    if !st.claim_end(id, why).await? {
        // Another gateway or end path holds the claim: it records the end, or gives the
        // claim back for a later sweep.
        return Ok(());
    }
    if let Some(h) = scheduled.as_ref().filter(|s| s.sealed).and_then(|s| s.session.as_deref()) {
        // A sealed link's session exists for its grant only. Claimed: the end is
        // recorded whatever happens here.
        if let Err(e) = store.end_by_hash(h, None).await {
            tracing::warn!(error = %e, grant = %id, "could not end a sealed session with its grant; it is refused on its next request");
        }
    }
    let mut ev = Event::new(Kind::BreakglassEnded);
    ev.grant = Some(id.to_string());
    ev.breakglass = Some(true);
    ev.reason = Some(crate::audit::Reason::named(why));
    if let Some(s) = &scheduled {
        ev.actor = Some(Actor { subject: s.subject.clone(), groups: Vec::new() });
        ev.session.clone_from(&s.session);
        ev.route = Some(s.route.clone());
        ev.scope = Some(s.scope.clone());
    }
    tracing::warn!(grant = %id, route = ?ev.route, why, "break-glass grant ended");
    if let Some(a) = audit {
        if let Err(e) = a.append_durable(ev).await {
            tracing::error!(error = %e, grant = %id, "ALERT: the end of a break-glass grant is not durable yet; the sweep records it again");
            st.release_end(id).await;
            return Ok(());
        }
    }
    st.ended(id).await;
    Ok(())
}

/// Why a grant due on the schedule ended: `expired`, or, when the session holding a
/// declared grant timed out first (its key outlives its end for a while), as that
/// session's own end is recorded.
async fn ended_why(store: &SessionStore, s: Option<&Scheduled>) -> &'static str {
    let Some(hash) = s.filter(|s| !s.sealed).and_then(|s| s.session.as_deref()) else { return "expired" };
    let Ok(Some(session)) = store.peek_by_hash(hash).await else { return "expired" };
    match crate::session::judge(&session, now_secs(), &store.timeouts).0 {
        Some(crate::session::Lookup::IdleTimeout(_)) => "session_idle_timeout",
        Some(crate::session::Lookup::Expired(_)) => "session_expired",
        _ => "expired",
    }
}

/// The gateway that made a grant ends it on time: a timer, in a task of its own.
pub fn end_on_time(store: SessionStore, audit: Option<Audit>, id: String, expires: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(expires.saturating_sub(now_secs()))).await;
        // The schedule's clock is whole seconds: wait into the second the grant ends in.
        while now_secs() < expires {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = expire(&store, audit.as_ref(), &id).await {
            tracing::warn!(error = %e, grant = %id, "could not record a grant's end on time; the sweep will");
        }
    });
}

/// Every second, in a thread of its own: records the ends of grants due on the shared
/// schedule (at most [`SWEEP_BATCH`] a second), whichever gateway made them.
pub fn start_sweep(store: SessionStore, audit: Option<Audit>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("custos-breakglass-sweep".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "ALERT: no break-glass sweep: grant ends are recorded only by timers and requests");
                    return;
                }
            };
            rt.block_on(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut failing = false;
                loop {
                    tick.tick().await;
                    let result = async {
                        for id in store.bg_index_due(ENDS, now_secs(), SWEEP_BATCH).await? {
                            expire(&store, audit.as_ref(), &id).await?;
                        }
                        Ok::<_, crate::session::SessionError>(())
                    }
                    .await;
                    // Said once per outage, not every second.
                    match result {
                        Err(e) if !failing => {
                            tracing::warn!(error = %e, "break-glass sweep: the session store is unreachable");
                            failing = true;
                        }
                        Ok(()) if failing => {
                            tracing::info!("break-glass sweep: the session store answers again");
                            failing = false;
                        }
                        _ => {}
                    }
                }
            });
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the break-glass sweep: {e}"))
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
            ReviewError::BadNote => "a note of 1 to 4000 characters, without control characters, is needed",
            ReviewError::NoSuchGrant => "no such grant",
            ReviewError::OwnUse => "nobody may review an emergency access they used or issued",
            ReviewError::AlreadyReviewed => "already reviewed",
            ReviewError::Unavailable => "the session store is unreachable",
        }
    }
}

/// The longest review note, in characters.
pub const NOTE_MAX: usize = 4000;

/// Text a person wrote for the record (a justification, a review note): trimmed, not
/// empty, at most `max` characters, no control characters but line breaks (nothing that
/// moves a terminal's cursor or hides text in a log or a page).
pub fn plain_text(raw: &str, max: usize) -> Option<String> {
    let t = raw.trim();
    let ok = !t.is_empty() && t.chars().count() <= max && t.chars().all(|c| !c.is_control() || c == '\n' || c == '\r');
    ok.then(|| t.to_string())
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
    let Some(note) = plain_text(note, NOTE_MAX) else { return Err(ReviewError::BadNote) };
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
        r.review = Some(Review { verdict: verdict.to_string(), reviewer: reviewer.to_string(), note, at: now_secs() });
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

/// What an alert says. No PHI: who, which route and scope, when, the grant, the case
/// reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `breakglass.started`, `breakglass.link_used`, `breakglass.link_reused`,
    /// `breakglass.link_spent` (spent by wrong codes).
    pub event: String,
    pub who: String,
    pub route: String,
    /// `route` (the whole route) or the path declared.
    pub scope: Option<String>,
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

impl AlertEvent {
    /// An alert of `event` about `who` on `route`, now; the rest to fill in.
    pub fn new(event: &str, who: &str, route: &str) -> AlertEvent {
        AlertEvent {
            event: event.to_string(),
            who: who.to_string(),
            route: route.to_string(),
            scope: None,
            when: rfc3339(now_secs()),
            grant: None,
            case_ref: None,
            expires: None,
            justification_sha256: None,
            justification_len: None,
            justification: None,
        }
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
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
        "breakglass.link_spent" => "Sealed emergency link SPENT by wrong TOTP codes (guessing?)",
        _ => "Break-glass emergency access started",
    };
    let mut t = format!(":rotating_light: *{what}*: `{}` on route `{}`", e.who, e.route);
    if let Some(s) = &e.scope {
        t.push_str(&format!(" (scope `{s}`)"));
    }
    t.push_str(&format!(" at {}", e.when));
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
    ev.scope = e.scope.clone();
    ev.case_ref = e.case_ref.clone();
    ev.reason = Some(crate::audit::Reason::named(&e.event));
    ev.alert = serde_json::to_value(&e).ok();
    audit.append(ev);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_scope_holds_its_record_and_what_is_below_it_only() {
        let g = |scope: Option<&str>| Grant {
            id: "g".into(),
            route: "ehr".into(),
            expires: 0,
            sealed: false,
            scope: scope.map(str::to_string),
        };
        let one = g(Some("/patients/1"));
        assert!(one.covers("ehr", "/patients/1"));
        assert!(one.covers("ehr", "/patients/1/notes"));
        for other in ["/patients/10", "/patients/3", "/patients", "/patients/1x", "/"] {
            assert!(!one.covers("ehr", other), "{other}");
        }
        assert!(!one.covers("billing", "/patients/1"));
        assert!(g(Some("/patients/1/")).covers("ehr", "/patients/1/notes"));
        let route = g(None);
        assert!(route.covers("ehr", "/patients/3") && !route.covers("billing", "/patients/3"));
        assert_eq!(route.scope_name(), WHOLE_ROUTE);
        assert!(g(Some("/")).covers("ehr", "/anything"));
    }

    #[test]
    fn plain_text_refuses_control_characters_but_line_breaks() {
        assert_eq!(plain_text("  ok, seen\r\nconfirmed ", 100).as_deref(), Some("ok, seen\r\nconfirmed"));
        for bad in ["\u{1b}[2J", "a\u{7}", "a\u{0}b", "a\u{7f}", "a\u{85}b", "a\tb", "   ", ""] {
            assert_eq!(plain_text(bad, 100), None, "{bad:?}");
        }
        assert_eq!(plain_text("abcde", 4), None);
    }
}
