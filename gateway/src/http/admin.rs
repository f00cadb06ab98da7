//! The admin listener: Prometheus metrics at `/metrics`, and, for administrators with a
//! token of their own, the session API:
//!
//! ```text
//! GET  /sessions?user=SUBJECT                 a user's live sessions (JSON)
//! POST /sessions/revoke?user=SUBJECT          end all of them
//! POST /sessions/revoke?session=HASH          end one (the hash `list` shows)
//! POST /breakglass/links?user=U&route=R&ttl_secs=N[&path=P][&scope=route][&totp=1]
//!                                             a sealed emergency link (access ends at
//!                                             issue + ttl_secs: `expires`)
//! GET  /breakglass[?unreviewed=1]             emergency grants, with justifications
//! POST /breakglass/review?id=ID&verdict=justified|unjustified   (body: the note)
//! ```
//!
//! `Authorization: Bearer <token>`; the tokens file (`[admin] tokens`) holds one
//! `NAME SHA256-HEX-OF-TOKEN` line per person, so it holds no usable token. Every call is
//! audited with the administrator's name. It is a separate listener so that it can be
//! bound to a private address.

use super::auth::Auth;
use crate::audit::{Actor, Audit, Event, Kind};
use crate::session::sha256_hex;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Admin {
    pub auth: Option<Arc<Auth>>,
    pub audit: Option<Audit>,
    /// sha256 hex of a token → the administrator's name.
    pub tokens: HashMap<String, String>,
    pub breakglass: Option<Arc<crate::access::breakglass::Settings>>,
    /// To ask, before issuing a sealed link, whether its user may declare an emergency.
    pub policy: Option<Arc<crate::policy::Policy>>,
    pub routes: Vec<crate::config::Route>,
}

pub use crate::config::admin::parse_tokens;

fn reply(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json_reply(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    let mut body = v.to_string().into_bytes();
    body.push(b'\n');
    reply(status, "application/json", body)
}

impl Admin {
    fn record(&self, kind: Kind, admin: Option<&str>, client: Option<String>, f: impl FnOnce(&mut Event)) {
        if let Some(audit) = &self.audit {
            let mut ev = Event::new(kind);
            ev.actor = admin.map(|a| Actor { subject: format!("admin:{a}"), groups: Vec::new() });
            ev.client = client;
            f(&mut ev);
            audit.append(ev);
        }
    }

    async fn sessions(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string());
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        let token = super::auth::bearer_token(req);
        let admin = token.and_then(|t| self.tokens.get(&sha256_hex(t.as_bytes()))).cloned();
        let Some(admin) = admin else {
            self.record(Kind::AdminDenied, None, client, |ev| {
                ev.path = Some(path);
                ev.method = Some(method.to_string());
            });
            return json_reply(401, json!({ "error": "an administrator token is needed (Authorization: Bearer)" }));
        };
        let Some(auth) = &self.auth else {
            return json_reply(404, json!({ "error": "sign-in is not configured" }));
        };
        let params = super::form::query(req);
        let unavailable = || json_reply(503, json!({ "error": "the session store is unreachable" }));
        match (method.as_str(), path.as_str()) {
            ("GET", "/sessions") => {
                let Some(user) = params.get("user") else {
                    return json_reply(400, json!({ "error": "give ?user=SUBJECT" }));
                };
                let Ok(list) = auth.store.list_user(user).await else { return unavailable() };
                self.record(Kind::AdminSessionsListed, Some(&admin), client, |ev| ev.target = Some(user.clone()));
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|(h, s)| {
                        json!({ "session": h, "created": s.created, "last_seen": s.last_seen, "client": s.client,
                                "amr": s.amr, "acr": s.acr, "mfa": auth.settings.oidc.mfa.satisfied(&s.amr, s.acr.as_deref()),
                                "db": s.db })
                    })
                    .collect();
                json_reply(200, json!({ "user": user, "sessions": items }))
            }
            ("POST", "/sessions/revoke") => {
                let ended = match (params.get("user"), params.get("session")) {
                    (Some(user), None) => auth.store.end_user(user).await,
                    (None, Some(hash)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => auth
                        .store
                        .end_by_hash(&hash.to_ascii_lowercase(), None)
                        .await
                        .map(|s| s.map(|s| vec![(hash.to_ascii_lowercase(), s)]).unwrap_or_default()),
                    _ => {
                        return json_reply(
                            400,
                            json!({ "error": "give ?user=SUBJECT or ?session=HASH (64 hex digits)" }),
                        )
                    }
                };
                let Ok(ended) = ended else { return unavailable() };
                for (h, s) in &ended {
                    self.record(Kind::AdminSessionRevoked, Some(&admin), client.clone(), |ev| {
                        ev.target = Some(s.subject.clone());
                        ev.session = Some(h.clone());
                    });
                    // An emergency grant ends with its session (recorded once: its expiry
                    // may have been recorded already).
                    if let Some(g) = s.breakglass.as_ref().filter(|g| g.expires > crate::session::now_secs()) {
                        let mut ev = Event::new(Kind::BreakglassEnded);
                        ev.actor = Some(Actor { subject: format!("admin:{admin}"), groups: Vec::new() });
                        ev.client.clone_from(&client);
                        ev.target = Some(s.subject.clone());
                        ev.session = Some(h.clone());
                        ev.grant = Some(g.id.clone());
                        ev.scope = Some(g.scope_name());
                        ev.route = Some(g.route.clone());
                        ev.breakglass = Some(true);
                        let why = crate::access::breakglass::GrantEnd::Revoked;
                        crate::access::breakglass::record_end(Some(auth.store.clone()), self.audit.clone(), ev, why);
                    }
                }
                tracing::info!(admin, revoked = ended.len(), "sessions revoked");
                json_reply(
                    200,
                    json!({ "revoked": ended.len(), "sessions": ended.iter().map(|(h, _)| h).collect::<Vec<_>>() }),
                )
            }
            (_, p) if p.starts_with("/breakglass") => {
                let Some(settings) = self.breakglass.clone() else {
                    return json_reply(404, json!({ "error": "[breakglass] is not configured" }));
                };
                let body = match super::form::body(session).await {
                    Ok(b) => b,
                    Err(super::form::FormError::TooLarge) => {
                        return json_reply(413, json!({ "error": "the body is too large" }))
                    }
                    // A body cut off is not a note.
                    Err(super::form::FormError::Cut(_)) => {
                        return json_reply(400, json!({ "error": "the body could not be read" }))
                    }
                };
                self.breakglass(&settings, auth, &admin, client, method.as_str(), p, &params, body).await
            }
            _ => json_reply(404, json!({ "error": "not found" })),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn breakglass(
        &self,
        settings: &crate::access::breakglass::Settings,
        auth: &Auth,
        admin: &str,
        client: Option<String>,
        method: &str,
        path: &str,
        params: &HashMap<String, String>,
        body: Vec<u8>,
    ) -> Response<Vec<u8>> {
        use crate::access::breakglass::{Link, Store};
        let store = Store(&auth.store);
        let unavailable = || json_reply(503, json!({ "error": "the session store is unreachable" }));
        match (method, path) {
            ("POST", "/breakglass/links") => {
                let (Some(user), Some(route)) = (params.get("user"), params.get("route")) else {
                    return json_reply(400, json!({ "error": "give ?user=SUBJECT&route=NAME&ttl_secs=N" }));
                };
                let ttl = params.get("ttl_secs").and_then(|t| t.parse::<u64>().ok()).unwrap_or(3600);
                if ttl == 0 || ttl > settings.max.as_secs() {
                    return json_reply(
                        400,
                        json!({ "error": format!("ttl_secs is 1 to {} (breakglass.max_secs)", settings.max.as_secs()) }),
                    );
                }
                if user.trim().is_empty() || user.starts_with(crate::policy::GROUP_PREFIX) {
                    return json_reply(400, json!({ "error": "the user is a subject, not a group" }));
                }
                if crate::access::breakglass::person(user) == crate::access::breakglass::person(admin) {
                    return json_reply(
                        403,
                        json!({ "error": "an administrator may not issue an emergency link to themselves" }),
                    );
                }
                // The user must be one the policy lets declare an emergency there, with the
                // roles a sealed session has: those of `g` lines (no IdP groups).
                let Some(r) = self.routes.iter().find(|r| &r.name == route) else {
                    return json_reply(404, json!({ "error": format!("no route `{route}`") }));
                };
                let path = params.get("path").cloned().unwrap_or_else(|| r.path.clone());
                // The grant covers that record unless the whole route is asked for (a link
                // for the route's own path covers the route anyway).
                let whole_route =
                    path == r.path || params.get("scope").is_some_and(|v| v == crate::access::breakglass::WHOLE_ROUTE);
                let totp_wanted = params.get("totp").is_some_and(|v| v == "1" || v == "true");
                let allowed = self
                    .policy
                    .as_ref()
                    .is_some_and(|p| super::breakglass::may_declare(p, r, &path, user, &[], totp_wanted));
                if !allowed {
                    return json_reply(
                        403,
                        json!({ "error": format!("the policy does not let `{user}` declare an emergency on `{route}` at `{path}` (a sealed session has the roles of the policy's g lines only)") }),
                    );
                }
                let (Ok(token), Ok(secret)) =
                    (crate::access::breakglass::new_token(), crate::access::breakglass::new_totp_secret())
                else {
                    return json_reply(500, json!({ "error": "no randomness" }));
                };
                let now = crate::session::now_secs();
                let totp = params.get("totp").is_some_and(|v| v == "1" || v == "true").then_some(secret);
                let link = Link {
                    user: user.clone(),
                    route: route.clone(),
                    ttl_secs: ttl,
                    expires: now + ttl,
                    totp: totp.clone(),
                    issued_by: admin.to_string(),
                    issued_at: now,
                    path: Some(path.clone()),
                    whole_route,
                };
                let scope = if whole_route { crate::access::breakglass::WHOLE_ROUTE.to_string() } else { path.clone() };
                if store.put_link(&sha256_hex(token.as_bytes()), &link).await.is_err() {
                    return unavailable();
                }
                self.record(Kind::BreakglassLinkIssued, Some(admin), client, |ev| {
                    ev.target = Some(user.clone());
                    ev.route = Some(route.clone());
                    ev.breakglass = Some(true);
                    ev.scope = Some(scope.clone());
                    ev.reason = Some(crate::audit::Reason::message(format!("ttl_secs={ttl} totp={}", totp.is_some())));
                });
                let url = format!("{}{}?t={token}", auth.settings.oidc.origin, super::breakglass::LINK_PATH);
                json_reply(
                    200,
                    json!({ "url": url, "user": user, "route": route, "scope": scope,
                            // The link and the access it gives both end then, however late it is used.
                            "expires": link.expires, "access_ends": crate::access::breakglass::rfc3339(link.expires), "totp_secret": totp,
                            "otpauth": totp.as_ref().map(|s| format!("otpauth://totp/Custos:{}?secret={s}&issuer=Custos", url::form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>())) }),
                )
            }
            ("GET", "/breakglass") => {
                let Ok(mut list) = store.records().await else { return unavailable() };
                if params.get("unreviewed").is_some_and(|v| v == "1" || v == "true") {
                    list.retain(|r| r.review.is_none());
                }
                self.record(Kind::BreakglassReviewsRead, Some(admin), client, |ev| ev.breakglass = Some(true));
                json_reply(200, json!({ "grants": list }))
            }
            ("POST", "/breakglass/review") => {
                let Some(id) = params.get("id") else { return json_reply(400, json!({ "error": "give ?id=GRANT" })) };
                let verdict = params.get("verdict").map(String::as_str).unwrap_or("");
                let Ok(note) = String::from_utf8(body) else {
                    return json_reply(
                        400,
                        json!({ "error": crate::access::breakglass::ReviewError::BadNote.message() }),
                    );
                };
                match crate::access::breakglass::review(&store, id, admin, verdict, &note).await {
                    Ok(r) => {
                        self.record(Kind::BreakglassReviewed, Some(admin), client, |ev| {
                            ev.grant = Some(r.id.clone());
                            ev.target = Some(r.subject.clone());
                            ev.route = Some(r.route.clone());
                            ev.reason = Some(crate::audit::Reason::named(verdict));
                            ev.breakglass = Some(true);
                        });
                        json_reply(200, json!({ "grant": r.id, "verdict": verdict }))
                    }
                    Err(e) => {
                        if e == crate::access::breakglass::ReviewError::OwnUse {
                            self.record(Kind::BreakglassDenied, Some(admin), client, |ev| {
                                ev.grant = Some(id.clone());
                                ev.reason = Some(crate::audit::Code::SelfReview.into());
                                ev.breakglass = Some(true);
                            });
                        }
                        json_reply(e.status(), json!({ "error": e.message() }))
                    }
                }
            }
            _ => json_reply(404, json!({ "error": "not found" })),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        if path == "/metrics" {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            return match encoder.encode(&prometheus::gather(), &mut buf) {
                Ok(()) => reply(200, encoder.format_type(), buf),
                Err(_) => reply(500, "text/plain", b"metrics encoding failed\n".to_vec()),
            };
        }
        if path.starts_with("/sessions") || path.starts_with("/breakglass") {
            return self.sessions(session).await;
        }
        reply(404, "text/plain", b"not found\n".to_vec())
    }
}
