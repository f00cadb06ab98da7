//! Header hygiene: identity headers that only the gateway may set are removed from every
//! request; `X-Request-Id`, `X-Forwarded-For`, `-Proto` and `-Host` are set so that a
//! client cannot forge a chain unless its peer is a configured trusted proxy (RFC 7239
//! habits: append, trust only configured proxies).

use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;
use std::net::IpAddr;

/// Every header in the gateway's namespace starts with this.
pub const IDENTITY_NAMESPACE: &str = "x-custos-";

/// Removes `x-custos-*` and the configured identity headers.
pub fn strip_identity(req: &mut RequestHeader, configured: &[http::HeaderName]) {
    for name in configured {
        req.remove_header(name);
    }
    // Names are stored lower-case by the http crate.
    while let Some(name) = req.headers.keys().find(|k| k.as_str().starts_with(IDENTITY_NAMESPACE)).cloned() {
        req.remove_header(&name);
    }
}

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
    proto: Option<&'static str>,
    host: Option<http::HeaderValue>,
    trusted: bool,
}

impl Forwarding {
    pub fn new(session: &Session, trusted_proxies: &[IpNet], tls: bool) -> Forwarding {
        let req = session.req_header();
        let request_id = req
            .headers
            .get("x-request-id")
            .filter(|v| well_formed_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        let peer: Option<IpAddr> = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let trusted = peer.is_some_and(|ip| trusted_proxies.iter().any(|n| n.contains(&ip)));
        let xff = peer.and_then(|ip| {
            let prior = if trusted { req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) } else { None };
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
        Forwarding { request_id, xff, proto: Some(if tls { "https" } else { "http" }), host, trusted }
    }

    pub fn apply(&self, up: &mut RequestHeader) -> Result<()> {
        up.insert_header("x-request-id", self.request_id.clone())?;
        match &self.xff {
            Some(v) => up.insert_header("x-forwarded-for", v.clone())?,
            None => {
                up.remove_header("x-forwarded-for");
            }
        }
        let keep = |up: &RequestHeader, name: &str| self.trusted && up.headers.contains_key(name);
        if !keep(up, "x-forwarded-proto") {
            if let Some(p) = self.proto {
                up.insert_header("x-forwarded-proto", p)?;
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
        if !self.trusted {
            up.remove_header("forwarded");
            up.remove_header("x-real-ip");
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
