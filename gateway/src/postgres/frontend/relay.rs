//! The statement loop of a signed-in connection: client and upstream bytes relayed as they
//! came, with every statement decided and recorded on the way.
//!
//! Client to upstream ([`Relay::client_loop`]): each message is read whole (but `CopyData`
//! and large `Bind`s, which are streamed), and
//! - a `Query` is split into its statements and an `Execute` looked up to the statement
//!   its portal was bound from; each gets a decision record, durable before the message
//!   is forwarded ([`Access::decide`] with the connection's principal);
//! - a statement PostgreSQL's parser would not accept, or one over the size limit, is
//!   refused and never forwarded; the client gets the error from Custos, in order with
//!   the server's answers, and (in the extended protocol) the messages up to `Sync` are
//!   dropped, as the server itself would drop them.
//!
//! Upstream to client ([`Relay::server_loop`]): the bytes are forwarded in the chunks they
//! arrived in; only message headers are read, and the bodies of `CommandComplete`,
//! `ErrorResponse` and `ReadyForQuery`. A queue of what the server owes ([`Expect`]), in
//! the order the client's messages went, says which statement each answer is about: its
//! completion record (rows, SQLSTATE, duration) is written as its answer passes.
//!
//! Memory per connection is bounded: a statement by `max_statement_bytes`, any other held
//! message by [`HOLD_MAX`], and rows and `COPY` data pass through a buffer of
//! [`CHUNK`] bytes.

use super::answer;
use super::meta::{ConnInfo, StmtMeta};
use super::refuse::{self, Why};
use crate::access::{Access, Completion, Denial, Presented, Principal, Request, Verdict};
use crate::audit::{Code, Reason};
use crate::postgres::messages::{self, tags, Header, Reader};
use crate::postgres::statements::{Cache, Statement};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// The most bytes of a message other than a statement that is held whole.
pub const HOLD_MAX: usize = 1 << 20;
/// What a `Bind` is read of before its names must have ended (it is streamed past that).
const BIND_PREFIX: usize = 8 * 1024;
/// Read size in both directions.
pub const CHUNK: usize = 64 * 1024;
/// Prepared statements and portals a connection may hold (a client that never closes
/// them cannot grow Custos without bound).
const MAX_NAMED: usize = 10_000;
/// The longest statement or portal name kept (PostgreSQL's identifiers stop at 63 bytes;
/// a client has no need of more, and 10,000 names of a megabyte each would not be
/// bounded memory).
const MAX_NAME: usize = 1024;

/// Why the relay stopped.
#[derive(Debug)]
pub enum End {
    ClientClosed,
    UpstreamClosed,
    /// The session ended under the connection (the access core said so at a statement).
    SessionEnded,
    /// The decision record could not be made durable (`audit.on_failure = deny`).
    AuditUnavailable,
    /// The client broke the protocol.
    ProtocolViolation,
    /// The session turned `standard_conforming_strings` off: backslashes in string
    /// literals would then read differently to the server than to Custos's parser, so
    /// what is recorded might not be what runs.
    NonStandardStrings,
}

/// A statement the server owes an answer for, and what it has answered so far.
struct Pending {
    meta: Arc<Described>,
    start: Instant,
    rows: u64,
    audit_phase: Option<(Duration, Duration)>,
}

/// What the server owes, in the order the messages went.
enum Expect {
    /// A simple `Query`: one answer per statement, then ReadyForQuery.
    Query(VecDeque<Pending>),
    Execute(Pending),
    /// A Parse of this statement name, a Bind of this portal name.
    Parse(String),
    Bind(String),
    Describe,
    Close,
    Sync,
    /// An error of Custos's own, written when everything before it is answered; with a
    /// ReadyForQuery after it when it answers a whole `Query` or `FunctionCall`.
    Injected {
        error: Bytes,
        ready: bool,
    },
}

/// The queue between the two directions.
#[derive(Default)]
pub struct Pipeline {
    /// Syncs the server has answered (ReadyForQuery).
    syncs_answered: std::sync::atomic::AtomicU64,
    answered: Notify,
    /// Statement and portal names whose Parse or Bind the server failed or skipped: what
    /// they name there is not what the client side last saw.
    poisoned: Mutex<Vec<(bool, String)>>,
    queue: Mutex<VecDeque<Expect>>,
    /// The transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    status: Mutex<u8>,
    wake: Notify,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline { status: Mutex::new(b'I'), ..Default::default() }
    }

    fn push(&self, e: Expect) {
        let injected = matches!(e, Expect::Injected { .. });
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(e);
        if injected {
            self.wake.notify_one();
        }
    }

    /// Waits until the server has answered `sync` Syncs.
    async fn answered_up_to(&self, sync: u64) {
        use std::sync::atomic::Ordering;
        loop {
            let notified = self.answered.notified();
            if self.syncs_answered.load(Ordering::Acquire) >= sync {
                return;
            }
            notified.await;
        }
    }

    /// Whether a statement is running (its answer not complete).
    pub fn busy(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|e| matches!(e, Expect::Query(_) | Expect::Execute(_)))
    }
}

/// A statement (or a prepared statement's statements), described for its records.
pub struct Described {
    pub verb: &'static str,
    pub objects: Vec<String>,
    pub fingerprint: Option<String>,
    /// Its span (under the connection's) in the OTLP sink.
    pub span_id: String,
}

impl Described {
    fn of(stmts: &[Statement]) -> Described {
        let mut objects: Vec<String> = Vec::new();
        for s in stmts {
            for o in s.objects.iter() {
                let name = match o.kind {
                    crate::postgres::statements::ObjectKind::Relation => o.name.to_string(),
                    crate::postgres::statements::ObjectKind::Function => format!("{}()", o.name),
                    crate::postgres::statements::ObjectKind::Setting => format!("setting:{}", o.name),
                };
                if !objects.contains(&name) {
                    objects.push(name);
                }
            }
        }
        Described {
            verb: stmts.first().map_or("empty", |s| s.verb.as_str()),
            objects,
            fingerprint: stmts.first().map(|s| s.fingerprint.to_string()),
            span_id: super::meta::random_hex(8),
        }
    }
}

/// One signed-in connection's relay state.
pub struct Relay<'a> {
    pub access: Access<'a>,
    pub db: &'a crate::config::Database,
    pub info: &'a ConnInfo,
    pub principal: Principal,
    pub verdict: Verdict,
    pub pipeline: &'a Pipeline,
}

/// What only the client-to-upstream direction keeps.
pub struct ClientSide {
    cache: Cache,
    /// Prepared statements and portals by name (`""`: the unnamed ones).
    statements: HashMap<String, Arc<[Statement]>>,
    portals: HashMap<String, Arc<[Statement]>>,
    /// Dropping the client's messages until `Sync`, after an error of Custos's own.
    discarding: bool,
    /// Syncs forwarded; the last one after which names changed (a Parse, Bind or Close
    /// went before it): until it is answered, whether those took is not known.
    syncs_sent: u64,
    barrier: u64,
    names_changed: bool,
}

impl ClientSide {
    /// Forgets the names the server failed or skipped.
    fn apply_poison(&mut self, pipeline: &Pipeline) {
        let poisoned = std::mem::take(&mut *pipeline.poisoned.lock().unwrap_or_else(|p| p.into_inner()));
        for (statement, name) in poisoned {
            if statement {
                self.statements.remove(&name);
            } else {
                self.portals.remove(&name);
            }
        }
    }

    /// SQL's own PREPARE/DEALLOCATE/DECLARE/CLOSE/DISCARD share their names with the
    /// protocol's statements and portals: after one, what a protocol name runs is no longer
    /// known here, so the names are forgotten (a Bind or Execute of them is then refused,
    /// never recorded as something else).
    fn forget_sql_names(&mut self, stmts: &[Statement]) {
        for s in stmts {
            match s.verb.as_str() {
                "deallocate" | "discard" => {
                    self.statements.clear();
                    self.portals.clear();
                }
                "declare" | "close" => self.portals.clear(),
                _ => {}
            }
        }
    }

    /// The statements of a text, through the parse cache (counted).
    fn classify(&mut self, sql: &str) -> Result<Arc<[Statement]>, crate::postgres::statements::Unparseable> {
        let hits = self.cache.hits();
        let r = self.cache.classify(sql);
        let result = if self.cache.hits() > hits { "hit" } else { "miss" };
        crate::metrics::DB_PARSE_CACHE.with_label_values(&[result]).inc();
        r
    }
}

impl Default for ClientSide {
    fn default() -> ClientSide {
        let entries = std::num::NonZeroUsize::new(256).unwrap_or(std::num::NonZeroUsize::MIN);
        ClientSide {
            cache: Cache::new(entries, 16 * 1024),
            statements: HashMap::new(),
            portals: HashMap::new(),
            discarding: false,
            syncs_sent: 0,
            barrier: 0,
            names_changed: false,
        }
    }
}

impl<'a> Relay<'a> {
    pub fn new(
        access: Access<'a>,
        db: &'a crate::config::Database,
        info: &'a ConnInfo,
        principal: Principal,
        verdict: Verdict,
        pipeline: &'a Pipeline,
    ) -> Relay<'a> {
        Relay { access, db, info, principal, verdict, pipeline }
    }

    /// Client to upstream, until either ends or a statement cannot be decided.
    pub async fn client_loop<R, W>(
        &self,
        cs: &mut ClientSide,
        client: &mut R,
        upstream: &mut W,
        buf: &mut BytesMut,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut out = BytesMut::with_capacity(CHUNK);
        let max_stmt = self.db.limits.max_statement_bytes;
        loop {
            if buf.len() < Header::SIZE && !out.is_empty() {
                // Nothing more to decide now: send what is decided before waiting.
                if upstream.write_all(&out).await.is_err() || upstream.flush().await.is_err() {
                    return End::UpstreamClosed;
                }
                out.clear();
            }
            match messages::fill(client, buf, Header::SIZE).await {
                Ok(true) => {}
                Ok(false) => return End::ClientClosed,
                Err(_) => return End::ClientClosed,
            }
            let head = [buf[0], buf[1], buf[2], buf[3], buf[4]];
            let Ok(h) = Header::parse(head) else { return End::ProtocolViolation };
            let n = h.body_len();
            {
                use tags::frontend as t;
                let named = matches!(h.tag, t::PARSE | t::BIND | t::EXECUTE | t::DESCRIBE | t::CLOSE);
                if named && cs.barrier > 0 {
                    // Names changed before the last Sync: what the server made of them
                    // must be known before a name is used again.
                    if !out.is_empty() {
                        if upstream.write_all(&out).await.is_err() || upstream.flush().await.is_err() {
                            return End::UpstreamClosed;
                        }
                        out.clear();
                    }
                    self.pipeline.answered_up_to(cs.barrier).await;
                    cs.barrier = 0;
                }
                cs.apply_poison(self.pipeline);
            }
            match h.tag {
                tags::frontend::COPY_DATA => {
                    if let Err(e) = self.stream(client, upstream, buf, &mut out, Header::SIZE + n, true).await {
                        return e;
                    }
                }
                tags::frontend::BIND if n > HOLD_MAX => {
                    let prefix = n.min(BIND_PREFIX);
                    if messages::fill(client, buf, Header::SIZE + prefix).await.is_err() {
                        return End::ClientClosed;
                    }
                    let mut r = Reader::new(&buf[Header::SIZE..Header::SIZE + prefix]);
                    let names = r.cstr().and_then(|p| Ok((p.to_string(), r.cstr()?.to_string())));
                    let Ok((portal, stmt)) = names else { return End::ProtocolViolation };
                    if portal.len() > MAX_NAME || stmt.len() > MAX_NAME {
                        return End::ProtocolViolation;
                    }
                    let forward = !cs.discarding && self.bind(cs, &portal, &stmt);
                    if let Err(e) = self.stream(client, upstream, buf, &mut out, Header::SIZE + n, forward).await {
                        return e;
                    }
                }
                tags::frontend::QUERY | tags::frontend::PARSE if n > max_stmt => {
                    if let Err(e) = self.stream(client, upstream, buf, &mut out, Header::SIZE + n, false).await {
                        return e;
                    }
                    let simple = h.tag == tags::frontend::QUERY;
                    if !(cs.discarding && !simple) {
                        self.refuse_statement(cs, Why::StatementTooLarge, simple);
                    }
                }
                _ if n > HOLD_MAX => return End::ProtocolViolation,
                _ => {
                    match messages::fill(client, buf, Header::SIZE + n).await {
                        Ok(true) => {}
                        _ => return End::ClientClosed,
                    }
                    let raw = buf.split_to(Header::SIZE + n).freeze();
                    match self.message(cs, h.tag, raw, &mut out).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = upstream.write_all(&out).await;
                            let _ = upstream.flush().await;
                            return End::ClientClosed;
                        }
                        Err(e) => return e,
                    }
                    if h.tag == tags::frontend::FLUSH || out.len() >= CHUNK {
                        if upstream.write_all(&out).await.is_err() || upstream.flush().await.is_err() {
                            return End::UpstreamClosed;
                        }
                        out.clear();
                    }
                }
            }
        }
    }

    /// Passes `total` bytes of one message (its header in `buf`) on, or drops them, without
    /// holding the message whole.
    async fn stream<R, W>(
        &self,
        client: &mut R,
        upstream: &mut W,
        buf: &mut BytesMut,
        out: &mut BytesMut,
        mut total: usize,
        forward: bool,
    ) -> Result<(), End>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            let take = total.min(buf.len());
            if forward {
                out.extend_from_slice(&buf[..take]);
            }
            buf.advance(take);
            total -= take;
            if out.len() >= CHUNK || (total > 0 && !out.is_empty()) {
                if upstream.write_all(out).await.is_err() {
                    return Err(End::UpstreamClosed);
                }
                out.clear();
            }
            if total == 0 {
                return Ok(());
            }
            buf.reserve(CHUNK);
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(End::ClientClosed),
                Ok(_) => {}
            }
        }
    }

    /// One whole client message. `Ok(false)`: the client said goodbye (Terminate).
    async fn message(&self, cs: &mut ClientSide, tag: u8, raw: Bytes, out: &mut BytesMut) -> Result<bool, End> {
        let body = &raw[Header::SIZE..];
        use tags::frontend as t;
        if cs.discarding && tag != t::SYNC && tag != t::TERMINATE {
            return Ok(true);
        }
        match tag {
            t::QUERY => {
                let Ok(q) = messages::query::Query::decode(body) else { return Err(End::ProtocolViolation) };
                let stmts = match cs.classify(q.sql) {
                    Ok(s) => s,
                    Err(_) => {
                        self.refuse_statement(cs, Why::Unparseable, true);
                        return Ok(true);
                    }
                };
                if changes_parsing(&stmts) {
                    self.refuse_statement(cs, Why::NonStandardStrings, true);
                    return Ok(true);
                }
                cs.forget_sql_names(&stmts);
                let mut pending = VecDeque::with_capacity(stmts.len());
                for s in stmts.iter() {
                    match self.decide(Described::of(std::slice::from_ref(s))).await {
                        Ok(p) => pending.push_back(p),
                        Err(e) => {
                            // Decided but never forwarded: their completion says so.
                            for p in pending {
                                self.complete(p, None, Some(Code::NotRun.into()));
                            }
                            return Err(e);
                        }
                    }
                }
                self.pipeline.push(Expect::Query(pending));
                out.extend_from_slice(&raw);
            }
            t::PARSE => {
                let Ok(p) = messages::parse::Parse::decode(body) else { return Err(End::ProtocolViolation) };
                if p.name.len() > MAX_NAME {
                    return Err(End::ProtocolViolation);
                }
                let stmts = match cs.classify(p.query) {
                    Ok(s) => s,
                    Err(_) => {
                        self.refuse_statement(cs, Why::Unparseable, false);
                        return Ok(true);
                    }
                };
                if changes_parsing(&stmts) {
                    self.refuse_statement(cs, Why::NonStandardStrings, false);
                    return Ok(true);
                }
                // A named statement is not redefined (the server refuses that until it is
                // closed): what it was stays what its Executes run.
                if p.name.is_empty() || !cs.statements.contains_key(p.name) {
                    if cs.statements.len() >= MAX_NAMED && !cs.statements.contains_key(p.name) {
                        return Err(End::ProtocolViolation);
                    }
                    cs.statements.insert(p.name.to_string(), stmts);
                }
                self.pipeline.push(Expect::Parse(p.name.to_string()));
                cs.names_changed = true;
                out.extend_from_slice(&raw);
            }
            t::BIND => {
                let Ok(b) = messages::bind::Bind::decode(body) else { return Err(End::ProtocolViolation) };
                if b.portal.len() > MAX_NAME || b.statement.len() > MAX_NAME {
                    return Err(End::ProtocolViolation);
                }
                let (portal, stmt) = (b.portal.to_string(), b.statement.to_string());
                if self.bind(cs, &portal, &stmt) {
                    out.extend_from_slice(&raw);
                }
            }
            t::EXECUTE => {
                let Ok(e) = messages::execute::Execute::decode(body) else { return Err(End::ProtocolViolation) };
                let Some(stmts) = cs.portals.get(e.portal).cloned() else {
                    self.refuse_statement(cs, Why::UnknownStatement, false);
                    return Ok(true);
                };
                let p = self.decide(Described::of(&stmts)).await?;
                self.pipeline.push(Expect::Execute(p));
                out.extend_from_slice(&raw);
            }
            t::DESCRIBE => {
                use messages::describe::{Describe, Target};
                let Ok(d) = Describe::decode(body) else { return Err(End::ProtocolViolation) };
                let known = match d.target {
                    Target::Statement(n) => cs.statements.contains_key(n),
                    Target::Portal(n) => cs.portals.contains_key(n),
                };
                if !known {
                    self.refuse_statement(cs, Why::UnknownStatement, false);
                    return Ok(true);
                }
                self.pipeline.push(Expect::Describe);
                out.extend_from_slice(&raw);
            }
            t::CLOSE => {
                use messages::describe::Target;
                let Ok(c) = messages::close::Close::decode(body) else { return Err(End::ProtocolViolation) };
                match c.target {
                    Target::Statement(n) => cs.statements.remove(n),
                    Target::Portal(n) => cs.portals.remove(n),
                };
                self.pipeline.push(Expect::Close);
                cs.names_changed = true;
                out.extend_from_slice(&raw);
            }
            t::SYNC => {
                cs.discarding = false;
                self.pipeline.push(Expect::Sync);
                cs.syncs_sent += 1;
                if std::mem::take(&mut cs.names_changed) {
                    cs.barrier = cs.syncs_sent;
                }
                out.extend_from_slice(&raw);
            }
            t::FLUSH | t::COPY_DONE | t::COPY_FAIL => out.extend_from_slice(&raw),
            t::TERMINATE => {
                out.extend_from_slice(&raw);
                return Ok(false);
            }
            t::FUNCTION_CALL => self.refuse_statement(cs, Why::FunctionCall, true),
            _ => return Err(End::ProtocolViolation),
        }
        Ok(true)
    }

    /// A Bind: the portal takes the statement's description. False: refused (the
    /// statement is not one this connection prepared).
    fn bind(&self, cs: &mut ClientSide, portal: &str, stmt: &str) -> bool {
        let Some(s) = cs.statements.get(stmt).cloned() else {
            self.refuse_statement(cs, Why::UnknownStatement, false);
            return false;
        };
        if cs.portals.len() >= MAX_NAMED && !cs.portals.contains_key(portal) {
            self.refuse_statement(cs, Why::UnknownStatement, false);
            return false;
        }
        cs.portals.insert(portal.to_string(), s);
        self.pipeline.push(Expect::Bind(portal.to_string()));
        cs.names_changed = true;
        true
    }

    /// Refuses a statement with an error of Custos's own, recorded; in the extended
    /// protocol the messages up to Sync are then dropped.
    fn refuse_statement(&self, cs: &mut ClientSide, why: Why<'_>, simple: bool) {
        let r = refuse::why(why);
        crate::metrics::DB_STATEMENTS.with_label_values(&[&self.db.name, "unknown", "refused"]).inc();
        let meta = StmtMeta { info: self.info, described: None, connect: false };
        self.access.refused(&meta, Some(&self.principal), r.reason.into());
        self.pipeline.push(Expect::Injected { error: answer::error("ERROR", r.sqlstate, &r.message), ready: simple });
        if !simple {
            cs.discarding = true;
        }
    }

    /// The statement's decision, durable before it is forwarded.
    async fn decide(&self, described: Described) -> Result<Pending, End> {
        let start = Instant::now();
        let described = Arc::new(described);
        let meta = StmtMeta { info: self.info, described: Some(&described), connect: false };
        let req = Request {
            credentials: Presented::default(),
            route: None,
            path: None,
            database: Some(self.db),
            held: Some((&self.principal, &self.verdict)),
            claimed_user: None,
            role: None,
            action: described.verb,
            client: &self.info.client,
            objection: None,
            start,
            status: |_| 0,
            meta: &meta,
        };
        match self.access.decide(&req).await {
            Ok(permit) => Ok(Pending { meta: described, start, rows: 0, audit_phase: permit.audit_phase }),
            Err(Denial::AuditUnavailable) => Err(End::AuditUnavailable),
            Err(_) => Err(End::SessionEnded),
        }
    }

    /// The completion record of a statement.
    fn complete(&self, p: Pending, sqlstate: Option<&str>, reason: Option<Reason>) {
        let outcome = match sqlstate {
            Some("00000") => "ok",
            Some(_) => "error",
            None => "not_run",
        };
        crate::metrics::DB_STATEMENTS.with_label_values(&[&self.db.name, p.meta.verb, outcome]).inc();
        let meta = StmtMeta { info: self.info, described: Some(&p.meta), connect: false };
        let done = Completion {
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            duration: p.start.elapsed(),
            reason,
            audit_phase: p.audit_phase,
            upstream_phase: None,
            rows: Some(p.rows),
            sqlstate: sqlstate.map(str::to_string),
        };
        self.access.complete(&meta, (Some(&self.principal), &self.verdict), done);
    }

    /// Upstream to client, until the upstream ends (or the client cannot be written).
    pub async fn server_loop<R, W>(&self, upstream: &mut R, client: &mut W) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(CHUNK);
        // Bytes of the current message still to pass (a row or COPY data being streamed).
        let mut skipping = 0usize;
        loop {
            if let Err(e) = self.write_injected(client).await {
                return e;
            }
            buf.reserve(CHUNK);
            let read = tokio::select! {
                r = upstream.read_buf(&mut buf) => r,
                _ = self.pipeline.wake.notified() => continue,
            };
            match read {
                Ok(0) | Err(_) => return End::UpstreamClosed,
                Ok(_) => {}
            }
            let mut pos = 0;
            let mut written = 0;
            loop {
                if skipping > 0 {
                    let take = skipping.min(buf.len() - pos);
                    pos += take;
                    skipping -= take;
                    if skipping > 0 {
                        break;
                    }
                }
                if buf.len() - pos < Header::SIZE {
                    break;
                }
                let head = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]];
                let Ok(h) = Header::parse(head) else { return End::UpstreamClosed };
                let n = h.body_len();
                let held = matches!(h.tag, b'C' | b'E' | b'Z' | b'S') && n <= HOLD_MAX;
                if held {
                    if buf.len() - pos < Header::SIZE + n {
                        break;
                    }
                    let body = &buf[pos + Header::SIZE..pos + Header::SIZE + n];
                    if h.tag == b'S' && !standard_strings(body) {
                        // Not forwarded: the client must not go on under it.
                        let _ = client.write_all(&buf[written..pos]).await;
                        return End::NonStandardStrings;
                    }
                    self.answer(h.tag, body);
                    pos += Header::SIZE + n;
                } else {
                    self.answer(h.tag, &[]);
                    pos += Header::SIZE;
                    skipping = n;
                }
                if self.injected_next() {
                    if client.write_all(&buf[written..pos]).await.is_err() {
                        return End::ClientClosed;
                    }
                    written = pos;
                    if let Err(e) = self.write_injected(client).await {
                        return e;
                    }
                }
            }
            // Streamed bytes of an unfinished message go on now too.
            if skipping > 0 {
                pos = buf.len();
            }
            if client.write_all(&buf[written..pos]).await.is_err() || client.flush().await.is_err() {
                return End::ClientClosed;
            }
            buf.advance(pos);
        }
    }

    fn injected_next(&self) -> bool {
        matches!(self.pipeline.queue.lock().unwrap_or_else(|p| p.into_inner()).front(), Some(Expect::Injected { .. }))
    }

    /// Writes the errors of Custos's own at the head of the queue.
    async fn write_injected<W: AsyncWrite + Unpin>(&self, client: &mut W) -> Result<(), End> {
        loop {
            let next = {
                let mut q = self.pipeline.queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.front() {
                    Some(Expect::Injected { .. }) => q.pop_front(),
                    _ => None,
                }
            };
            let Some(Expect::Injected { error, ready }) = next else { return Ok(()) };
            let mut bytes = BytesMut::from(&error[..]);
            if ready {
                let status = *self.pipeline.status.lock().unwrap_or_else(|p| p.into_inner());
                bytes.extend_from_slice(&answer::ready(status));
            }
            if client.write_all(&bytes).await.is_err() || client.flush().await.is_err() {
                return Err(End::ClientClosed);
            }
        }
    }

    /// One server message, against the queue of what is owed.
    fn answer(&self, tag: u8, body: &[u8]) {
        let mut q = self.pipeline.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut done: Vec<(Pending, Option<String>, Option<Reason>)> = Vec::new();
        let mut poison: Vec<(bool, String)> = Vec::new();
        let mut synced = false;
        match tag {
            b'D' => match q.front_mut() {
                Some(Expect::Query(stmts)) => {
                    if let Some(p) = stmts.front_mut() {
                        p.rows += 1;
                    }
                }
                Some(Expect::Execute(p)) => p.rows += 1,
                _ => {}
            },
            b'C' | b'I' | b's' => {
                let rows = if tag == b'C' { command_rows(body) } else { None };
                let reason = (tag == b's').then(|| Reason::named("portal_suspended"));
                match q.front_mut() {
                    Some(Expect::Query(stmts)) => {
                        if let Some(mut p) = stmts.pop_front() {
                            p.rows = rows.unwrap_or(p.rows);
                            done.push((p, Some("00000".into()), None));
                        }
                    }
                    Some(Expect::Execute(_)) => {
                        if let Some(Expect::Execute(mut p)) = q.pop_front() {
                            p.rows = rows.unwrap_or(p.rows);
                            done.push((p, Some("00000".into()), reason));
                        }
                    }
                    _ => {}
                }
            }
            b'E' => {
                let (fatal, code) = error_fields(body);
                match q.front_mut() {
                    Some(Expect::Query(stmts)) => {
                        if let Some(p) = stmts.pop_front() {
                            done.push((p, code.clone(), None));
                        }
                        // The rest of the string does not run.
                        for p in stmts.drain(..) {
                            done.push((p, None, Some(Code::NotRun.into())));
                        }
                    }
                    Some(Expect::Sync) | None => {}
                    Some(_) => {
                        match q.pop_front() {
                            Some(Expect::Execute(p)) => done.push((p, code.clone(), None)),
                            Some(Expect::Parse(n)) => poison.push((true, n)),
                            Some(Expect::Bind(n)) => poison.push((false, n)),
                            // The failing message's answer is this error.
                            _ => {}
                        }
                        // The server skips everything up to Sync, a simple Query too.
                        while let Some(e) = q.front() {
                            if matches!(e, Expect::Sync) {
                                break;
                            }
                            match q.pop_front() {
                                Some(Expect::Execute(p)) => done.push((p, None, Some(Code::NotRun.into()))),
                                Some(Expect::Parse(n)) => poison.push((true, n)),
                                Some(Expect::Bind(n)) => poison.push((false, n)),
                                Some(Expect::Query(stmts)) => {
                                    done.extend(stmts.into_iter().map(|p| (p, None, Some(Code::NotRun.into()))))
                                }
                                _ => {}
                            }
                        }
                    }
                }
                if fatal {
                    // The server ends the connection: nothing after this is answered.
                    for e in q.drain(..) {
                        match e {
                            Expect::Execute(p) => done.push((p, None, Some(Code::NotRun.into()))),
                            Expect::Query(stmts) => {
                                done.extend(stmts.into_iter().map(|p| (p, None, Some(Code::NotRun.into()))))
                            }
                            _ => {}
                        }
                    }
                }
            }
            b'Z' => {
                if let Some(&s) = body.first() {
                    *self.pipeline.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
                }
                while let Some(e) = q.pop_front() {
                    match e {
                        Expect::Sync => {
                            synced = true;
                            break;
                        }
                        Expect::Query(stmts) => {
                            done.extend(stmts.into_iter().map(|p| (p, None, Some(Code::NotRun.into()))));
                            break;
                        }
                        Expect::Execute(p) => done.push((p, None, Some(Code::NotRun.into()))),
                        Expect::Injected { error, ready } => {
                            // Not expected before a ReadyForQuery; keep its place.
                            q.push_front(Expect::Injected { error, ready });
                            break;
                        }
                        _ => {}
                    }
                }
            }
            // COPY FROM STDIN by the extended protocol: the server ignores a Sync that came
            // before the copy data (tokio-postgres sends one), so it is answered never.
            b'G' if matches!(q.front(), Some(Expect::Execute(_))) => {
                if let Some(i) = q.iter().position(|e| matches!(e, Expect::Sync)) {
                    q.remove(i);
                    synced = true;
                }
            }
            b'1' => pop_if(&mut q, |e| matches!(e, Expect::Parse(_))),
            b'2' => pop_if(&mut q, |e| matches!(e, Expect::Bind(_))),
            b'3' => pop_if(&mut q, |e| matches!(e, Expect::Close)),
            b'n' | b'T' => pop_if(&mut q, |e| matches!(e, Expect::Describe)),
            _ => {}
        }
        drop(q);
        if !poison.is_empty() {
            self.pipeline.poisoned.lock().unwrap_or_else(|p| p.into_inner()).extend(poison);
        }
        if synced {
            self.pipeline.syncs_answered.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.pipeline.answered.notify_waiters();
        }
        for (p, code, reason) in done {
            self.complete(p, code.as_deref(), reason);
        }
    }

    /// Completion records for whatever is still owed when the connection ends.
    pub fn abandon(&self, reason: Reason) {
        let owed: Vec<Expect> = self.pipeline.queue.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for e in owed {
            match e {
                Expect::Execute(p) => self.complete(p, None, Some(reason.clone())),
                Expect::Query(stmts) => {
                    for p in stmts {
                        self.complete(p, None, Some(reason.clone()));
                    }
                }
                _ => {}
            }
        }
    }
}

fn pop_if(q: &mut VecDeque<Expect>, f: impl Fn(&Expect) -> bool) {
    if q.front().is_some_and(f) {
        q.pop_front();
    }
}

/// Whether a statement changes how the server reads the statements after it: sets or
/// resets `standard_conforming_strings` or `client_encoding` (`SET NAMES` too), or calls
/// `set_config`. A pipelined statement after it would be parsed by the server under the
/// new setting before its ParameterStatus comes back, so what Custos records would not be
/// what runs.
fn changes_parsing(stmts: &[Statement]) -> bool {
    use crate::postgres::statements::ObjectKind;
    const GUARDED: [&str; 3] = ["standard_conforming_strings", "client_encoding", "names"];
    stmts.iter().any(|s| {
        s.objects.iter().any(|o| {
            let name = o.name.as_str();
            let bare = name.rsplit('.').next().unwrap_or(name);
            match o.kind {
                ObjectKind::Setting => {
                    s.verb.as_str() != "show" && GUARDED.iter().any(|g| bare.eq_ignore_ascii_case(g))
                }
                ObjectKind::Function => bare.eq_ignore_ascii_case("set_config"),
                ObjectKind::Relation => false,
            }
        })
    })
}

/// False for a ParameterStatus under which the server would read statements otherwise
/// than Custos's parser: `standard_conforming_strings` off, a `client_encoding` other
/// than UTF8.
pub fn standard_strings(body: &[u8]) -> bool {
    let mut parts = body.split(|&b| b == 0);
    match (parts.next(), parts.next()) {
        (Some(b"standard_conforming_strings"), Some(v)) => v == b"on",
        (Some(b"client_encoding"), Some(v)) => v.eq_ignore_ascii_case(b"UTF8"),
        _ => true,
    }
}

/// The rows a CommandComplete tag reports (`SELECT 5`, `INSERT 0 3`, `UPDATE 2`, …).
fn command_rows(body: &[u8]) -> Option<u64> {
    let tag = std::str::from_utf8(body.strip_suffix(&[0]).unwrap_or(body)).ok()?;
    tag.rsplit(' ').next()?.parse().ok()
}

/// An ErrorResponse's severity (fatal or not) and SQLSTATE.
fn error_fields(body: &[u8]) -> (bool, Option<String>) {
    let mut fatal = false;
    let mut code = None;
    for field in body.split(|&b| b == 0) {
        match field.split_first() {
            Some((b'V', v)) => fatal = matches!(v, b"FATAL" | b"PANIC"),
            Some((b'C', c)) => code = std::str::from_utf8(c).ok().map(str::to_string),
            _ => {}
        }
    }
    (fatal, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_conforming_strings_off_is_refused() {
        assert!(!standard_strings(b"standard_conforming_strings\0off\0"));
        assert!(standard_strings(b"standard_conforming_strings\0on\0"));
        assert!(standard_strings(b"DateStyle\0ISO, MDY\0"));
        assert!(!standard_strings(b"client_encoding\0SJIS\0"));
        assert!(standard_strings(b"client_encoding\0UTF8\0"));
    }

    #[test]
    fn statements_that_change_how_the_server_reads_are_found() {
        use crate::postgres::statements::classify;
        for sql in [
            "SET standard_conforming_strings = off",
            "SET client_encoding = 'SJIS'",
            "SET NAMES 'GBK'",
            "RESET client_encoding",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "SELECT pg_catalog.set_config('client_encoding', 'BIG5', true)",
        ] {
            assert!(changes_parsing(&classify(sql).unwrap()), "{sql}");
        }
        for sql in ["SHOW client_encoding", "SET search_path = public", "SELECT 1"] {
            assert!(!changes_parsing(&classify(sql).unwrap()), "{sql}");
        }
    }

    #[test]
    fn rows_from_command_tags() {
        assert_eq!(command_rows(b"SELECT 5\0"), Some(5));
        assert_eq!(command_rows(b"INSERT 0 3\0"), Some(3));
        assert_eq!(command_rows(b"CREATE TABLE\0"), None);
    }

    #[test]
    fn error_fields_read_severity_and_code() {
        let e = b"SERROR\0VFATAL\0C57P01\0Mbye\0\0";
        assert_eq!(error_fields(e), (true, Some("57P01".into())));
        assert_eq!(error_fields(b"SERROR\0VERROR\0C42601\0\0"), (false, Some("42601".into())));
    }
}
