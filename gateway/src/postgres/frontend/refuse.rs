//! What a refused PostgreSQL client is told: every [`Denial`] of the access core, and
//! every refusal of the front end's own, mapped to its SQLSTATE and message in this one
//! place. Messages name the database and what to do, never the rule, the upstream user or
//! anything the client sent.

use crate::access::Denial;
use crate::audit::Code;

/// A refusal the client is told about: the SQLSTATE, the message, and the audit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
    pub reason: Code,
}

impl Refusal {
    fn new(sqlstate: &'static str, reason: Code, message: impl Into<String>) -> Refusal {
        Refusal { sqlstate, message: message.into(), reason }
    }
}

/// Refusals of the connection's start, and of a statement, that are the front end's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why<'a> {
    /// A plaintext startup where TLS is required.
    Plaintext,
    /// The startup names no `[[databases]]` entry.
    UnknownDatabase(&'a str),
    /// A `client_encoding` other than UTF8.
    ClientEncoding,
    /// A replication connection.
    Replication,
    /// A protocol major version other than 3.
    ProtocolVersion,
    /// Bytes that are not the protocol.
    ProtocolViolation,
    /// The PostgreSQL user name is not the credential's subject.
    UserMismatch,
    /// Too many failed sign-ins from this user or address.
    AuthRate,
    /// The person holds none of the database's roles.
    NoDatabaseRole(&'a str),
    /// The role named at startup (`custos.role`) is not one the person holds.
    RoleNotHeld(&'a str),
    /// Over a per-person or total connection limit.
    TooManyConnections(&'a str),
    /// The database refused Custos's own connection (authentication or startup).
    UpstreamRefused(&'a str),
    /// The database cannot be reached.
    UpstreamUnavailable(&'a str),
    /// A statement PostgreSQL's parser does not accept: never forwarded.
    Unparseable,
    /// A statement over `databases.limits.max_statement_bytes`.
    StatementTooLarge,
    /// The fast-path FunctionCall message.
    FunctionCall,
    /// A statement that sets `standard_conforming_strings` (off, the parsers would differ).
    NonStandardStrings,
    /// A Bind or Describe naming a statement this connection never prepared through
    /// Custos.
    UnknownStatement,
}

/// The refusal for a front-end reason.
pub fn why(w: Why<'_>) -> Refusal {
    use Why::*;
    match w {
        Plaintext => Refusal::new(
            "28000",
            Code::Plaintext,
            "Custos requires TLS: connect with sslmode=verify-full and sslrootcert set to the gateway's CA certificate",
        ),
        UnknownDatabase(db) => {
            Refusal::new("3D000", Code::UnknownDatabase, format!("database \"{db}\" is not served by this gateway"))
        }
        ClientEncoding => Refusal::new(
            "22023",
            Code::ClientEncoding,
            "Custos speaks only client_encoding UTF8: unset PGCLIENTENCODING or set it to UTF8",
        ),
        Replication => Refusal::new("28000", Code::Replication, "replication connections are not served through Custos"),
        ProtocolVersion => {
            Refusal::new("0A000", Code::ProtocolVersion, "unsupported frontend protocol: Custos speaks protocol 3")
        }
        ProtocolViolation => Refusal::new("08P01", Code::ProtocolViolation, "invalid message from the client"),
        UserMismatch | AuthRate => Refusal::new(
            "28P01",
            if w == UserMismatch { Code::UserMismatch } else { Code::AuthRate },
            "password authentication failed: the user name must be yours and the password a token from `custos db login`",
        ),
        NoDatabaseRole(db) => Refusal::new(
            "28000",
            Code::NoDatabaseRole,
            format!("you hold no role that may connect to database \"{db}\""),
        ),
        RoleNotHeld(db) => Refusal::new(
            "28000",
            Code::RoleNotHeld,
            format!("the role named in custos.role is not one you hold on database \"{db}\""),
        ),
        TooManyConnections(db) => Refusal::new(
            "53300",
            Code::TooManyConnections,
            format!("too many connections to database \"{db}\" through Custos"),
        ),
        UpstreamRefused(db) => Refusal::new(
            "08004",
            Code::UpstreamRefused,
            format!("database \"{db}\" refused Custos's connection; ask its administrators"),
        ),
        UpstreamUnavailable(db) => {
            Refusal::new("08006", Code::UpstreamUnavailable, format!("database \"{db}\" cannot be reached"))
        }
        Unparseable => Refusal::new("42601", Code::Unparseable, "syntax error: Custos could not parse the statement"),
        StatementTooLarge => {
            Refusal::new("54000", Code::StatementTooLarge, "statement too large for this database's limit")
        }
        FunctionCall => {
            Refusal::new("0A000", Code::FunctionCall, "the fast-path function call interface is not served through Custos")
        }
        NonStandardStrings => Refusal::new(
            "0A000",
            Code::StandardConformingStrings,
            "Custos requires standard_conforming_strings = on and does not let it be changed",
        ),
        UnknownStatement => {
            Refusal::new("26000", Code::UnknownStatement, "prepared statement does not exist on this connection")
        }
    }
}

/// The refusal for an access-core denial, on database `db`. `started`: the connection
/// was already running (the session ended under it).
pub fn denial(d: &Denial, db: &str, started: bool) -> Refusal {
    let code = d.reason().code().unwrap_or(Code::Internal);
    match d {
        Denial::SignIn(_) if started => Refusal::new(
            "57P01",
            code,
            "terminating connection: your Custos session ended; sign in again with `custos db login`",
        ),
        Denial::SignIn(s) if s.step_up => mfa(db, code),
        Denial::SignIn(_) | Denial::InvalidToken(_) => Refusal::new(
            "28P01",
            code,
            "password authentication failed: the password must be a token from `custos db login` (or an access token)",
        ),
        Denial::MfaRequired(_) => mfa(db, code),
        Denial::Policy { .. } => {
            Refusal::new("28000", code, format!("access to database \"{db}\" is not allowed for you"))
        }
        Denial::SessionStoreUnavailable | Denial::IdpUnavailable => {
            Refusal::new("08006", code, "Custos cannot check your sign-in right now; try again shortly")
        }
        Denial::AuditUnavailable => {
            Refusal::new("08006", code, "Custos cannot record access right now; try again shortly")
        }
        Denial::UserMismatch => why(Why::UserMismatch),
        Denial::NoDatabaseRole => why(Why::NoDatabaseRole(db)),
        Denial::RoleNotHeld => why(Why::RoleNotHeld(db)),
        Denial::Internal | Denial::PathParameters | Denial::MethodOverride => {
            Refusal::new("XX000", code, "Custos could not decide this request")
        }
    }
}

fn mfa(db: &str, code: Code) -> Refusal {
    Refusal::new(
        "28000",
        code,
        format!("database \"{db}\" needs a multi-factor sign-in: run `custos db login {db}` and sign in with MFA"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::SignIn;

    #[test]
    fn authentication_failures_are_28p01_and_mfa_28000() {
        let sign_in = |step_up| {
            Denial::SignIn(Box::new(SignIn { principal: None, grant: None, need_mfa: step_up, step_up, reauth: None }))
        };
        assert_eq!(denial(&sign_in(false), "ehr", false).sqlstate, "28P01");
        assert_eq!(denial(&sign_in(true), "ehr", false).sqlstate, "28000");
        assert_eq!(denial(&sign_in(false), "ehr", true).sqlstate, "57P01");
        assert_eq!(denial(&Denial::InvalidToken(Code::BearerExpired), "ehr", false).sqlstate, "28P01");
        let p = denial(&Denial::Policy { rule: Some("p, alice, *, db:ehr, connect, deny".into()) }, "ehr", false);
        assert_eq!(p.sqlstate, "28000");
        assert!(p.message.contains("\"ehr\"") && !p.message.contains("alice"), "{}", p.message);
    }

    #[test]
    fn every_refusal_has_a_class_and_a_reason_of_the_vocabulary() {
        use Why::*;
        for w in [
            Plaintext,
            UnknownDatabase("x"),
            ClientEncoding,
            Replication,
            ProtocolVersion,
            ProtocolViolation,
            UserMismatch,
            AuthRate,
            NoDatabaseRole("x"),
            RoleNotHeld("x"),
            TooManyConnections("x"),
            UpstreamRefused("x"),
            UpstreamUnavailable("x"),
            Unparseable,
            StatementTooLarge,
            FunctionCall,
            NonStandardStrings,
            UnknownStatement,
        ] {
            let r = why(w);
            assert_eq!(r.sqlstate.len(), 5, "{w:?}");
            assert!(r.sqlstate.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()), "{w:?}");
            assert!(!r.reason.as_str().is_empty());
        }
    }
}
