//! A demo ePHI service with synthetic patients, used by the quickstart, the end-to-end
//! tests and the benchmarks. Nothing here is real patient data.
//!
//! `GET /` (a page), `GET /patients`, `GET /patients/{id}`, `GET|POST /patients/{id}/notes`,
//! `DELETE /patients/{id}/notes/{n}`, `/admin` (an admin area), `/debug/...` (echoes the
//! method, target, headers and body size it received), `/slow?ms=N` (answers after N ms),
//! `/plain` (a fixed small body, for benchmarks).
//!
//! In tests, [`start`] runs it in-process and records every request it receives, so a
//! test can prove what reached the upstream, and what did not.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request as the demo service received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as received (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    notes: Mutex<HashMap<u32, Vec<String>>>,
    seen: Option<Mutex<Vec<Seen>>>,
    /// Where the gateway publishes the keys of its identity assertions (`/whoami`).
    jwks_url: Option<String>,
    jwks: tokio::sync::Mutex<Option<jsonwebtoken::jwk::JwkSet>>,
}

/// A running demo service.
pub struct Demo {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Every request received so far (when started with recording on).
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.as_ref().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TLS for the demo service: its certificate, and optionally a CA that client
/// certificates must chain to (mTLS).
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

fn tls_acceptor(tls: &Tls) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let certs = rustls_pemfile::certs(&mut tls.cert_pem.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut tls.key_pem.as_slice())?.ok_or_else(|| bad("no key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut ca.as_slice()) {
                roots.add(c?).map_err(|e| bad(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| bad(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Starts the demo service on `addr` (port 0 picks a free port). With `record`, every
/// request is kept for [`Demo::seen`].
pub async fn start(addr: SocketAddr, record: bool, tls: Option<Tls>) -> std::io::Result<Demo> {
    start_verifying(addr, record, tls, None).await
}

/// [`start`], and `GET /whoami` verifies the gateway's identity assertion
/// (`x-custos-assertion`) with the keys at `jwks_url` and says who is calling.
pub async fn start_verifying(
    addr: SocketAddr,
    record: bool,
    tls: Option<Tls>,
    jwks_url: Option<String>,
) -> std::io::Result<Demo> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State { seen: record.then(|| Mutex::new(Vec::new())), jwks_url, ..State::default() });
    let acceptor = tls.as_ref().map(tls_acceptor).transpose()?;
    let st = state.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let st = st.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(st.clone(), req));
                match acceptor {
                    None => {
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acc) => {
                        if let Ok(tls) = acc.accept(stream).await {
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                }
            });
        }
    });
    Ok(Demo { addr, state, task })
}

type Resp = Response<Full<Bytes>>;

/// Verifies the gateway's assertion the way an upstream should: signature by a key from
/// the gateway's JWKS (fetched again once for an unknown `kid`), `exp`, an `aud`.
async fn whoami(state: &State, headers: &hyper::HeaderMap) -> Resp {
    let Some(url) = &state.jwks_url else {
        return json(StatusCode::NOT_FOUND, serde_json::json!({ "error": "started without --jwks" }));
    };
    let refuse = |why: &str| json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": why }));
    let Some(token) = headers.get("x-custos-assertion").and_then(|v| v.to_str().ok()) else {
        return refuse("no identity assertion");
    };
    let Ok(header) = jsonwebtoken::decode_header(token) else { return refuse("not a JWT") };
    if !matches!(header.alg, jsonwebtoken::Algorithm::EdDSA | jsonwebtoken::Algorithm::ES256) {
        return refuse("algorithm");
    }
    for attempt in 0..2 {
        let mut jwks = state.jwks.lock().await;
        if jwks.is_none() || attempt == 1 {
            let fetched = async { reqwest::get(url).await.ok()?.bytes().await.ok() }.await;
            *jwks = fetched.and_then(|b| serde_json::from_slice(&b).ok());
        }
        let Some(set) = jwks.as_ref() else { return refuse("the gateway's keys are unavailable") };
        let Some(jwk) = header.kid.as_deref().and_then(|k| set.find(k)) else { continue };
        let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(jwk) else { return refuse("unusable key") };
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "sub", "aud"]);
        return match jsonwebtoken::decode::<serde_json::Value>(token, &key, &v) {
            Ok(d) => json(StatusCode::OK, serde_json::json!({ "verified": true, "claims": d.claims })),
            Err(e) => refuse(&format!("invalid assertion: {e}")),
        };
    }
    refuse("unknown key")
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", ctype.parse().expect("static content type"));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    reply(status, "application/json", v.to_string())
}

const PATIENTS: [(u32, &str, &str); 3] =
    [(1, "Ada Synthetic", "1961-04-12"), (2, "Ben Example", "1978-09-30"), (3, "Cleo Placeholder", "1990-01-05")];

const INDEX: &str = "<!doctype html><title>Demo ePHI service</title>\
<h1>Demo ePHI service</h1><p>Synthetic patients, served through Custos.</p>\
<ul><li><a href=\"/patients\">/patients</a></li><li><a href=\"/patients/1\">/patients/1</a></li>\
<li><a href=\"/patients/1/notes\">/patients/1/notes</a></li><li><a href=\"/debug/headers\">/debug/headers</a></li></ul>\
<h2>Writes</h2>\
<form method=\"post\" action=\"/patients/1/notes\"><input name=\"note\" value=\"BP 120/80\"> \
<button>Add a note to patient 1</button></form>\
<p><button id=\"del\">Delete note 1 of patient 1</button> <output id=\"out\"></output></p>\
<script>document.getElementById('del').onclick = async () => {\
const r = await fetch('/patients/1/notes/1', { method: 'DELETE' });\
document.getElementById('out').textContent = r.status + ' ' + await r.text(); };</script>";

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    if let Some(seen) = &state.seen {
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: headers.clone(),
            body: body.to_vec(),
        });
    }
    let path = parts.uri.path();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = &parts.method;
    Ok(match (m, segs.as_slice()) {
        (&Method::GET, [""]) => reply(StatusCode::OK, "text/html; charset=utf-8", INDEX),
        (&Method::GET, ["plain"]) => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, ["whoami"]) => whoami(&state, &parts.headers).await,
        (_, ["debug", ..]) => json(
            StatusCode::OK,
            json!({ "method": m.as_str(), "target": target, "headers": headers, "body_bytes": body.len() }),
        ),
        (_, ["slow"]) => {
            let ms = parts
                .uri
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            reply(StatusCode::OK, "text/plain", format!("slept {ms} ms\n"))
        }
        (&Method::GET, ["patients"]) => {
            json(StatusCode::OK, PATIENTS.iter().map(|(id, name, _)| json!({"id": id, "name": name})).collect())
        }
        (_, ["patients", id, rest @ ..]) => {
            let Some((id, name, born)) = id.parse::<u32>().ok().and_then(|id| PATIENTS.iter().find(|p| p.0 == id))
            else {
                return Ok(json(StatusCode::NOT_FOUND, json!({"error": "no such patient"})));
            };
            let mut notes = state.notes.lock().unwrap_or_else(|e| e.into_inner());
            match (m, rest) {
                (&Method::GET, []) => json(StatusCode::OK, json!({"id": id, "name": name, "born": born})),
                (&Method::GET, ["notes"]) => json(StatusCode::OK, json!(notes.get(id).cloned().unwrap_or_default())),
                (&Method::POST, ["notes"]) => {
                    let list = notes.entry(*id).or_default();
                    list.push(String::from_utf8_lossy(&body).into_owned());
                    json(StatusCode::CREATED, json!({"n": list.len()}))
                }
                (&Method::DELETE, ["notes", n]) => {
                    let list = notes.entry(*id).or_default();
                    match n.parse::<usize>().ok().filter(|n| (1..=list.len()).contains(n)) {
                        Some(n) => {
                            list.remove(n - 1);
                            reply(StatusCode::NO_CONTENT, "text/plain", "")
                        }
                        None => json(StatusCode::NOT_FOUND, json!({"error": "no such note"})),
                    }
                }
                _ => json(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "method not allowed"})),
            }
        }
        (_, ["admin", ..]) => json(StatusCode::OK, json!({"area": "admin", "method": m.as_str()})),
        _ => json(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    })
}
