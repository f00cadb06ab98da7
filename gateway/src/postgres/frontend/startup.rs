//! The client's startup parameters, judged: who (`user`), which database, the protocol
//! minor version, and what is passed upstream. Custos speaks only UTF-8, so another
//! `client_encoding` is refused; a replication connection is refused; `options` are
//! taken apart — `-c custos.role=NAME` picks the database role, any other setting is
//! dropped — and so is any parameter not on the short list of display settings. What was
//! dropped is named (never its value) in the connection's decision record.

use super::refuse::Why;

/// Startup parameters passed to the upstream as the client sent them (compared without
/// case): display settings, which change how values print, not what may be reached.
const PASSED: &[&str] = &["datestyle", "timezone", "intervalstyle", "extra_float_digits", "bytea_output"];

/// The `options` setting that names the role to connect as.
pub const ROLE_OPTION: &str = "custos.role";

/// What the client's StartupMessage asks for, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub user: String,
    pub database: String,
    /// The client's own `application_name`, appended upstream after the person.
    pub application_name: Option<String>,
    /// `-c custos.role=NAME` in `options`.
    pub role: Option<String>,
    /// Parameters passed upstream as sent.
    pub passed: Vec<(String, String)>,
    /// Names of what was not passed on (`options:search_path`, `search_path`, …).
    pub filtered: Vec<String>,
}

/// Judges the parameters of a StartupMessage.
pub fn judge(params: &[(String, String)]) -> Result<Startup, Why<'static>> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(user) = get("user").filter(|u| !u.is_empty()) else { return Err(Why::ProtocolViolation) };
    let mut s = Startup {
        user: user.to_string(),
        database: get("database").filter(|d| !d.is_empty()).unwrap_or(user).to_string(),
        application_name: get("application_name").filter(|a| !a.is_empty()).map(str::to_string),
        role: None,
        passed: Vec::new(),
        filtered: Vec::new(),
    };
    for (name, value) in params {
        match name.as_str() {
            "user" | "database" | "application_name" => {}
            "client_encoding" => {
                if !utf8_compatible(value) {
                    return Err(Why::ClientEncoding);
                }
            }
            "replication" => {
                if !matches!(value.to_ascii_lowercase().as_str(), "false" | "off" | "no" | "0") {
                    return Err(Why::Replication);
                }
            }
            "options" => options(value, &mut s),
            n if PASSED.iter().any(|p| p.eq_ignore_ascii_case(n)) => s.passed.push((name.clone(), value.clone())),
            _ => s.filtered.push(name.clone()),
        }
    }
    Ok(s)
}

/// UTF8 by any of its names, or SQL_ASCII: a client that converts nothing, which reads
/// the UTF-8 Custos asks the upstream for as it would the database's own bytes.
fn utf8_compatible(v: &str) -> bool {
    let v = v.to_ascii_lowercase().replace(['-', '_'], "");
    matches!(v.as_str(), "utf8" | "unicode" | "sqlascii")
}

/// `options`: `-c name=value` and `--name=value` settings, split as the server splits
/// them (white space, `\` escaping the next character).
fn options(text: &str, s: &mut Startup) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        match setting.as_deref().and_then(|t| t.split_once('=')) {
            Some((name, value)) if name.eq_ignore_ascii_case(ROLE_OPTION) => s.role = Some(value.to_string()),
            Some((name, _)) => s.filtered.push(format!("options:{}", name.to_ascii_lowercase().replace('-', "_"))),
            None => s.filtered.push("options".to_string()),
        }
    }
    s.filtered.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn user_database_and_the_role_option() {
        let s = judge(&p(&[
            ("user", "alice"),
            ("options", "-c custos.role=dba -csearch_path=evil --statement-timeout=0"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("search_path", "evil"),
            ("client_encoding", "UTF8"),
        ]))
        .unwrap();
        assert_eq!((s.user.as_str(), s.database.as_str()), ("alice", "alice"));
        assert_eq!(s.role.as_deref(), Some("dba"));
        assert_eq!(s.application_name.as_deref(), Some("psql"));
        assert_eq!(s.passed, p(&[("DateStyle", "ISO")]));
        assert_eq!(s.filtered, ["options:search_path", "options:statement_timeout", "search_path"]);
    }

    #[test]
    fn encodings_and_replication() {
        assert_eq!(judge(&p(&[("user", "a"), ("client_encoding", "LATIN1")])), Err(Why::ClientEncoding));
        assert!(judge(&p(&[("user", "a"), ("client_encoding", "utf-8")])).is_ok());
        assert!(judge(&p(&[("user", "a"), ("client_encoding", "SQL_ASCII")])).is_ok());
        assert_eq!(judge(&p(&[("user", "a"), ("replication", "database")])), Err(Why::Replication));
        assert_eq!(judge(&p(&[("user", "a"), ("replication", "true")])), Err(Why::Replication));
        assert!(judge(&p(&[("user", "a"), ("replication", "false")])).is_ok());
        assert_eq!(judge(&p(&[("database", "x")])), Err(Why::ProtocolViolation));
    }

    #[test]
    fn escaped_spaces_stay_in_a_word() {
        let s = judge(&p(&[("user", "a"), ("options", r"-c custos.role=read\ ers")])).unwrap();
        assert_eq!(s.role.as_deref(), Some("read ers"));
    }
}
