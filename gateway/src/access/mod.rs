//! The protocol-neutral access core: may this person do this action on this object, and
//! is that on the record? Every front end (HTTP today) asks [`Access::decide`] with a
//! [`Request`] it fills from its protocol, and gets a [`Permit`] or a [`Denial`]. In
//! order: the credential to a live session (`auth`), the MFA rule, the emergency grant
//! (`grant`), the policy (`decide`), and the durable decision record (`record`).
//! [`Access::complete`] appends the completion record. Denials are recorded here too,
//! except a sign-in to start, whose answer (and record) is the front end's. Emergency
//! grants ([`breakglass`]) live here, above the session record that carries them.
//!
//! Imports neither pingora nor `http` (the shapes follow linkerd2-proxy's inbound
//! policy: the permit types here, their enforcement per protocol).

pub mod auth;
pub mod breakglass;
mod decide;
mod grant;
mod record;

pub use auth::{Auth, AuthError};
pub use decide::{object, policy_request};
pub use record::Completion;

use crate::audit::{Audit, Code, Event, Kind, Reason};
use crate::config::path::NormPath;
use crate::config::{Database, Route};
use crate::policy::Policy;
use crate::session::Session;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the request proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A session cookie: the SHA-256 of the session id (what audit records carry).
    Session { hash: String },
    /// An `Authorization: Bearer` access token: its SHA-256 (keys the identity
    /// assertion) and its `exp` (unix seconds: a tunnel it opened ends then).
    Bearer { hash: String, expires: u64 },
}

/// Who is asking, once the credential is checked.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    /// The person (subject, groups, e-mail, sign-in methods), shared with the session
    /// cache: never copied per request.
    pub user: Arc<Session>,
    /// Whether the sign-in satisfies the MFA rule.
    pub mfa: bool,
}

impl Principal {
    /// SHA-256 of the session id, for a session credential.
    pub fn session_hash(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { hash } => Some(hash),
            Credential::Bearer { .. } => None,
        }
    }

    /// The credential's hash: the session id's or the bearer token's.
    pub fn credential_hash(&self) -> &str {
        match &self.credential {
            Credential::Session { hash } | Credential::Bearer { hash, .. } => hash,
        }
    }

    pub fn is_bearer(&self) -> bool {
        matches!(self.credential, Credential::Bearer { .. })
    }
}

/// What allowed the request.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The policy rule that allowed it.
    pub rule: Option<Arc<str>>,
    /// The emergency grant it runs under.
    pub grant: Option<String>,
}

/// An allowed request: who, why, and whether its decision record is durable.
#[derive(Debug)]
pub struct Permit {
    /// `None` on a public route.
    pub principal: Option<Principal>,
    pub verdict: Verdict,
    /// The decision record is durable: a completion record is owed.
    pub recorded: bool,
    /// On a database: the index in its `roles` of the role the connection runs as.
    pub db_role: Option<usize>,
    /// When making the decision record durable began and how long it took, since the
    /// request's start.
    pub audit_phase: Option<(Duration, Duration)>,
}

/// Why a request is refused. [`Denial::reason`] is its audit reason; the front end maps
/// each to its protocol's answer (for HTTP, the table in `http/respond.rs`).
#[derive(Debug)]
pub enum Denial {
    /// Nothing to authenticate with (no sign-in configured) or a state that cannot be.
    Internal,
    /// The session store cannot be reached: nothing protected is served.
    SessionStoreUnavailable,
    /// The identity provider cannot be reached (a bearer token's keys).
    IdpUnavailable,
    /// A bearer token was refused, for this reason of the verifier's.
    InvalidToken(crate::audit::Code),
    /// A bearer token without the multi-factor sign-in the route needs.
    MfaRequired(Box<Principal>),
    /// No usable session, or one without the MFA asked for: the person must sign in
    /// (again). Recorded by the front end, whose answer it is (a redirect or a 401).
    SignIn(Box<SignIn>),
    /// Path parameters (`;x`) on a route with a policy (a front end's objection).
    PathParameters,
    /// A method override on a route with a policy (a front end's objection).
    MethodOverride,
    /// The policy denies it (`rule`: the deciding rule, `None` for the default deny).
    Policy { rule: Option<Arc<str>> },
    /// The decision record could not be made durable (`audit.on_failure = deny`).
    AuditUnavailable,
    /// The user name the client gave is not the credential's subject.
    UserMismatch,
    /// The person holds none of the database's roles.
    NoDatabaseRole,
    /// The role the client asked for is not one the person holds.
    RoleNotHeld,
}

/// A front end's reason to refuse a request on a route with a policy, judged after
/// authentication (so the record says who) and before the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objection {
    /// Path parameters (`;x`): some upstreams drop them before routing, so the object
    /// the policy sees would not be the one served.
    PathParameters,
    /// A method override: the policy judged the method sent, not the one a framework
    /// would run.
    MethodOverride,
}

impl From<Objection> for Denial {
    fn from(o: Objection) -> Denial {
        match o {
            Objection::PathParameters => Denial::PathParameters,
            Objection::MethodOverride => Denial::MethodOverride,
        }
    }
}

/// A sign-in the request needs before it can be decided.
#[derive(Debug)]
pub struct SignIn {
    /// Who was found, when the sign-in is a step-up.
    pub principal: Option<Principal>,
    pub grant: Option<String>,
    /// The sign-in must use MFA.
    pub need_mfa: bool,
    /// The refusal is for want of MFA only (a step-up).
    pub step_up: bool,
    /// The provider must authenticate again if its sign-in is older (`max_age`).
    pub reauth: Option<Duration>,
}

impl Denial {
    /// The reason written in the audit record.
    pub fn reason(&self) -> Reason {
        Reason::Code(match self {
            Denial::Internal => Code::Internal,
            Denial::SessionStoreUnavailable => Code::SessionStoreUnavailable,
            Denial::IdpUnavailable => Code::IdpUnavailable,
            // The verifier's reasons are the `bearer_…` codes.
            Denial::InvalidToken(code) => return (*code).into(),
            Denial::MfaRequired(_) => Code::MfaRequired,
            Denial::SignIn(s) if s.step_up => Code::MfaStepUp,
            Denial::SignIn(_) => Code::Unauthenticated,
            Denial::PathParameters => Code::PathParameters,
            Denial::MethodOverride => Code::MethodOverride,
            Denial::Policy { .. } => Code::Policy,
            Denial::AuditUnavailable => Code::AuditUnavailable,
            Denial::UserMismatch => Code::UserMismatch,
            Denial::NoDatabaseRole => Code::NoDatabaseRole,
            Denial::RoleNotHeld => Code::RoleNotHeld,
        })
    }

    /// Who was found before the refusal, when anyone was.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Denial::MfaRequired(p) => Some(p),
            Denial::SignIn(s) => s.principal.as_ref(),
            _ => None,
        }
    }
}

/// What a front end tells the core about a request's metadata: the base of every audit
/// record about it (client, action, path, route, upstream, query, request and trace
/// ids), made only when a record is.
pub trait Meta: Sync {
    fn event(&self, kind: Kind) -> Event;
}

/// The presented credentials, as the front end read them from its protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// An `Authorization: Bearer` token.
    pub bearer: Option<&'a str>,
    /// The value of the session cookie.
    pub session: Option<&'a str>,
    /// A database client's password: a database token (`custos db login`) or an OIDC
    /// access token.
    pub password: Option<&'a str>,
}

/// One request to decide.
pub struct Request<'a> {
    pub credentials: Presented<'a>,
    /// The route it is for; `None` for the gateway's own endpoints.
    pub route: Option<&'a Route>,
    /// The normalised path.
    pub path: Option<&'a NormPath>,
    /// The database it is for (a database front end's request; `route` is then `None`).
    pub database: Option<&'a Database>,
    /// A request on something already decided (a statement on a database connection):
    /// its principal and verdict. The credential is checked again (still live, the
    /// session's last use moved on) and the request recorded under that verdict; the
    /// policy is not asked again.
    pub held: Option<(&'a Principal, &'a Verdict)>,
    /// The user name the client gave (a database's startup): it must be the subject.
    pub claimed_user: Option<&'a str>,
    /// The database role the client asked for (`custos.role`).
    pub role: Option<&'a str>,
    /// The action (the HTTP method).
    pub action: &'a str,
    /// The client's address, `""` when unknown.
    pub client: &'a str,
    /// The front end refuses the request before the policy (a rule of its protocol), on
    /// routes with a policy.
    pub objection: Option<Objection>,
    /// When the request began (phases are timed from it).
    pub start: Instant,
    /// The status a denial is answered with, for its record (the front end's table; 0
    /// for none: a protocol without HTTP statuses).
    pub status: fn(&Denial) -> u16,
    pub meta: &'a dyn Meta,
}

/// The access core, borrowed from the front end's wiring: no copy per request.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub auth: Option<&'a Auth>,
    pub policy: Option<&'a Policy>,
    pub audit: Option<&'a Audit>,
    /// Emergency access is configured.
    pub breakglass: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_reasons_are_the_audit_vocabulary() {
        let sign_in = |step_up| {
            Denial::SignIn(Box::new(SignIn { principal: None, grant: None, need_mfa: step_up, step_up, reauth: None }))
        };
        let cases = [
            (Denial::Internal, "internal"),
            (Denial::SessionStoreUnavailable, "session_store_unavailable"),
            (Denial::IdpUnavailable, "idp_unavailable"),
            (Denial::InvalidToken(crate::audit::Code::BearerExpired), "bearer_expired"),
            (sign_in(false), "unauthenticated"),
            (sign_in(true), "mfa_step_up"),
            (Objection::PathParameters.into(), "path_parameters"),
            (Objection::MethodOverride.into(), "method_override"),
            (Denial::Policy { rule: None }, "policy"),
            (Denial::AuditUnavailable, "audit_unavailable"),
        ];
        for (d, reason) in cases {
            assert_eq!(d.reason().as_str(), reason, "{d:?}");
            assert!(d.reason().code().is_some(), "{d:?}");
        }
    }
}
