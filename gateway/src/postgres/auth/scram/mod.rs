//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: no channel binding, the
//! user name left empty in the exchange (the server takes the startup packet's). The
//! client half, which Custos uses towards the upstream, is `client.rs`; a server half
//! (for clients that sign in to Custos with SCRAM) would sit beside it and share the
//! primitives here.

use ring::{digest, hmac};

pub mod client;
mod salted;

pub use client::{ScramClient, ScramError, ScramFinal};

/// HMAC-SHA-256 of `msg` under `key`.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
}

/// `H(ClientKey)`, what the server holds to check a proof.
fn stored_key(client_key: &[u8]) -> digest::Digest {
    digest::digest(&digest::SHA256, client_key)
}
