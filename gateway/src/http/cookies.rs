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
/// is left. Other cookies pass untouched.
pub fn strip(req: &mut RequestHeader, names: &[&str]) -> pingora::Result<()> {
    let lines: Vec<&http::HeaderValue> = req.headers.get_all(http::header::COOKIE).iter().collect();
    if lines.is_empty() {
        return Ok(());
    }
    let ours = |pair: &str| pair.split_once('=').is_some_and(|(k, _)| names.contains(&k.trim()));
    let any = lines.iter().any(|v| v.to_str().map_or(true, |l| l.split(';').any(ours)));
    if !any {
        return Ok(());
    }
    let kept: Vec<&str> = lines
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|l| l.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !ours(p))
        .collect();
    let joined = kept.join("; ");
    req.remove_header(&http::header::COOKIE);
    if !joined.is_empty() {
        req.insert_header(http::header::COOKIE, joined)?;
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
        let mut only = req(&["custos_session=abc"]);
        strip(&mut only, &["custos_session"]).unwrap();
        assert!(only.headers.get("cookie").is_none());
    }

    #[test]
    fn attributes() {
        assert_eq!(set("__Host-s", "v", None, false), "__Host-s=v; Path=/; HttpOnly; SameSite=Lax; Secure");
        assert_eq!(set("s", "", Some(0), false), "s=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    }
}
