//! Per-request state, built up phase by phase: the route and path, who is asking
//! ([`Principal`]), what allowed it ([`Verdict`]) and its [`Timings`]; and the count of
//! requests in flight that it keeps for draining.

use super::headers::Forwarding;
use super::path::NormPath;
use super::respond::Refusal;
use super::{routes, trace};
use crate::access::{Principal, Verdict};
use crate::config::Limits;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Requests in progress, for draining on SIGTERM.
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct InFlight;
impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        InFlight
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state, built up phase by phase.
pub struct RequestCtx {
    pub(super) timings: Timings,
    pub(super) route: Option<Arc<routes::RouteEntry>>,
    pub(super) path: Option<NormPath>,
    pub(super) forwarding: Option<Forwarding>,
    pub(super) trace: Option<trace::TraceContext>,
    pub(super) refusal: Option<Refusal>,
    /// An allow decision was recorded: `logging` owes a completion record.
    pub(super) allowed: bool,
    pub(super) body_bytes: u64,
    /// Who is asking, once the credential is checked.
    pub(super) principal: Option<Principal>,
    /// What allowed the request (the policy rule, the emergency grant).
    pub(super) verdict: Verdict,
    /// This request became a WebSocket tunnel, now closed for this reason.
    pub(super) tunnel_closed: Option<&'static str>,
    _in_flight: InFlight,
}

/// When the request began, and its timed phases (start, duration) since then: the
/// durable decision record, and the upstream until its response header.
pub(super) struct Timings {
    pub(super) start: Instant,
    pub(super) audit: Option<(std::time::Duration, std::time::Duration)>,
    pub(super) upstream: Option<(std::time::Duration, Option<std::time::Duration>)>,
}

impl RequestCtx {
    pub(super) fn new() -> RequestCtx {
        RequestCtx {
            timings: Timings { start: Instant::now(), audit: None, upstream: None },
            route: None,
            path: None,
            forwarding: None,
            trace: None,
            refusal: None,
            allowed: false,
            body_bytes: 0,
            principal: None,
            verdict: Verdict::default(),
            tunnel_closed: None,
            _in_flight: InFlight::enter(),
        }
    }

    pub(super) fn limits<'a>(&'a self, site: &'a Limits) -> &'a Limits {
        self.route.as_ref().map_or(site, |r| &r.limits)
    }

    /// The signed-in user, once the credential is checked.
    pub fn user(&self) -> Option<&std::sync::Arc<crate::session::Session>> {
        self.principal.as_ref().map(|p| &p.user)
    }

    /// Whether the sign-in satisfies the MFA rule (`None` before it is checked).
    pub fn mfa(&self) -> Option<bool> {
        self.principal.as_ref().map(|p| p.mfa)
    }

    /// SHA-256 of the session id (for audit records), for a session credential.
    pub fn session_hash(&self) -> Option<&str> {
        self.principal.as_ref().and_then(Principal::session_hash)
    }
}
