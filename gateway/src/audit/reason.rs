//! The audit vocabulary's reasons: every `reason` an event can carry, listed once.
//!
//! A compliance reader must be able to list what the trail can say, so reasons are a
//! closed set ([`Code`]), written in records by their serde names. A few kinds carry a
//! message instead of a code (a refused policy's error with file and line, a sink's
//! refusal, where a chain continues): those are [`Reason::Message`], set only through
//! [`Reason::message`]. The README's list is checked against [`Code::ALL`] by a test.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A closed vocabulary: the enum, its names in records, and the list of them all.
macro_rules! vocabulary {
    ($(#[doc = $tdoc:literal])* $name:ident { $($(#[doc = $doc:literal])* $variant:ident = $text:literal,)* }) => {
        $(#[doc = $tdoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[doc = $doc])* $variant,)*
        }

        impl $name {
            /// Every value, in the order they are listed.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name written in audit records.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value a record's name stands for.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let name = std::borrow::Cow::<str>::deserialize(d)?;
                $name::from_name(&name).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", stringify!($name), " `{}`"), name))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use vocabulary;

vocabulary! {
    /// A reason from the audit vocabulary.
    Code {
    // Requests refused before or at the decision (`access.decision`, deny).
    BadFraming = "bad_framing",
    BadPath = "bad_path",
    HeaderTooLarge = "header_too_large",
    UriTooLong = "uri_too_long",
    NoRoute = "no_route",
    MethodNotAllowed = "method_not_allowed",
    MethodOverride = "method_override",
    PathParameters = "path_parameters",
    BodyTooLarge = "body_too_large",
    UpgradeRefused = "upgrade_refused",
    UpstreamUnavailable = "upstream_unavailable",
    UpstreamTimeout = "upstream_timeout",
    ClientTimeout = "client_timeout",
    AuditUnavailable = "audit_unavailable",
    Internal = "internal",
    Unauthenticated = "unauthenticated",
    MfaRequired = "mfa_required",
    MfaStepUp = "mfa_step_up",
    SessionStoreUnavailable = "session_store_unavailable",
    IdpUnavailable = "idp_unavailable",
    Policy = "policy",
    Bearer = "bearer",
    // Bearer tokens refused (`access.decision`, deny).
    BearerBearerDisabled = "bearer_bearer_disabled",
    BearerExpired = "bearer_expired",
    BearerNotYetValid = "bearer_not_yet_valid",
    BearerIssuedInFuture = "bearer_issued_in_future",
    BearerMalformed = "bearer_malformed",
    BearerAlgNone = "bearer_alg_none",
    BearerAlgHmac = "bearer_alg_hmac",
    BearerAlgorithm = "bearer_algorithm",
    BearerTyp = "bearer_typ",
    BearerUnknownKey = "bearer_unknown_key",
    BearerKeyAlgorithm = "bearer_key_algorithm",
    BearerIssuer = "bearer_issuer",
    BearerAudience = "bearer_audience",
    BearerSignature = "bearer_signature",
    BearerMissingClaim = "bearer_missing_claim",
    BearerToken = "bearer_token",
    BearerSubjectClaim = "bearer_subject_claim",
    // Sign-ins refused (`auth.login_failed`) and back-channel logouts refused.
    LoginFailed = "login_failed",
    LoginRate = "login_rate",
    State = "state",
    BrowserBinding = "browser_binding",
    Nonce = "nonce",
    Signature = "signature",
    Algorithm = "algorithm",
    KeyAlgorithm = "key_algorithm",
    UnknownKey = "unknown_key",
    Audience = "audience",
    Issuer = "issuer",
    Expired = "expired",
    NotYetValid = "not_yet_valid",
    IssuedInFuture = "issued_in_future",
    AuthContext = "auth_context",
    AuthTime = "auth_time",
    Subject = "subject",
    SubjectClaim = "subject_claim",
    IdToken = "id_token",
    Mfa = "mfa",
    CodeExchange = "code_exchange",
    TokenResponse = "token_response",
    IdpError = "idp_error",
    Config = "config",
    Malformed = "malformed",
    MissingClaim = "missing_claim",
    Token = "token",
    Typ = "typ",
    AlgNone = "alg_none",
    AlgHmac = "alg_hmac",
    Events = "events",
    Jti = "jti",
    SidOrSub = "sid_or_sub",
    Replay = "replay",
    Store = "store",
    AuthCode = "code",
    Iat = "iat",
    NoToken = "no_token",
    // Sessions, grants and tunnels ended.
    SessionRevoked = "session_revoked",
    Logout = "logout",
    BackchannelLogout = "backchannel_logout",
    SessionRevokedByIdp = "session_revoked_by_idp",
    SessionReplaced = "session_replaced",
    SessionIdleTimeout = "session_idle_timeout",
    SessionExpired = "session_expired",
    CredentialExpired = "credential_expired",
    SessionEnded = "session_ended",
    Revoked = "revoked",
    Replaced = "replaced",
    ClientClosed = "client_closed",
    UpstreamClosed = "upstream_closed",
    PolicyReload = "policy_reload",
    Shutdown = "shutdown",
    // The PostgreSQL front end.
    Plaintext = "plaintext",
    UnknownDatabase = "unknown_database",
    ClientEncoding = "client_encoding",
    Replication = "replication",
    ProtocolVersion = "protocol_version",
    ProtocolViolation = "protocol_violation",
    UserMismatch = "user_mismatch",
    AuthRate = "auth_rate",
    NoDatabaseRole = "no_database_role",
    RoleNotHeld = "role_not_held",
    TooManyConnections = "too_many_connections",
    UpstreamRefused = "upstream_refused",
    Unparseable = "unparseable",
    StatementTooLarge = "statement_too_large",
    FunctionCall = "function_call",
    UnknownStatement = "unknown_statement",
    StandardConformingStrings = "standard_conforming_strings",
    NotRun = "not_run",
    // Emergency access.
    Declared = "declared",
    SealedLink = "sealed_link",
    LinkUsed = "link_used",
    LinkSpentByFailedCodes = "link_spent_by_failed_codes",
    LinkExpired = "link_expired",
    LinkUnknown = "link_unknown",
    DailyLimit = "daily_limit",
    Justification = "justification",
    CaseRef = "case_ref",
    Csrf = "csrf",
    Totp = "totp",
    TotpTries = "totp_tries",
    SealedSession = "sealed_session",
    FormTooLarge = "form_too_large",
    NotAuditor = "not_auditor",
    Justified = "justified",
    Unjustified = "unjustified",
    SelfReview = "self_review",
    ReviewRefused = "review_refused",
    // Alerts (`breakglass.alert`): what the alert is about.
    AlertStarted = "breakglass.started",
    AlertLinkUsed = "breakglass.link_used",
    AlertLinkReused = "breakglass.link_reused",
    AlertLinkSpent = "breakglass.link_spent",
    // Policy reloads in force (`policy.reloaded`): what set them off.
    Sighup = "SIGHUP",
    FileChange = "file change",
    // A chain closed in order (`audit.stopped`): the signal that stopped the gateway.
    Sigint = "SIGINT",
    Sigterm = "SIGTERM",
    SigtermGraceOver = "SIGTERM, grace period over",
    // Database sign-ins refused (`db.login_refused`) and how tokens were handed over
    // (`db.token_issued`).
    Database = "database",
    Loopback = "loopback",
    Verifier = "verifier",
    Device = "device",
    DeviceConfirmed = "device_confirmed",
}
}

/// An event's reason: a code of the vocabulary, or for the kinds that carry one
/// (`policy.reload_rejected`, `audit.dead_lettered`, `audit.started`,
/// `breakglass.link_issued`) a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Code(Code),
    Message(String),
}

impl Reason {
    /// A message reason (see the type's note on the kinds that carry one).
    pub fn message(text: impl Into<String>) -> Reason {
        Reason::Message(text.into())
    }

    /// A reason named by a layer that has not typed its own yet: the code of that name.
    /// An unknown name is kept as written (and logged), so no record loses its reason.
    pub fn named(name: &str) -> Reason {
        match Code::from_name(name) {
            Some(c) => Reason::Code(c),
            None => {
                tracing::error!(reason = name, "an audit reason outside the vocabulary");
                Reason::Message(name.to_string())
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reason::Code(c) => c.as_str(),
            Reason::Message(m) => m,
        }
    }

    pub fn code(&self) -> Option<Code> {
        match self {
            Reason::Code(c) => Some(*c),
            Reason::Message(_) => None,
        }
    }
}

impl From<Code> for Reason {
    fn from(c: Code) -> Reason {
        Reason::Code(c)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    /// Records written by any version read back: a known name is its code, anything
    /// else a message.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match Code::from_name(&text) {
            Some(c) => Reason::Code(c),
            None => Reason::Message(text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_read_back_as_their_codes() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{} listed twice", c.as_str());
            let json = serde_json::to_string(&Reason::from(*c)).unwrap();
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), Reason::Code(*c));
        }
        let m: Reason = serde_json::from_str("\"p.csv:3: no such role\"").unwrap();
        assert_eq!(m, Reason::message("p.csv:3: no such role"));
    }
}

/// The README's audit vocabulary lists exactly the kinds and reasons the code has.
#[cfg(test)]
mod readme {
    use super::Code;
    use crate::audit::Kind;
    use std::collections::BTreeSet;

    fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
        let start = text.find(from).unwrap_or_else(|| panic!("README has no `{from}`")) + from.len();
        let end = text[start..].find(to).unwrap_or_else(|| panic!("README has no `{to}` after `{from}`"));
        &text[start..start + end]
    }

    fn quoted(section: &str) -> BTreeSet<String> {
        section.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    #[test]
    fn the_readme_lists_every_kind_and_reason_and_nothing_else() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let text = std::fs::read_to_string(&path).expect("README.md");
        let kinds = quoted(between(&text, "<!-- vocabulary: kinds -->", "<!-- vocabulary: reasons -->"));
        let reasons = quoted(between(&text, "<!-- vocabulary: reasons -->", "<!-- /vocabulary -->"));
        let want_kinds: BTreeSet<String> = Kind::ALL.iter().map(|k| k.as_str().to_string()).collect();
        let want_reasons: BTreeSet<String> = Code::ALL.iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(kinds, want_kinds, "README kinds (left) vs audit::Kind (right)");
        assert_eq!(reasons, want_reasons, "README reasons (left) vs audit::Code (right)");
    }
}
