//! The few messages Custos itself says to a client: its errors, the authentication
//! request and its success, its own cancel key, ReadyForQuery, NegotiateProtocolVersion.

use crate::postgres::messages::{encoded, frame, put_cstr};
use bytes::{BufMut, Bytes};

/// An ErrorResponse (`severity`: `ERROR` or `FATAL`).
pub fn error(severity: &str, sqlstate: &str, message: &str) -> Bytes {
    encoded(|out| {
        frame(out, b'E', |b| {
            for (field, value) in [(b'S', severity), (b'V', severity), (b'C', sqlstate), (b'M', message)] {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(0);
        })
    })
}

/// ReadyForQuery with the transaction status `I`, `T` or `E`.
pub fn ready(status: u8) -> Bytes {
    encoded(|out| frame(out, b'Z', |b| b.put_u8(status)))
}

/// AuthenticationCleartextPassword: the token is sent as the password, inside TLS.
pub fn ask_password() -> Bytes {
    encoded(|out| frame(out, b'R', |b| b.put_i32(3)))
}

/// AuthenticationOk.
pub fn auth_ok() -> Bytes {
    encoded(|out| frame(out, b'R', |b| b.put_i32(0)))
}

/// BackendKeyData with Custos's own key for this connection.
pub fn key_data(pid: i32, secret: &[u8]) -> Bytes {
    encoded(|out| {
        frame(out, b'K', |b| {
            b.put_i32(pid);
            b.put_slice(secret);
        })
    })
}

/// NegotiateProtocolVersion: the newest minor version spoken, and the protocol options
/// not recognised.
pub fn negotiate(minor: u16, unknown: &[String]) -> Bytes {
    encoded(|out| {
        frame(out, b'v', |b| {
            b.put_i32(3 << 16 | i32::from(minor));
            b.put_i32(unknown.len() as i32);
            for o in unknown {
                put_cstr(b, o);
            }
        })
    })
}
