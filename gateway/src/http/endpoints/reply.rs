//! What a gateway endpoint answers when it did what was asked: a status, headers
//! (cookies among them) and a body, written by the dispatcher in one place. A refusal is
//! a [`super::Denial`] instead.

use crate::http::respond::{self, Refusal};
use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;

/// An endpoint's answer.
#[derive(Debug)]
pub struct Reply {
    status: u16,
    body: Body,
    headers: Vec<(&'static str, String)>,
    close: bool,
}

#[derive(Debug)]
enum Body {
    Bytes(Bytes),
    /// A page of the refusal table, sent without a decision record (the endpoint wrote
    /// its own).
    Refusal(Refusal),
    /// Already written by the sign-in step, which starts a sign-in at the provider.
    Sent,
}

impl Reply {
    /// A plain-text reply (the gateway's default content type).
    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply { status, body: Body::Bytes(body.into()), headers: Vec::new(), close: false }
    }

    pub fn html(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::text(status, body).header("content-type", "text/html; charset=utf-8")
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        Reply::text(status, v.to_string()).header("content-type", "application/json")
    }

    /// `302 Found` to `location`.
    pub fn redirect(location: impl Into<String>) -> Reply {
        Reply::text(302, Bytes::from_static(b"302 Found\n")).header("location", location)
    }

    /// `303 See Other` to `location` (after a form).
    pub fn see_other(location: impl Into<String>) -> Reply {
        Reply::text(303, Bytes::from_static(b"303 See Other\n")).header("location", location)
    }

    /// The page of `r`, with the headers it carries (a 401's challenge), unrecorded.
    pub fn refusal(r: Refusal) -> Reply {
        Reply { status: r.status(), body: Body::Refusal(r), headers: Vec::new(), close: false }
    }

    /// The response was written by the sign-in step.
    pub fn sent() -> Reply {
        Reply { status: 0, body: Body::Sent, headers: Vec::new(), close: false }
    }

    /// One more header; `content-type` replaces the default.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn cookie(self, set_cookie: String) -> Reply {
        self.header("set-cookie", set_cookie)
    }

    /// The connection is closed after the reply (the rest of the body is not read).
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    pub async fn send(self, session: &mut Session) -> Result<()> {
        match self.body {
            Body::Bytes(b) => respond::write_full(session, self.status, b, self.close, &self.headers).await,
            Body::Refusal(r) => respond::refuse_with(session, r, self.headers).await,
            Body::Sent => Ok(()),
        }
    }
}
