//! `[admin]`: the admin listener's address and the administrators' tokens file (one
//! `NAME SHA256HEX` line each, so the file holds no usable token).

use super::{schema, ConfigError, Validator};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Reads a tokens file: `NAME SHA256HEX` per line, `#` comments.
pub fn parse_tokens(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: write `NAME SHA256HEX` (make one with `custos admin-token NAME`)", n + 1));
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {}: `{name}`: the second field must be the token's SHA-256 in hex", n + 1));
        }
        out.insert(hash.to_ascii_lowercase(), name.to_string());
    }
    Ok(out)
}

impl Validator<'_> {
    /// The admin address (apart from the proxy's) and sha256 hex of a token → its name.
    pub(super) fn admin(
        &self,
        raw: Option<&schema::Admin>,
        proxy: [Option<SocketAddr>; 2],
    ) -> Result<(Option<SocketAddr>, HashMap<String, String>), ConfigError> {
        let admin = raw.map(|a| self.socket_addr("admin.listen", &a.listen)).transpose()?;
        if admin.is_some() && proxy.contains(&admin) {
            return Err(self.err("admin.listen", "must differ from the proxy listeners"));
        }
        let tokens = match raw.and_then(|a| a.tokens.as_ref()) {
            None => Default::default(),
            Some(r) => {
                let text = r.load(self.base).map_err(|m| self.err("admin.tokens", m))?;
                let text =
                    String::from_utf8(text.expose().to_vec()).map_err(|_| self.err("admin.tokens", "is not UTF-8"))?;
                parse_tokens(&text).map_err(|m| self.err("admin.tokens", m))?
            }
        };
        Ok((admin, tokens))
    }
}
