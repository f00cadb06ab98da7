//! Header hygiene: identity headers that only the gateway may set are removed from every
//! request; `X-Request-Id`, `X-Forwarded-For`, `-Proto` and `-Host` are set so that a
//! client cannot forge a chain unless its peer is a configured trusted proxy (RFC 7239
//! habits: append, trust only configured proxies).
//!
//! Upstream stacks do not all read a header name the way HTTP spells it: CGI, WSGI, PHP
//! and several Java and Ruby servers turn `-` into `_` and ignore case, so `x_custos_user`
//! arrives there as the very `X-Custos-User` the gateway sets. Every header whose name
//! has a `_` is dropped (nginx's `underscores_in_headers off`), unless the route lets a
//! name through that means nothing here ([`reserved`]). The headers frameworks use to
//! re-route a request or change its method are always removed, and the ones that name
//! the client or the original scheme, host, port or prefix pass only from a trusted proxy.

use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;
use std::net::IpAddr;

pub use crate::config::headers::{reserved, CLIENT_NAMING, IDENTITY_NAMESPACE, OVERRIDES};

/// Removes every header of `req` that `doomed` names, in one pass over the request's
/// own (few) header names: a `remove_header` per listed name parses and hashes each of
/// them, about thirty per request, and was the largest cost of forwarding.
fn remove_where(req: &mut RequestHeader, doomed: impl Fn(&http::HeaderName) -> bool) {
    // No allocation unless something is removed.
    let names: Vec<http::HeaderName> = req.headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in &names {
        req.remove_header(name);
    }
}

/// Removes `x-custos-*`, the configured identity headers and the override headers.
pub fn strip_identity(req: &mut RequestHeader, configured: &[http::HeaderName]) {
    // Names are stored lower-case by the http crate.
    remove_where(req, |k| {
        k.as_str().starts_with(IDENTITY_NAMESPACE) || configured.contains(k) || OVERRIDES.contains(&k.as_str())
    });
}

/// Removes every header whose name has a `_`, except those in `allowed` (a route's
/// `underscore_headers`, checked at load against [`reserved`]).
pub fn drop_underscored(req: &mut RequestHeader, allowed: &[http::HeaderName]) {
    remove_where(req, |k| k.as_str().contains('_') && !allowed.contains(k));
}

/// Whether a query string carries a method override (`_method=DELETE`, as Rails,
/// Laravel and Symfony read it), in any spelling a framework decodes to that name:
/// percent-encoded, any case, `;` as a separator, PHP's ` `/`.`/`[` read as `_`.
pub fn method_override(query: &str) -> bool {
    query.split([';', '&']).any(|pair| {
        url::form_urlencoded::parse(pair.as_bytes()).any(|(k, _)| {
            let k = k.trim_start();
            let k = k.split('[').next().unwrap_or_default();
            k.len() == 7
                && k.bytes().zip(b"_method").all(|(a, &b)| {
                    let a = if matches!(a, b' ' | b'.') { b'_' } else { a.to_ascii_lowercase() };
                    a == b
                })
        })
    })
}

/// Names looked up on every request, made once: a `&str` is parsed on each lookup.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// A request id is kept when it is short and plain; anything else is replaced.
fn well_formed_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len()) && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A new request id: a UUIDv7, encoded without going through `fmt`.
fn new_request_id() -> http::HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    http::HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// The peer address as a header value. IPv4, the common case, is written by hand:
/// `Ipv4Addr`'s `Display` went through `fmt` and showed in the per-request profile.
fn ip_value(ip: IpAddr) -> http::HeaderValue {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            http::HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid header value")
        }
        IpAddr::V6(v6) => {
            http::HeaderValue::from_str(&v6.to_string()).expect("an IPv6 address is a valid header value")
        }
    }
}

/// The forwarding headers decided in `request_filter`, written to the upstream request.
pub struct Forwarding {
    pub request_id: http::HeaderValue,
    xff: Option<http::HeaderValue>,
    /// A static value: cloning it copies nothing.
    proto: Option<http::HeaderValue>,
    host: Option<http::HeaderValue>,
    trusted: bool,
}

impl Forwarding {
    pub fn new(session: &Session, trusted_proxies: &[IpNet], tls: bool) -> Forwarding {
        let req = session.req_header();
        let request_id = req
            .headers
            .get(X_REQUEST_ID)
            .filter(|v| well_formed_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        let peer: Option<IpAddr> = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let trusted = peer.is_some_and(|ip| trusted_proxies.iter().any(|n| n.contains(&ip)));
        let xff = peer.and_then(|ip| {
            let prior = if trusted { req.headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) } else { None };
            match prior {
                Some(p) if !p.trim().is_empty() => http::HeaderValue::from_str(&format!("{}, {ip}", p.trim())).ok(),
                _ => Some(ip_value(ip)),
            }
        });
        let host = req
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| req.uri.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()));
        Forwarding {
            request_id,
            xff,
            proto: Some(http::HeaderValue::from_static(if tls { "https" } else { "http" })),
            host,
            trusted,
        }
    }

    pub fn apply(&self, up: &mut RequestHeader) -> Result<()> {
        // First, so that the headers added below are not scanned.
        if !self.trusted {
            remove_where(up, |k| CLIENT_NAMING.contains(&k.as_str()));
        }
        up.insert_header("x-request-id", self.request_id.clone())?;
        match &self.xff {
            Some(v) => up.insert_header("x-forwarded-for", v.clone())?,
            None => {
                up.remove_header("x-forwarded-for");
            }
        }
        let keep = |up: &RequestHeader, name: &str| self.trusted && up.headers.contains_key(name);
        if !keep(up, "x-forwarded-proto") {
            if let Some(p) = &self.proto {
                up.insert_header("x-forwarded-proto", p.clone())?;
            }
        }
        if !keep(up, "x-forwarded-host") {
            match &self.host {
                Some(h) => up.insert_header("x-forwarded-host", h.clone())?,
                None => {
                    up.remove_header("x-forwarded-host");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_values() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "192.168.100.9", "::1", "2001:db8::7"] {
            assert_eq!(ip_value(ip.parse().unwrap()).to_str().unwrap(), ip);
        }
        assert_eq!(new_request_id().len(), 36);
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(b"abc-123_x.y:z"));
        assert!(!well_formed_request_id(b""));
        assert!(!well_formed_request_id(b"a b"));
        assert!(!well_formed_request_id(&[b'a'; 129]));
    }

    #[test]
    fn method_overrides() {
        for q in [
            "_method=DELETE",
            "a=1&_method=PUT",
            "_METHOD=x",
            "%5Fmethod=x",
            "a=1;_method=x",
            ".method=x",
            "_method[]=x",
            "_method",
        ] {
            assert!(method_override(q), "{q}");
        }
        for q in ["", "method=x", "a=_method", "__method=x", "_methods=x", "x_method=1"] {
            assert!(!method_override(q), "{q}");
        }
    }

    #[test]
    fn underscores_and_reserved_names() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for h in ["x_custos_user", "X_Custos_Groups", "remote_user", "x_legacy_id", "accept"] {
            req.insert_header(h.to_string(), "v").unwrap();
        }
        drop_underscored(&mut req, &[http::HeaderName::from_static("x_legacy_id")]);
        let mut names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x_legacy_id"]);
        let strip = [http::HeaderName::from_static("remote-user")];
        for n in
            ["x_custos_user", "remote_user", "x_forwarded_for", "x_real_ip", "x_http_method_override", "x_request_id"]
        {
            assert!(reserved(n, &strip), "{n}");
        }
        assert!(!reserved("x_legacy_id", &strip));
    }

    fn forwarding(trusted: bool) -> Forwarding {
        Forwarding {
            request_id: http::HeaderValue::from_static("rid-1"),
            xff: Some(http::HeaderValue::from_static("192.0.2.7")),
            proto: Some(http::HeaderValue::from_static("https")),
            host: Some(http::HeaderValue::from_static("app.example.test")),
            trusted,
        }
    }

    fn client_naming_request() -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in [
            ("Forwarded", "for=203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
            ("x-real-ip", "203.0.113.10"),
            ("X-Forwarded-Port", "8443"),
            ("X-Original-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "gopher"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Request-Id", "client-id"),
            ("Accept", "*/*"),
        ] {
            req.append_header(n, v).unwrap();
        }
        req
    }

    #[test]
    fn untrusted_peers_name_nothing() {
        let mut req = client_naming_request();
        forwarding(false).apply(&mut req).unwrap();
        let mut names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id"]);
        for (n, v) in [
            ("x-forwarded-for", "192.0.2.7"),
            ("x-forwarded-host", "app.example.test"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "rid-1"),
        ] {
            let all: Vec<_> = req.headers.get_all(n).iter().collect();
            assert_eq!(all, [v], "{n}");
        }
    }

    #[test]
    fn trusted_peers_keep_their_chain() {
        let mut req = client_naming_request();
        forwarding(true).apply(&mut req).unwrap();
        assert_eq!(req.headers.get_all("x-real-ip").iter().count(), 2);
        assert_eq!(req.headers["forwarded"], "for=203.0.113.9");
        assert_eq!(req.headers["x-forwarded-proto"], "gopher");
        assert_eq!(req.headers["x-forwarded-host"], "evil.example");
        assert_eq!(req.headers["x-request-id"], "rid-1");
    }

    #[test]
    fn strips_every_value_of_every_spelling() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in [
            ("X-Custos-User", "a"),
            ("x-custos-user", "b"),
            ("X-CUSTOS-Anything", "c"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Original-URL", "/admin"),
            ("Remote-User", "mallory"),
            ("remote-user", "eve"),
            ("User-Agent", "t"),
        ] {
            req.append_header(n, v).unwrap();
        }
        strip_identity(&mut req, &[http::HeaderName::from_static("remote-user")]);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["user-agent"]);
        assert_eq!(req.case_header_iter().count(), 1);
    }

    #[test]
    fn strips_namespace_and_configured() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Custos-User", "mallory").unwrap();
        req.insert_header("x-custos-groups", "admins").unwrap();
        req.insert_header("X-Forwarded-User", "mallory").unwrap();
        req.insert_header("accept", "*/*").unwrap();
        strip_identity(&mut req, &[http::HeaderName::from_static("x-forwarded-user")]);
        let names: Vec<_> = req.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }
}
