//! Opening the upstream session: the startup packet (protocol 3.0, `user`, `database`,
//! then the front end's parameters), authentication as the server asks, then the
//! session's start up to the first ReadyForQuery, keeping what the client must be told
//! (ParameterStatus, notices) and the key a cancel needs.
//!
//! Methods: trust (Ok at once), SCRAM-SHA-256 (the server's signature checked before its
//! Ok is believed), MD5, and a cleartext password only inside TLS: over plaintext it is
//! refused, never sent. GSSAPI, SSPI and Kerberos are refused.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::stream::{open, Stream};
use super::{bounded, BackendError, Failure, Upstream};
use crate::postgres::auth::md5;
use crate::postgres::auth::scram::{ScramClient, ScramFinal};
use crate::postgres::messages::authentication::{Authentication, SCRAM_SHA_256};
use crate::postgres::messages::backend_key_data::BackendKeyData;
use crate::postgres::messages::error_response::ErrorResponse;
use crate::postgres::messages::parameter_status::ParameterStatus;
use crate::postgres::messages::password::Password;
use crate::postgres::messages::startup::{encode_startup, PROTOCOL_OPTION_PREFIX};
use crate::postgres::messages::tags::backend as tag;
use crate::postgres::messages::{read_message, WireError};

/// The largest message accepted during start-up (authentication requests, parameters,
/// notices are all small).
const STARTUP_MESSAGE_MAX: usize = 64 * 1024;
/// How many messages a start-up may take before it is given up on: memory stays bounded
/// whatever the server sends.
const STARTUP_MESSAGES_MAX: usize = 512;

/// An upstream session ready for statements.
#[derive(Debug)]
pub struct Backend {
    pub stream: Stream,
    /// The server's ParameterStatus messages, in order.
    pub params: Vec<ServerParam>,
    /// For a cancel; `None` if the server sent none.
    pub key: Option<BackendKeyData>,
    pub tls: bool,
    /// NoticeResponse messages of the start-up, as received, to pass on.
    pub notices: Vec<Bytes>,
    /// Bytes read past the ReadyForQuery: the start of what comes next. Continue reading
    /// the stream with this buffer.
    pub buffered: BytesMut,
}

/// One ParameterStatus: decoded, and as received, to pass on unchanged.
#[derive(Debug, Clone)]
pub struct ServerParam {
    pub name: String,
    pub value: String,
    pub raw: Bytes,
}

/// Opens an upstream session (see the module's note), all of it within `target.timeout`.
pub async fn connect(target: &Upstream<'_>) -> Result<Backend, BackendError> {
    bounded(target, async {
        let startup = startup_packet(target)?;
        let mut stream = open(target).await?;
        stream.write_all(&startup).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        start_session(target, stream).await
    })
    .await
}

fn io(e: std::io::Error) -> Failure {
    Failure::Protocol(WireError::Io(e))
}

fn startup_packet(target: &Upstream<'_>) -> Result<BytesMut, Failure> {
    let reserved = |name: &str| matches!(name, "user" | "database") || name.starts_with(PROTOCOL_OPTION_PREFIX);
    if target.params.iter().any(|(name, _)| reserved(name) || name.is_empty()) {
        return Err(Failure::Protocol(WireError::Malformed("a startup parameter Custos sets itself")));
    }
    let fields = [("user", target.user), ("database", target.dbname)];
    let all = fields.into_iter().chain(target.params.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    if all.clone().any(|(n, v)| n.contains('\0') || v.contains('\0')) || target.password.contains('\0') {
        return Err(Failure::Protocol(WireError::Malformed("a NUL inside a startup field or the password")));
    }
    let mut out = BytesMut::new();
    encode_startup(&mut out, all);
    Ok(out)
}

/// Where authentication stands.
enum Auth {
    /// Waiting for the server's first request.
    Started,
    /// A password or MD5 answer sent: Ok or an error comes next.
    Answered,
    ScramFirst(ScramClient),
    ScramFinal(ScramFinal),
    /// The server's SCRAM signature checked: its Ok comes next.
    ScramVerified,
    Done,
}

async fn start_session(target: &Upstream<'_>, mut stream: Stream) -> Result<Backend, Failure> {
    let tls = stream.is_tls();
    let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
    let (mut params, mut notices, mut key) = (Vec::new(), Vec::new(), None);
    let mut auth = Auth::Started;
    for _ in 0..STARTUP_MESSAGES_MAX {
        let msg = read_message(&mut stream, &mut buf, STARTUP_MESSAGE_MAX).await?.ok_or(WireError::Truncated)?;
        match msg.tag {
            tag::AUTHENTICATION => {
                auth = authenticate(auth, Authentication::decode(&msg.body)?, target, tls, &mut out)?;
                if !out.is_empty() {
                    stream.write_all(&out).await.map_err(io)?;
                    stream.flush().await.map_err(io)?;
                    out.clear();
                }
            }
            tag::ERROR_RESPONSE => {
                let e = ErrorResponse::decode(&msg.body)?;
                tracing::debug!(database = %target.addr(), code = %e.code, message = %e.message, "the upstream refused the session");
                return Err(Failure::Refused { code: e.code.into_owned() });
            }
            tag::NOTICE_RESPONSE => notices.push(msg.into_raw()),
            _ if !matches!(auth, Auth::Done) => {
                return Err(WireError::Malformed("message before authentication ended").into())
            }
            tag::PARAMETER_STATUS => {
                let p = ParameterStatus::decode(&msg.body)?;
                let (name, value) = (p.name.to_owned(), p.value.to_owned());
                params.push(ServerParam { name, value, raw: msg.into_raw() });
            }
            tag::BACKEND_KEY_DATA if key.is_none() => key = Some(BackendKeyData::decode(&msg.body)?),
            tag::READY_FOR_QUERY => return Ok(Backend { stream, params, key, tls, notices, buffered: buf }),
            _ => return Err(WireError::Malformed("unexpected message during start-up").into()),
        }
    }
    Err(WireError::Malformed("start-up takes too many messages").into())
}

/// Answers one authentication request, writing the answer (if any) to `out`.
fn authenticate(
    state: Auth,
    req: Authentication<'_>,
    target: &Upstream<'_>,
    tls: bool,
    out: &mut BytesMut,
) -> Result<Auth, Failure> {
    Ok(match (state, req) {
        (Auth::Started | Auth::Answered | Auth::ScramVerified, Authentication::Ok) => Auth::Done,
        // An Ok before the server proved it holds the verifier proves nothing.
        (Auth::ScramFirst(_) | Auth::ScramFinal(_), Authentication::Ok) => return Err(Failure::BadServerSignature),
        (Auth::Started, Authentication::CleartextPassword) => {
            if !tls {
                return Err(Failure::AuthMethod("a cleartext password over a connection without TLS"));
            }
            Password::Cleartext(target.password).encode(out);
            Auth::Answered
        }
        (Auth::Started, Authentication::Md5Password { salt }) => {
            Password::Cleartext(&md5::answer(target.user, target.password, salt)).encode(out);
            Auth::Answered
        }
        (Auth::Started, Authentication::Sasl { mechanisms }) => {
            if !mechanisms.contains(&SCRAM_SHA_256) {
                return Err(Failure::AuthMethod("SASL without SCRAM-SHA-256"));
            }
            let (client, first) = ScramClient::start(target.password)?;
            Password::SaslInitial { mechanism: SCRAM_SHA_256, data: Some(first.as_bytes()) }.encode(out);
            Auth::ScramFirst(client)
        }
        (Auth::ScramFirst(client), Authentication::SaslContinue(server_first)) => {
            let (fin, client_final) = client.finish(server_first)?;
            Password::SaslResponse(client_final.as_bytes()).encode(out);
            Auth::ScramFinal(fin)
        }
        (Auth::ScramFinal(fin), Authentication::SaslFinal(server_final)) => {
            fin.verify(server_final)?;
            Auth::ScramVerified
        }
        (Auth::Started, Authentication::Other(2)) => return Err(Failure::AuthMethod("Kerberos V5")),
        (Auth::Started, Authentication::Other(7 | 8)) => return Err(Failure::AuthMethod("GSSAPI")),
        (Auth::Started, Authentication::Other(9)) => return Err(Failure::AuthMethod("SSPI")),
        (Auth::Started, Authentication::Other(_)) => return Err(Failure::AuthMethod("an unknown method")),
        _ => return Err(WireError::Malformed("authentication request out of order").into()),
    })
}
