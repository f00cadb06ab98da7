//! The gateway's own cookies: read from the request, written with the attributes
//! OWASP ASVS V3.4 and RFC 6265bis ask for, and taken out of every request before it
//! goes upstream.

use pingora::http::RequestHeader;

/// The first value of cookie `name` in the request's `Cookie` header(s).
pub fn get<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    })
}

/// Removes cookies named in `names` from the request; drops the header when nothing
/// is left. Other cookies pass untouched, whatever bytes they hold.
pub fn strip(req: &mut RequestHeader, names: &[&str]) -> pingora::Result<()> {
    let ours = |pair: &[u8]| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or(b"");
        names.iter().any(|n| name.trim_ascii() == n.as_bytes())
    };
    let mut any = false;
    for v in req.headers.get_all(http::header::COOKIE) {
        any |= v.as_bytes().split(|&b| b == b';').any(|p| p.contains(&b'=') && ours(p));
    }
    if !any {
        return Ok(());
    }
    let mut kept: Vec<u8> = Vec::new();
    for v in req.headers.get_all(http::header::COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';').map(<[u8]>::trim_ascii) {
            if pair.is_empty() || ours(pair) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        let v = http::HeaderValue::from_bytes(&kept)
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "rebuilding Cookie", e))?;
        req.insert_header(http::header::COOKIE, v)?;
    }
    Ok(())
}

/// Removes an upstream's `Set-Cookie` for the gateway's own cookies: a service behind
/// the gateway must not plant or clear a session.
pub fn strip_set_cookie(resp: &mut pingora::http::ResponseHeader, names: &[&str]) -> pingora::Result<()> {
    let name_of = |v: &http::HeaderValue| {
        let b = v.as_bytes();
        let end = b.iter().position(|&c| c == b'=' || c == b';').unwrap_or(b.len());
        names.iter().any(|n| b[..end].trim_ascii() == n.as_bytes())
    };
    if !resp.headers.get_all(http::header::SET_COOKIE).iter().any(name_of) {
        return Ok(());
    }
    let kept: Vec<http::HeaderValue> =
        resp.headers.get_all(http::header::SET_COOKIE).iter().filter(|v| !name_of(v)).cloned().collect();
    resp.remove_header(&http::header::SET_COOKIE);
    for v in kept {
        resp.append_header(http::header::SET_COOKIE, v)?;
    }
    Ok(())
}

/// `Set-Cookie` for a cookie of the gateway. `max_age` `None` is a browser-session
/// cookie; `Some(0)` deletes it.
pub fn set(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        s.push_str(&format!("; Max-Age={a}"));
    }
    if secure || name.starts_with("__Host-") {
        s.push_str("; Secure");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cookies: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for c in cookies {
            r.append_header("cookie", *c).unwrap();
        }
        r
    }

    #[test]
    fn reads_and_strips_only_ours() {
        let mut r = req(&["a=1; custos_session=abc; b=2", "custos_session_login=x"]);
        assert_eq!(get(&r, "custos_session"), Some("abc"));
        assert_eq!(get(&r, "custos_session_login"), Some("x"));
        assert_eq!(get(&r, "custos"), None);
        strip(&mut r, &["custos_session", "custos_session_login"]).unwrap();
        let left: Vec<_> = r.headers.get_all("cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert_eq!(left, vec!["a=1; b=2"]);
        let mut odd = RequestHeader::build("GET", b"/", None).unwrap();
        odd.append_header("cookie", http::HeaderValue::from_bytes(b"lang=fran\xc3\xa7ais; custos_session=x").unwrap())
            .unwrap();
        strip(&mut odd, &["custos_session"]).unwrap();
        assert_eq!(odd.headers["cookie"].as_bytes(), b"lang=fran\xc3\xa7ais");
        let mut only = req(&["custos_session=abc"]);
        strip(&mut only, &["custos_session"]).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }

    #[test]
    fn upstream_cannot_set_ours() {
        let mut r = pingora::http::ResponseHeader::build(200, None).unwrap();
        r.append_header("set-cookie", "custos_session=planted; Path=/").unwrap();
        r.append_header("set-cookie", "app=1").unwrap();
        strip_set_cookie(&mut r, &["custos_session"]).unwrap();
        let left: Vec<_> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(left, vec!["app=1"]);
    }

    #[test]
    fn attributes() {
        assert_eq!(set("__Host-s", "v", None, false), "__Host-s=v; Path=/; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(set("s", "", Some(0), false), "s=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    }
}
