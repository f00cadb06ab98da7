//! One client connection, start to end: TLS (by `SSLRequest` or direct), the startup
//! packet judged, the password (a database token or an access token) checked by the
//! access core with the connect decision, the upstream connection opened as the
//! person's database role, then the relay until the client leaves, the upstream ends,
//! the session ends, or the gateway stops. Its end is recorded as the connect decision's
//! completion, with the reason.

use super::answer;
use super::meta::{ConnInfo, StmtMeta};
use super::refuse::{self, Refusal, Why};
use super::relay::{ClientSide, End, Pipeline, Relay};
use super::tls::{ClientStream, ALPN};
use super::Frontend;
use crate::access::{Completion, Denial, Presented, Request};
use crate::audit::{Code, Reason};
use crate::postgres::messages::startup::{self, Initial};
use crate::postgres::messages::{self, tags};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long a client has from connecting to being signed in (PostgreSQL's own
/// `authentication_timeout` default).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The newest protocol minor version spoken (3.2: longer cancel keys).
const NEWEST_MINOR: u16 = 2;

/// What the opening established.
struct Opened {
    stream: ClientStream,
    minor: u16,
    startup: super::startup::Startup,
}

pub(super) async fn serve(fe: Arc<Frontend>, tcp: TcpStream, client: String) {
    let _ = tcp.set_nodelay(true);
    let started = Instant::now();
    let opened = match tokio::time::timeout(STARTUP_TIMEOUT, open(&fe, tcp, &client)).await {
        Ok(Some(o)) => o,
        _ => return,
    };
    run(&fe, opened, client, started).await;
}

/// TLS and the startup packet. `None`: answered already (a cancel, a refusal, a client
/// that left).
async fn open(fe: &Frontend, tcp: TcpStream, client: &str) -> Option<Opened> {
    let mut first = [0u8; 1];
    let mut peek = ReadBuf::new(&mut first);
    std::future::poll_fn(|cx| tcp.poll_peek(cx, &mut peek)).await.ok()?;
    let mut stream = if first[0] == startup::TLS_HANDSHAKE {
        // PostgreSQL 17's direct TLS: the client must name the protocol by ALPN.
        let acceptor = fe.tls.as_ref()?;
        let tls = acceptor.accept(tcp).await.ok()?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
            return None;
        }
        ClientStream::Tls(Box::new(tls))
    } else {
        ClientStream::Plain(tcp)
    };
    loop {
        let initial = match startup::read_initial(&mut stream).await {
            Ok(Some(i)) => i,
            Ok(None) => return None,
            Err(_) => {
                refuse_plain(fe, &mut stream, client, refuse::why(Why::ProtocolViolation)).await;
                return None;
            }
        };
        match initial {
            Initial::SslRequest => {
                let ClientStream::Plain(tcp) = stream else { return None };
                let Some(acceptor) = fe.tls.as_ref() else {
                    let mut tcp = tcp;
                    tcp.write_all(b"N").await.ok()?;
                    stream = ClientStream::Plain(tcp);
                    continue;
                };
                let mut tcp = tcp;
                tcp.write_all(b"S").await.ok()?;
                stream = ClientStream::Tls(Box::new(acceptor.accept(tcp).await.ok()?));
            }
            Initial::GssEncRequest => {
                stream.write_all(b"N").await.ok()?;
            }
            Initial::Cancel(c) => {
                fe.cancel(c, client).await;
                return None;
            }
            Initial::Unsupported { .. } => {
                refuse_plain(fe, &mut stream, client, refuse::why(Why::ProtocolVersion)).await;
                return None;
            }
            Initial::Startup { minor, params, protocol_options, .. } => {
                if !stream.is_tls() && !fe.settings.allow_plaintext {
                    refuse_plain(fe, &mut stream, client, refuse::why(Why::Plaintext)).await;
                    return None;
                }
                let spoken = if minor == 2 { 2 } else { 0 };
                if minor > NEWEST_MINOR || minor == 1 || !protocol_options.is_empty() {
                    stream.write_all(&answer::negotiate(spoken, &protocol_options)).await.ok()?;
                }
                let startup = match super::startup::judge(&params) {
                    Ok(s) => s,
                    Err(w) => {
                        refuse_plain(fe, &mut stream, client, refuse::why(w)).await;
                        return None;
                    }
                };
                return Some(Opened { stream, minor: spoken, startup });
            }
        }
    }
}

/// Refuses a connection before anyone is known: recorded, answered with a FATAL.
async fn refuse_plain(fe: &Frontend, stream: &mut ClientStream, client: &str, r: Refusal) {
    let info = ConnInfo::new(client.to_string(), String::new(), String::new());
    let meta = StmtMeta { info: &info, described: None, connect: true };
    fe.access().refused(&meta, None, r.reason.into());
    let _ = stream.write_all(&answer::error("FATAL", r.sqlstate, &r.message)).await;
    let _ = stream.shutdown().await;
}

async fn fatal(stream: &mut ClientStream, r: &Refusal) {
    let _ = stream.write_all(&answer::error("FATAL", r.sqlstate, &r.message)).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// Sign-in, the connect decision, the upstream, the relay.
async fn run(fe: &Frontend, o: Opened, client: String, started: Instant) {
    let Opened { mut stream, minor, startup } = o;
    let Some(at) = fe.databases.iter().position(|d| d.name == startup.database) else {
        let r = refuse::why(Why::UnknownDatabase(&startup.database));
        refuse_plain(fe, &mut stream, &client, r).await;
        return;
    };
    let (db, upstream_tls) = (&fe.databases[at], &fe.upstream_tls[at]);
    let info = ConnInfo::new(client.clone(), db.name.clone(), format!("{}:{}", db.host, db.port));
    let meta = StmtMeta { info: &info, described: None, connect: true };
    let access = fe.access();
    let rate_key_user = format!("u:{}", startup.user);
    let rate_key_addr = format!("a:{client}");
    if fe.auth_failures.over(&rate_key_user) || fe.auth_failures.over(&rate_key_addr) {
        let r = refuse::why(Why::AuthRate);
        access.refused(&meta, None, r.reason.into());
        fatal(&mut stream, &r).await;
        return;
    }
    // The password: a database token or an access token, sent inside TLS.
    if stream.write_all(&answer::ask_password()).await.is_err() {
        return;
    }
    let mut buf = BytesMut::with_capacity(super::relay::CHUNK);
    let msg = match messages::read_message(&mut stream, &mut buf, 64 * 1024).await {
        Ok(Some(m)) if m.tag == tags::frontend::PASSWORD => m,
        _ => return,
    };
    use messages::password::{Expecting, Password};
    let Ok(Password::Cleartext(password)) = Password::decode(&msg.body, Expecting::Password) else {
        fatal(&mut stream, &refuse::why(Why::ProtocolViolation)).await;
        return;
    };
    let req = Request {
        credentials: Presented { password: Some(password), ..Presented::default() },
        route: None,
        path: None,
        database: Some(db),
        held: None,
        claimed_user: Some(&startup.user),
        role: startup.role.as_deref(),
        action: "connect",
        client: &client,
        objection: None,
        start: started,
        status: |_| 0,
        meta: &meta,
    };
    let permit = match access.decide(&req).await {
        Ok(p) => p,
        Err(d) => {
            if matches!(d, Denial::SignIn(_) | Denial::InvalidToken(_) | Denial::UserMismatch) {
                fe.auth_failures.hit(&rate_key_user);
                fe.auth_failures.hit(&rate_key_addr);
            }
            if matches!(d, Denial::SignIn(_)) {
                // Not recorded by the core: a sign-in is the front end's to answer.
                access.refused(&meta, None, d.reason());
            }
            crate::metrics::DB_CONNECTS.with_label_values(&[&db.name, d.reason().as_str()]).inc();
            fatal(&mut stream, &refuse::denial(&d, &db.name, false)).await;
            return;
        }
    };
    crate::metrics::DB_CONNECTS.with_label_values(&[&db.name, "allowed"]).inc();
    let Some(principal) = permit.principal.clone() else { return };
    let verdict = permit.verdict.clone();
    let end = |reason: Reason, sqlstate: Option<&str>| {
        let done = Completion {
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            duration: started.elapsed(),
            reason: Some(reason),
            audit_phase: permit.audit_phase,
            upstream_phase: None,
            rows: None,
            sqlstate: sqlstate.map(str::to_string),
        };
        access.complete(&meta, (Some(&principal), &verdict), done);
    };
    let subject = principal.user.subject.clone();
    let Some(_slot) =
        fe.connections.take(&db.name, &subject, db.limits.max_connections_per_user, db.limits.max_connections)
    else {
        let r = refuse::why(Why::TooManyConnections(&db.name));
        end(r.reason.into(), Some(r.sqlstate));
        fatal(&mut stream, &r).await;
        return;
    };
    let Some(role) = permit.db_role.and_then(|i| db.roles.get(i)) else { return };
    let app = startup.application_name.as_deref();
    let backend = match super::upstream::open(db, upstream_tls, role, &subject, app, &startup.passed).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(database = %db.name, error = %e, "the database refused or could not be reached");
            let kind = if e.refused() { "refused" } else { "unavailable" };
            crate::metrics::DB_UPSTREAM_ERRORS.with_label_values(&[&db.name, kind]).inc();
            let r = refuse::why(if e.refused() {
                Why::UpstreamRefused(&db.name)
            } else {
                Why::UpstreamUnavailable(&db.name)
            });
            end(r.reason.into(), Some(r.sqlstate));
            fatal(&mut stream, &r).await;
            return;
        }
    };
    if backend.parameter_messages().any(|p| !super::relay::standard_strings(&p[messages::Header::SIZE..])) {
        // A database or role set to it: statements would be read differently upstream.
        let r = refuse::why(Why::UpstreamRefused(&db.name));
        end(r.reason.into(), Some(r.sqlstate));
        fatal(&mut stream, &r).await;
        return;
    }
    // Signed in: AuthenticationOk, the upstream's parameters, Custos's own cancel key.
    let key = fe.keys.issue(minor, backend.cancel_target());
    let mut hello = BytesMut::new();
    hello.extend_from_slice(&answer::auth_ok());
    for p in backend.parameter_messages() {
        hello.extend_from_slice(p);
    }
    hello.extend_from_slice(&answer::key_data(key.pid, &key.secret));
    hello.extend_from_slice(&answer::ready(b'I'));
    // Whatever the upstream sent after its own ReadyForQuery (a notice) follows it.
    hello.extend_from_slice(&backend.buffered);
    if stream.write_all(&hello).await.is_err() || stream.flush().await.is_err() {
        fe.keys.remove(key.pid);
        end(Code::ClientClosed.into(), None);
        return;
    }
    // What ends the connection from outside: the session's end, the gateway's.
    let auth = fe.auth.as_ref();
    let mut hold = match (&principal.credential, auth) {
        (crate::access::Credential::Session { hash }, Some(a)) => Some(a.store.hold(hash, &principal.user, None).await),
        (crate::access::Credential::Bearer { expires, .. }, Some(a)) => {
            Some(a.store.hold_user(&principal.user.subject, *expires))
        }
        _ => None,
    };
    let pipeline = Pipeline::new();
    let relay = Relay::new(access, db, &info, principal.clone(), verdict.clone(), &pipeline);
    let mut side = ClientSide::default();
    let (mut up_r, mut up_w) = tokio::io::split(backend.stream);
    let (mut cl_r, mut cl_w) = tokio::io::split(stream);
    let _open = super::Open::new();
    let gauge = crate::metrics::DB_CONNECTIONS.with_label_values(&[&db.name]);
    gauge.inc();
    let _gauge = scopeguard(move || gauge.dec());
    let mut shutdown = super::STOP.subscribe();
    let outcome = {
        let client_dir = relay.client_loop(&mut side, &mut cl_r, &mut up_w, &mut buf);
        let server_dir = relay.server_loop(&mut up_r, &mut cl_w);
        tokio::select! {
            e = client_dir => Outcome::Relay(e),
            e = server_dir => Outcome::Relay(e),
            why = async { match hold.as_mut() { Some(h) => h.ended().await, None => std::future::pending().await } } => Outcome::SessionEnded(why),
            _ = shutdown.wait_for(|s| *s == super::Stop::Closing) => Outcome::Shutdown,
        }
    };
    fe.keys.remove(key.pid);
    let (reason, told): (Reason, Option<Refusal>) = match outcome {
        Outcome::Relay(End::ClientClosed) => (Code::ClientClosed.into(), None),
        Outcome::Relay(End::UpstreamClosed) => (Code::UpstreamClosed.into(), None),
        Outcome::Relay(End::NonStandardStrings) => (
            Code::ProtocolViolation.into(),
            Some(Refusal {
                sqlstate: "0A000",
                message: "terminating connection: Custos requires standard_conforming_strings = on".into(),
                reason: Code::ProtocolViolation,
            }),
        ),
        Outcome::Relay(End::ProtocolViolation) => {
            (Code::ProtocolViolation.into(), Some(refuse::why(Why::ProtocolViolation)))
        }
        Outcome::Relay(End::AuditUnavailable) => {
            (Code::AuditUnavailable.into(), Some(refuse::denial(&Denial::AuditUnavailable, &db.name, true)))
        }
        Outcome::Relay(End::SessionEnded) => {
            let d = Denial::SignIn(Box::new(crate::access::SignIn {
                principal: None,
                grant: None,
                need_mfa: false,
                step_up: false,
                reauth: None,
            }));
            (Code::SessionEnded.into(), Some(refuse::denial(&d, &db.name, true)))
        }
        Outcome::SessionEnded(why) => {
            let message = format!("terminating connection: your Custos session ended ({})", why.as_str());
            (Reason::named(why.as_str()), Some(Refusal { sqlstate: "57P01", message, reason: Code::SessionEnded }))
        }
        Outcome::Shutdown => (
            Code::Shutdown.into(),
            Some(Refusal {
                sqlstate: "57P01",
                message: "terminating connection: the Custos gateway is shutting down".into(),
                reason: Code::Shutdown,
            }),
        ),
    };
    // A statement still running is cancelled before the connection goes.
    if told.is_some() && pipeline.busy() {
        backend.cancel.cancel().await;
    }
    relay.abandon(reason.clone());
    if let Some(r) = &told {
        let _ = cl_w.write_all(&answer::error("FATAL", r.sqlstate, &r.message)).await;
        let _ = cl_w.flush().await;
    }
    let _ = cl_w.shutdown().await;
    let _ = up_w.write_all(&terminate()).await;
    end(reason, told.as_ref().map(|r| r.sqlstate));
}

enum Outcome {
    Relay(End),
    SessionEnded(crate::session::EndReason),
    Shutdown,
}

fn terminate() -> bytes::Bytes {
    messages::encoded(|out| messages::frame(out, tags::frontend::TERMINATE, |_| {}))
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
