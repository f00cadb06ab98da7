//! Why a step of a database sign-in is refused: one table of statuses, audit reasons and
//! what the person (or the command line) is told.

use crate::audit::Code;

/// Why a step of a database sign-in was refused: its audit reason, status and what the
/// person (or the command line) is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRefusal {
    /// No such database (`db=`).
    Database,
    /// The redirect is not to a loopback listener with a numeric port.
    Loopback,
    /// A parameter is missing or malformed.
    Malformed,
    /// The verifier does not match the challenge.
    Verifier,
    /// The code is unknown, used or expired.
    Code,
    /// The device login is unknown, ended or expired.
    Device,
    /// Another browser session confirmed this device login already.
    DeviceConfirmed,
    /// The browser session does not have the multi-factor sign-in the database needs.
    Mfa,
    /// The browser session ended before the token was asked for.
    SessionEnded,
    /// The confirmation form was not the gateway's own page.
    Csrf,
    /// The browser session was made by a sealed emergency link: it lives for its grant
    /// and its route only, and makes no credential that would outlive it.
    Sealed,
    /// Too many refused attempts (or started logins) from this address this minute.
    Rate,
}

impl DbRefusal {
    /// Status, audit reason and message.
    pub fn parts(self) -> (u16, Code, &'static str) {
        match self {
            DbRefusal::Database => (404, Code::Database, "No database of that name is reachable through this gateway."),
            DbRefusal::Loopback => (
                400,
                Code::Loopback,
                "The sign-in can only return to a listener on this computer (127.0.0.1 or [::1], a numeric port). Start it again with `custos db login`.",
            ),
            DbRefusal::Malformed => (400, Code::Malformed, "The request is missing a part or has one that is malformed."),
            DbRefusal::Verifier => (
                400,
                Code::Verifier,
                "The proof from the command line does not match the sign-in it started. Run `custos db login` again.",
            ),
            DbRefusal::Code => (
                400,
                Code::AuthCode,
                "The sign-in code is unknown, expired or was already used. Run `custos db login` again.",
            ),
            DbRefusal::Device => (
                400,
                Code::Device,
                "This sign-in link expired or was already used. Run `custos db login` again to get a new one.",
            ),
            DbRefusal::DeviceConfirmed => (
                409,
                Code::DeviceConfirmed,
                "Someone else already confirmed this sign-in. If you did not start it, tell your security team.",
            ),
            DbRefusal::Mfa => (
                403,
                Code::Mfa,
                "This database needs a multi-factor sign-in, and your sign-in used one factor. Sign in again with your second factor.",
            ),
            DbRefusal::SessionEnded => (
                403,
                Code::SessionEnded,
                "Your browser session ended before the token was issued. Run `custos db login` again.",
            ),
            DbRefusal::Csrf => (
                403,
                Code::Csrf,
                "The confirmation did not come from this gateway's own page. Open the link again and confirm there.",
            ),
            DbRefusal::Sealed => (
                403,
                Code::SealedSession,
                "An emergency access session cannot get a database token. Sign in as usual to reach a database.",
            ),
            DbRefusal::Rate => (
                429,
                Code::LoginRate,
                "Too many database sign-in attempts from your address. Wait a minute and try again.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_own_reason() {
        let all = [
            DbRefusal::Database,
            DbRefusal::Loopback,
            DbRefusal::Malformed,
            DbRefusal::Verifier,
            DbRefusal::Code,
            DbRefusal::Device,
            DbRefusal::DeviceConfirmed,
            DbRefusal::Mfa,
            DbRefusal::SessionEnded,
            DbRefusal::Csrf,
            DbRefusal::Sealed,
            DbRefusal::Rate,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(|r| r.parts().1).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
