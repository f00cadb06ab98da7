//! Why sign-in and the provider's client fail: the errors of the identity area, and the
//! audit reason for a failed ID token check.

use openidconnect::{ClaimsVerificationError, SignatureVerificationError};

/// Why a sign-in did not happen.
#[derive(Debug)]
pub enum LoginError {
    /// The provider could not be reached: the user gets "try again later".
    IdpUnavailable(String),
    /// The sign-in was refused; `reason` goes to the audit record.
    Failed { reason: &'static str, detail: String },
}

impl LoginError {
    pub(super) fn failed(reason: &'static str, detail: impl std::fmt::Display) -> LoginError {
        LoginError::Failed { reason, detail: detail.to_string() }
    }
}

/// Why the identity provider's client could not be set up, or its discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("HTTP client for the identity provider: {0}")]
    HttpClient(reqwest::Error),
    /// `oidc.issuer` is not a URL discovery can use.
    #[error("{0}")]
    Issuer(url::ParseError),
    /// The discovery document or the keys could not be fetched or read (with the causes).
    #[error("{0}")]
    Discovery(String),
}

/// Why verified claims name no user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the token's email is not verified (email_verified)")]
    EmailNotVerified,
    /// The claim `oidc.subject_claim` names is missing, empty or not a string or number.
    #[error("the token has no `{0}` claim (oidc.subject_claim)")]
    NoClaim(String),
}

/// The audit reason for a failed ID token check.
pub(super) fn reason_of(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => "expired",
        ClaimsVerificationError::InvalidAudience(_) => "audience",
        ClaimsVerificationError::InvalidIssuer(_) => "issuer",
        ClaimsVerificationError::InvalidNonce(_) => "nonce",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(_) | SignatureVerificationError::UnsupportedAlg(_),
        ) => "algorithm",
        ClaimsVerificationError::SignatureVerification(_) => "signature",
        ClaimsVerificationError::InvalidAuthContext(_) | ClaimsVerificationError::InvalidAuthTime(_) => "auth_context",
        ClaimsVerificationError::InvalidSubject(_) => "subject",
        _ => "id_token",
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
