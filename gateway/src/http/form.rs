//! What the gateway's own pages read from a request: the query string, one bounded form
//! reader (size limit, `application/x-www-form-urlencoded`), and one check
//! that a form was sent by the gateway's own page (its token, bound to the session, and
//! the `Origin`). Every page that takes a form goes through these, so they share one rule.

use pingora::protocols::http::ServerSession;
use std::collections::HashMap;

/// The most a form (or an admin request body) may hold.
pub const MAX_FORM: usize = 16 * 1024;

/// A decoded form or query string.
pub type Fields = HashMap<String, String>;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("the body is over {MAX_FORM} bytes")]
    TooLarge,
    /// The connection failed mid-body: a body cut off is not a form.
    #[error("the body could not be read")]
    Cut(#[source] Box<pingora::Error>),
}

/// A request's query string, decoded.
pub fn query(req: &pingora::http::RequestHeader) -> Fields {
    req.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// One query parameter, decoded.
pub fn query_param(req: &pingora::http::RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The request body, at most `MAX_FORM` bytes.
pub async fn body(session: &mut ServerSession) -> Result<Vec<u8>, FormError> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await.map_err(FormError::Cut)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_FORM {
            return Err(FormError::TooLarge);
        }
    }
    Ok(body)
}

/// A form body, bounded, read as `application/x-www-form-urlencoded` whatever its
/// `Content-Type` says (as the pages always have: a provider's logout token or a script's
/// form is not refused for a missing or odd type; the fields decide).
pub async fn read(session: &mut ServerSession) -> Result<Fields, FormError> {
    let body = body(session).await?;
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// Why a form was not taken as the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// No session cookie, or the form's token is not the one made for this session.
    #[error("the form's token is missing or not this session's")]
    Token,
    /// The browser says the form was sent from another origin.
    #[error("the form was sent from another origin")]
    Origin,
}

/// The form's `csrf` field is `expected` (the token made for the session cookie, which
/// must be present), and the `Origin`, when the browser sends one, is the gateway's.
pub fn check_csrf(
    req: &pingora::http::RequestHeader,
    fields: &Fields,
    cookie: &str,
    expected: &str,
    origin: &str,
) -> Result<(), CsrfError> {
    if cookie.is_empty() || !fields.get("csrf").is_some_and(|t| crate::access::breakglass::same_token(t, expected)) {
        return Err(CsrfError::Token);
    }
    match req.headers.get(http::header::ORIGIN) {
        None => Ok(()),
        Some(o) if o.as_bytes() == origin.as_bytes() => Ok(()),
        Some(_) => Err(CsrfError::Origin),
    }
}

/// The browser says the request comes from another site (`Sec-Fetch-Site: cross-site`).
pub fn cross_site(req: &pingora::http::RequestHeader) -> bool {
    req.headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> pingora::http::RequestHeader {
        let mut r = pingora::http::RequestHeader::build("POST", b"/.custos/breakglass?a=1&b=%20x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn query_decoded() {
        let r = req(&[]);
        assert_eq!(query(&r).get("b").map(String::as_str), Some(" x"));
        assert_eq!(query_param(&r, "a").as_deref(), Some("1"));
        assert_eq!(query_param(&r, "c"), None);
    }

    #[test]
    fn csrf_needs_token_cookie_and_origin() {
        let origin = "https://gw.example.test";
        let fields: Fields = [("csrf".to_string(), "tok".to_string())].into_iter().collect();
        assert_eq!(check_csrf(&req(&[]), &fields, "c", "tok", origin), Ok(()));
        assert_eq!(check_csrf(&req(&[("origin", origin)]), &fields, "c", "tok", origin), Ok(()));
        assert_eq!(check_csrf(&req(&[]), &fields, "", "tok", origin), Err(CsrfError::Token));
        assert_eq!(check_csrf(&req(&[]), &fields, "c", "other", origin), Err(CsrfError::Token));
        assert_eq!(check_csrf(&req(&[]), &Fields::new(), "c", "tok", origin), Err(CsrfError::Token));
        let other = req(&[("origin", "https://evil.example.test")]);
        assert_eq!(check_csrf(&other, &fields, "c", "tok", origin), Err(CsrfError::Origin));
        assert_eq!(check_csrf(&req(&[("origin", "null")]), &fields, "c", "tok", origin), Err(CsrfError::Origin));
        assert!(cross_site(&req(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(&req(&[("sec-fetch-site", "same-origin")])));
    }
}
