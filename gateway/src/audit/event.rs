//! The one audit event type. Every module records through [`super::Audit`] with one of
//! these; later modules add their [`Kind`]s. Metadata only: never bodies, query strings
//! (unless a route opts in), cookies, tokens or secrets.
//!
//! Schema version 1. Serialized field order is fixed (struct order), and absent fields
//! are omitted.

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

super::reason::vocabulary! {
    /// What happened.
    Kind {
        /// The gateway decided whether a request may reach its upstream.
        AccessDecision = "access.decision",
        /// A forwarded request finished (status, bytes, duration).
        AccessCompleted = "access.completed",
        /// A signed checkpoint of the chain (sequence and hash).
        AuditCheckpoint = "audit.checkpoint",
        /// The gateway started writing this chain (after a restart too).
        AuditStarted = "audit.started",
        /// The gateway stopped writing this chain in an orderly way.
        AuditStopped = "audit.stopped",
        /// A user signed in; a session was created (`session` holds its id's hash).
        AuthLogin = "auth.login",
        /// A sign-in was refused; `reason` says why (`state`, `browser_binding`, `nonce`,
        /// `signature`, `mfa`, …).
        AuthLoginFailed = "auth.login_failed",
        /// A user signed out.
        AuthLogout = "auth.logout",
        /// A session ended by automatic logoff (idle timeout).
        SessionIdleTimeout = "session.idle_timeout",
        /// A session ended at its absolute lifetime.
        SessionExpired = "session.expired",
        /// An administrator ended a session (`actor`: the administrator, `target`: the
        /// user, `session`: the session's hash).
        AdminSessionRevoked = "admin.session_revoked",
        /// An administrator listed a user's sessions.
        AdminSessionsListed = "admin.sessions_listed",
        /// A request to the admin API without a valid administrator token.
        AdminDenied = "admin.denied",
        /// The identity provider refused a session when it was re-validated (the user is
        /// disabled or signed out there); the session was ended.
        SessionRevokedByIdp = "session.revoked_by_idp",
        /// A new policy is in force (`rule`: the SHA-256 of the model and policy files).
        PolicyReloaded = "policy.reloaded",
        /// A changed policy was refused (`reason`: the error with file:line, or the failing
        /// cases); the last good one stays in force.
        PolicyReloadRejected = "policy.reload_rejected",
        /// The identity provider ended sessions (OpenID Connect Back-Channel Logout).
        AuthBackchannelLogout = "auth.backchannel_logout",
        /// An emergency grant started (`grant`, `route`, the justification's SHA-256 and
        /// length, `case_ref`; `reason`: `declared` or `sealed_link`).
        BreakglassStarted = "breakglass.started",
        /// An emergency grant ended (`reason`: `expired`, `logout`, `replaced`, `revoked`,
        /// `session_idle_timeout`, …), recorded once per grant across gateways.
        BreakglassEnded = "breakglass.ended",
        /// A declaration or a sealed link was refused (`reason`: `policy`, `daily_limit`,
        /// `justification`, `csrf`, `link_used`, `link_expired`, `link_unknown`, `totp`, …).
        BreakglassDenied = "breakglass.denied",
        /// An administrator issued a sealed link (`target`: the user it is for).
        BreakglassLinkIssued = "breakglass.link_issued",
        /// A sealed link was used (its one use).
        BreakglassLinkUsed = "breakglass.link_used",
        /// An auditor reviewed an emergency grant (`grant`, `reason`: the verdict).
        BreakglassReviewed = "breakglass.reviewed",
        /// Someone read the emergency review records (they hold the justifications).
        BreakglassReviewsRead = "breakglass.reviews_read",
        /// A break-glass alert could not be delivered (written by earlier versions, which
        /// gave up; alerts are now retried until taken, see `breakglass.alert`).
        BreakglassAlertFailed = "breakglass.alert_failed",
        /// A WebSocket tunnel opened: the upstream answered the allowed upgrade with `101`
        /// (the request's metadata; `status`: 101).
        TunnelOpened = "tunnel.opened",
        /// A tunnel closed: `bytes_in` (client to upstream), `bytes_out`, `duration_ms` (since
        /// it opened), `reason` (`client_closed`, `upstream_closed`, `session_revoked`,
        /// `logout`, `backchannel_logout`, `session_idle_timeout`, `session_expired`,
        /// `policy_reload`, `shutdown`, …).
        TunnelClosed = "tunnel.closed",
        /// A break-glass alert, queued on the spool (`alert`: what it says); each alert
        /// receiver delivers it from there, retried until taken.
        BreakglassAlert = "breakglass.alert",
        /// A sink's receiver refused records for good (HTTP 400, 413 or 422: the payload
        /// itself): they were kept in `dead-letters/<sink>/` (`sink`, `count`, `first_seq`,
        /// `last_seq`, `reason`) for `custos audit redeliver`.
        AuditDeadLettered = "audit.dead_lettered",
        /// Dead letters were delivered on `custos audit redeliver` (`sink`, `count`,
        /// `first_seq`, `last_seq`).
        AuditRedelivered = "audit.redelivered",
        /// A database token was issued after a browser sign-in (`custos db login`): `actor`,
        /// `database`, `session` (the new token's hash), `from_session` (the hash of the
        /// browser session it was made from), `mfa`, `reason` (`loopback` or `device`).
        DbTokenIssued = "db.token_issued",
        /// A step of a database sign-in was refused (`database`, `reason`: `database`,
        /// `loopback`, `verifier`, `code`, `device`, `device_confirmed`, `mfa`,
        /// `session_ended`, `csrf`, `sealed_session`, `login_rate`, `malformed`).
        DbLoginRefused = "db.login_refused",
}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// Who acted. Absent on an event means anonymous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Actor {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A timed part of a request, relative to its start (exported as a child span).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `audit` (making the decision record durable) or `upstream` (until its response
    /// header).
    pub name: String,
    pub start_ms: f64,
    pub duration_ms: f64,
}

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// Hex of the Ed25519 public key that signed (so rotated keys can be told apart).
    pub key: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub sig: String,
}

impl Checkpoint {
    pub fn message(instance: &str, seq: u64, hash: &str) -> String {
        format!("custos-audit-checkpoint:v1:{instance}:{seq}:{hash}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// UUIDv7.
    pub id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The gateway instance whose chain holds this event.
    pub instance: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// SHA-256 of the session id, hex; never the id itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The normalised path, without the query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only when the route sets `audit_query = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why: a code of the vocabulary ([`super::reason::Code`]: `no_route`, `bad_path`,
    /// `policy`, …), or a message for the few kinds that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<super::reason::Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// W3C trace context: the trace, this request's span (sent upstream as the parent in
    /// `traceparent`), and the caller's span when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Whom an administrative action was about (a subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The request was made under an emergency grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<bool>,
    /// The emergency grant's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// What an emergency grant covers: `route` (the whole route) or the path of the
    /// record declared (and what is below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref: Option<String>,
    /// SHA-256 (hex) and length of an emergency justification; the text itself only with
    /// `breakglass.audit_justification = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The audit sink a delivery record is about (`webhook`, `otlp`, `alert-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// How many records a delivery record is about, and their first and last seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// What a `breakglass.alert` says (the alert object receivers get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<serde_json::Value>,
    /// The database (its `[[databases]]` name) a record is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// SHA-256 of the session a credential was made from (a database token's browser
    /// session); never the id itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_session: Option<String>,
    /// The database connection's id (the same on all its records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The upstream role the connection runs as (`[databases.roles]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_role: Option<String>,
    /// What a statement does (`select`, `insert`, `copy_to`, …), from its parse tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// The relations and functions a statement touches, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// The statement's fingerprint (literal values never change it, nor appear in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Rows a statement returned or affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The SQLSTATE a statement or connection ended with (`00000`: success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Startup parameters a client sent that were not passed on (their names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filtered: Vec<String>,
}

impl Event {
    /// A new event of `kind`; `time` and `instance` are filled in when it is appended.
    pub fn new(kind: Kind) -> Event {
        Event {
            v: SCHEMA_VERSION,
            // Encoded straight into its string, without the formatting machinery.
            id: uuid::Uuid::now_v7().hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned(),
            time: String::new(),
            instance: String::new(),
            kind,
            actor: None,
            session: None,
            client: None,
            route: None,
            method: None,
            path: None,
            query: None,
            decision: None,
            rule: None,
            reason: None,
            mfa: None,
            status: None,
            bytes_in: None,
            bytes_out: None,
            duration_ms: None,
            upstream: None,
            request_id: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            phases: Vec::new(),
            checkpoint: None,
            target: None,
            breakglass: None,
            grant: None,
            scope: None,
            case_ref: None,
            justification_sha256: None,
            justification_len: None,
            justification: None,
            sink: None,
            count: None,
            first_seq: None,
            last_seq: None,
            alert: None,
            database: None,
            from_session: None,
            connection: None,
            db_role: None,
            verb: None,
            objects: Vec::new(),
            fingerprint: None,
            rows: None,
            sqlstate: None,
            filtered: Vec::new(),
        }
    }
}
