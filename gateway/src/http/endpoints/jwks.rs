//! `/.custos/jwks.json`: the keys upstreams verify identity assertions with.

use super::{Denial, Reply};
use crate::http::respond::Refusal;
use crate::http::Gateway;

impl Gateway {
    pub(in crate::http) fn jwks_endpoint(&self) -> Result<Reply, Denial> {
        match self.auth().and_then(|a| a.asserter.as_ref()) {
            Some(a) => Ok(Reply::text(200, bytes::Bytes::copy_from_slice(a.jwks().as_bytes()))
                .header("content-type", "application/jwk-set+json")),
            None => Ok(Reply::refusal(Refusal::NoRoute)),
        }
    }
}
