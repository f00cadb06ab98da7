//! The break-glass pages' HTML: the declaration form, the sealed link's form and the
//! review queue. Everything from a request or a record is escaped.

use super::{LINK_PATH, PATH, REVIEWS_PATH};
use crate::access::breakglass::{self as bg, rfc3339, Record};
use crate::http::endpoints::Reply;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A page with `title` and an HTML `body`.
pub fn page(status: u16, title: &str, body: &str) -> Reply {
    let html =
        format!("<!doctype html><meta charset=\"utf-8\"><title>{t}</title><h1>{t}</h1>\n{body}\n", t = esc(title));
    Reply::html(status, html)
}

/// A refusal's page.
pub fn refused(status: u16, msg: &str) -> Reply {
    page(status, "Emergency access refused", &format!("<p>{}</p>", esc(msg)))
}

/// How a scope reads on a page.
fn scope_text(scope: &str) -> String {
    match scope {
        bg::WHOLE_ROUTE => "the whole route".to_string(),
        p => format!("the record <code>{}</code>", esc(p)),
    }
}

/// The declaration form for `route` at `path` (`path` the route's own: the whole route).
pub struct DeclareForm<'a> {
    pub route: &'a str,
    pub route_path: &'a str,
    pub path: &'a str,
    pub csrf: &'a str,
    pub settings: &'a bg::Settings,
}

impl DeclareForm<'_> {
    pub fn reply(&self) -> Reply {
        let settings = self.settings;
        let max_min = settings.max.as_secs().div_ceil(60);
        let scope = if self.path == self.route_path {
            format!("<input type=\"hidden\" name=\"scope\" value=\"{}\">", bg::WHOLE_ROUTE)
        } else {
            format!(
                "<fieldset><legend>What do you need to open?</legend>\
                 <label><input type=\"radio\" name=\"scope\" value=\"path\" checked> This record only: <code>{p}</code></label><br>\
                 <label><input type=\"radio\" name=\"scope\" value=\"{w}\"> The whole route <code>{r}</code></label></fieldset>",
                p = esc(self.path),
                w = bg::WHOLE_ROUTE,
                r = esc(self.route),
            )
        };
        let body = format!(
            "<p><strong>Emergency access is recorded, alerted to the security team at once, and reviewed.</strong> Use it only when a patient's care cannot wait for normal access.</p>\
             <form method=\"post\" action=\"{PATH}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"route\" value=\"{r}\"><input type=\"hidden\" name=\"path\" value=\"{p}\">{scope}\
             <p><label>Why do you need this access now? (required)<br><textarea name=\"justification\" required maxlength=\"{max}\" rows=\"5\" cols=\"60\"></textarea></label></p>\
             <p><label>Case or ticket reference (optional) <input name=\"case_ref\" maxlength=\"64\"></label></p>\
             <p><label>Minutes <input name=\"minutes\" type=\"number\" min=\"1\" max=\"{max_min}\" value=\"{d}\"></label></p>\
             <p><button>Declare emergency and open {r}</button></p></form>",
            csrf = self.csrf,
            r = esc(self.route),
            p = esc(self.path),
            max = settings.justification_max,
            d = settings.default.as_secs().div_ceil(60).min(max_min),
        );
        page(200, "Emergency access", &body)
    }
}

/// A sealed link's form: the justification (and the code when the link has one).
pub fn link_form(link: &bg::Link, route: &str, token: &str, justification_max: usize) -> Reply {
    let code = if link.totp.is_some() {
        "<p><label>Code from your authenticator <input name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></label></p>"
    } else {
        ""
    };
    let body = format!(
        "<p>Emergency access to <strong>{r}</strong> ({scope}) as <strong>{u}</strong>, once, until {end}. It is recorded, alerted and reviewed.</p>\
         <form method=\"post\" action=\"{LINK_PATH}\"><input type=\"hidden\" name=\"t\" value=\"{t}\">{code}\
         <p><label>Why do you need this access now? (required)<br><textarea name=\"justification\" required maxlength=\"{max}\" rows=\"5\" cols=\"60\"></textarea></label></p>\
         <p><label>Case or ticket reference (optional) <input name=\"case_ref\" maxlength=\"64\"></label></p>\
         <p><button>Open {r}</button></p></form>",
        r = esc(route),
        scope = scope_text(&super::link_scope(link)),
        end = rfc3339(link.expires),
        u = esc(&link.user),
        t = esc(token),
        max = justification_max,
    );
    page(200, "Sealed emergency access", &body)
}

/// A used link's page (`alerted`: the presentation was alerted).
pub fn link_used(alerted: bool) -> Reply {
    let body = if alerted {
        "<p>This link has been used. It works once. The security team has been alerted.</p>"
    } else {
        "<p>This link has been used. It works once.</p>"
    };
    page(410, "Emergency link already used", body)
}

/// The review queue: every kept record, a form beside each one not reviewed yet.
pub fn reviews(list: &[Record], csrf: &str) -> Reply {
    let mut body = String::from("<p>Every emergency access Custos has kept, newest first. The justification may hold PHI: this page is for auditors, and reading it is recorded.</p>");
    for r in list {
        body.push_str(&format!(
            "<section><h2>{route}: {who}</h2><p>{kind}, {scope}, {start} to {end}, grant <code>{id}</code>{case}{by}</p><blockquote>{why}</blockquote>",
            route = esc(&r.route),
            scope = scope_text(&r.scope),
            who = esc(&r.subject),
            kind = esc(r.kind.as_str()),
            start = rfc3339(r.started),
            end = rfc3339(r.expires),
            id = esc(&r.id),
            case = r.case_ref.as_ref().map(|c| format!(", case {}", esc(c))).unwrap_or_default(),
            by = r.issued_by.as_ref().map(|b| format!(", link issued by {}", esc(b))).unwrap_or_default(),
            why = esc(&r.justification),
        ));
        match &r.review {
            Some(v) => body.push_str(&format!(
                "<p>Reviewed: <strong>{}</strong> by {} at {}: {}</p></section>",
                esc(v.verdict.as_str()),
                esc(&v.reviewer),
                rfc3339(v.at),
                esc(&v.note)
            )),
            None => body.push_str(&format!(
                "<form method=\"post\" action=\"{REVIEWS_PATH}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
                 <select name=\"verdict\"><option>justified</option><option>unjustified</option></select> \
                 <input name=\"note\" required maxlength=\"{max}\" placeholder=\"note\"> <button>Record review</button></form></section>",
                id = esc(&r.id),
                max = bg::NOTE_MAX,
            )),
        }
    }
    page(200, "Emergency access reviews", &body)
}
