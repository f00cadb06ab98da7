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
//!
//! The grant a session carries is the session's record ([`crate::session::grant`]); the
//! alert message and how it is delivered are the audit trail's
//! ([`crate::audit::sinks::alert`]). Here: the records in Redis ([`store`]), the ends
//! ([`end`]), reviews ([`review`]), tokens ([`token`]) and the queueing of alerts
//! ([`alert`]).

pub mod alert;
pub mod end;
pub mod review;
pub mod store;
pub mod token;

pub use crate::audit::sinks::alert::{rfc3339, sign, AlertEvent, AlertKind};
pub use crate::session::grant::{within, Grant, WHOLE_ROUTE};
pub use alert::alert;
pub use end::{end_on_time, record_end, start_sweep, GrantEnd};
pub use review::{review, Review, ReviewError, Verdict, NOTE_MAX};
pub use store::{GrantKind, Link, LinkState, Record, Scheduled, Store};
pub use token::{csrf_token, new_token, new_totp_secret, same_token, totp_ok};

pub use crate::config::breakglass::{Alert, AlertFormat, Settings};

/// What break-glass could not do, outside the store (whose errors are
/// [`crate::session::SessionError`]) and reviews ([`ReviewError`]).
#[derive(Debug, thiserror::Error)]
pub enum BreakglassError {
    /// The system random source failed (no token, no TOTP secret).
    #[error("no randomness")]
    Random,
    #[error("cannot start the break-glass sweep: {0}")]
    Sweep(std::io::Error),
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_refuses_control_characters_but_line_breaks() {
        assert_eq!(plain_text("  ok, seen\r\nconfirmed ", 100).as_deref(), Some("ok, seen\r\nconfirmed"));
        for bad in ["\u{1b}[2J", "a\u{7}", "a\u{0}b", "a\u{7f}", "a\u{85}b", "a\tb", "   ", ""] {
            assert_eq!(plain_text(bad, 100), None, "{bad:?}");
        }
        assert_eq!(plain_text("abcde", 4), None);
    }
}
