//! The client side of SCRAM-SHA-256, in two steps that own their state:
//! [`ScramClient::start`] gives the client-first message (a fresh nonce from the system's
//! CSPRNG), [`ScramClient::finish`] takes the server-first message and gives the
//! client-final one (the proof), and [`ScramFinal::verify`] checks the server's signature,
//! which only a holder of the password's verifier can compute: a mismatch means the
//! server is not the database it claims to be, and the connection must not be used.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::salted::salted_password;
use super::{hmac_sha256, stored_key};

/// The gs2 header: no channel binding, no authorisation identity.
const GS2_HEADER: &str = "n,,";
/// `base64(GS2_HEADER)`, the `c=` attribute of the client-final message.
const CHANNEL_BINDING: &str = "biws";
/// Raw nonce bytes (libpq uses 18, giving 24 base64 characters).
const NONCE_LEN: usize = 18;
/// Above any iteration count a real server sets (PostgreSQL's default is 4096): a larger
/// one would have the gateway spend seconds of CPU on one sign-in at a server's request.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    Nonce,
    #[error("SCRAM iteration count out of range")]
    Iterations,
    #[error("the system's random source failed")]
    Random,
    /// The server-final message carried `e=`: the server refused the proof.
    #[error("the server refused the SCRAM proof ({0})")]
    Refused(String),
    #[error("the server's SCRAM signature does not match")]
    BadServerSignature,
}

/// The exchange after the client-first message.
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    nonce: String,
}

/// The exchange after the client-final message: what checks the server's signature.
pub struct ScramFinal {
    server_key: hmac::Key,
    auth_message: String,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramClient(..)")
    }
}

impl std::fmt::Debug for ScramFinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramFinal(..)")
    }
}

impl ScramClient {
    /// Starts an exchange: the state and the client-first message to send as the
    /// SASLInitialResponse's data.
    pub fn start(password: &str) -> Result<(ScramClient, String), ScramError> {
        let mut raw = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut raw).map_err(|_| ScramError::Random)?;
        Ok(ScramClient::with_nonce("", password, B64.encode(raw)))
    }

    /// With a given user name and nonce: the test vectors', not for the wire.
    fn with_nonce(user: &str, password: &str, nonce: String) -> (ScramClient, String) {
        let client_first_bare = format!("n={user},r={nonce}");
        let first = format!("{GS2_HEADER}{client_first_bare}");
        // SASLprep as PostgreSQL does it: a password it cannot prepare is used as it is.
        let password = stringprep::saslprep(password).map_or_else(|_| password.to_owned(), |p| p.into_owned());
        (ScramClient { password, client_first_bare, nonce }, first)
    }

    /// Takes the server-first message (the SASLContinue data) and gives the client-final
    /// message to send as the SASLResponse.
    pub fn finish(self, server_first: &[u8]) -> Result<(ScramFinal, String), ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut attrs = server_first.split(',');
        let nonce = attr(attrs.next(), 'r')?;
        let salt = attr(attrs.next(), 's')?;
        let iterations = attr(attrs.next(), 'i')?;
        // Extensions after these may follow and are ignored, unless mandatory (`m=`), which
        // would come first and so fail `r=` above.
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::Nonce);
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations.parse().map_err(|_| ScramError::Iterations)?;
        if iterations > MAX_ITERATIONS {
            return Err(ScramError::Iterations);
        }
        let iterations = NonZeroU32::new(iterations).ok_or(ScramError::Iterations)?;

        let salted = salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let server_key = hmac::Key::new(hmac::HMAC_SHA256, hmac_sha256(&salted, b"Server Key").as_ref());

        let without_proof = format!("c={CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(stored_key(client_key.as_ref()).as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let client_final = format!("{without_proof},p={}", B64.encode(proof));
        Ok((ScramFinal { server_key, auth_message }, client_final))
    }
}

impl ScramFinal {
    /// Checks the server-final message (the SASLFinal data), in constant time.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = text.split(',').next();
        if let Ok(error) = attr(first, 'e') {
            return Err(ScramError::Refused(error.to_owned()));
        }
        let signature = B64.decode(attr(first, 'v')?).map_err(|_| ScramError::Malformed("signature is not base64"))?;
        hmac::verify(&self.server_key, self.auth_message.as_bytes(), &signature)
            .map_err(|_| ScramError::BadServerSignature)
    }
}

/// The value of attribute `name` in `part` (`name=value`).
fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    part.and_then(|p| p.strip_prefix(name)).and_then(|p| p.strip_prefix('=')).ok_or(ScramError::Malformed("attribute"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn vector() -> (ScramClient, String) {
        ScramClient::with_nonce("user", "pencil", NONCE.to_owned())
    }

    #[test]
    fn rfc_7677_vector() {
        let (client, first) = vector();
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (fin, client_final) = client.finish(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(client_final, CLIENT_FINAL);
        fin.verify(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_wrong_server_signature_is_an_error() {
        let (fin, _) = vector().0.finish(SERVER_FIRST.as_bytes()).unwrap();
        let forged = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(fin.verify(forged.as_bytes()), Err(ScramError::BadServerSignature));
        assert_eq!(fin.verify(b"e=invalid-proof"), Err(ScramError::Refused("invalid-proof".into())));
        assert!(matches!(fin.verify(b"x=1"), Err(ScramError::Malformed(_))));
        assert!(matches!(fin.verify(b"v=***"), Err(ScramError::Malformed(_))));
        // The right signature for another password does not pass either.
        let (other, _) = ScramClient::with_nonce("user", "pencil2", NONCE.to_owned());
        let (other, _) = other.finish(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(other.verify(SERVER_FINAL.as_bytes()), Err(ScramError::BadServerSignature));
    }

    #[test]
    fn the_server_first_message_is_checked() {
        let bad = [
            ("r=someoneelse%x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ScramError::Nonce),
            ("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ScramError::Nonce),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", ScramError::Iterations),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967295", ScramError::Iterations),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1", ScramError::Iterations),
            ("m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ScramError::Malformed("attribute")),
            ("r=rOprNGfwEbeRWgbNEkqOx,i=4096", ScramError::Malformed("attribute")),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096", ScramError::Malformed("salt is not base64")),
        ];
        for (msg, want) in bad {
            assert_eq!(vector().0.finish(msg.as_bytes()).unwrap_err(), want, "{msg}");
        }
    }

    #[test]
    fn a_fresh_exchange_has_a_fresh_nonce_and_no_user_name() {
        let (a, first_a) = ScramClient::start("pw").unwrap();
        let (_, first_b) = ScramClient::start("pw").unwrap();
        assert_ne!(first_a, first_b);
        assert!(first_a.starts_with("n,,n=,r="));
        assert_eq!(a.nonce.len(), 24);
        assert!(!format!("{a:?}").contains("pw"));
    }

    #[test]
    fn the_password_is_saslprepped_and_kept_raw_when_it_cannot_be() {
        // U+00AD (soft hyphen) maps to nothing under SASLprep: same key as without it.
        let (a, _) = ScramClient::with_nonce("user", "pen\u{ad}cil", NONCE.to_owned());
        let (a, _) = a.finish(SERVER_FIRST.as_bytes()).unwrap();
        a.verify(SERVER_FINAL.as_bytes()).unwrap();
        // A prohibited character (U+0007) fails SASLprep: the password is used unchanged.
        let (b, _) = ScramClient::with_nonce("user", "pencil\u{7}", NONCE.to_owned());
        assert_eq!(b.password, "pencil\u{7}");
    }
}
