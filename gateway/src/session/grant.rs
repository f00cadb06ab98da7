//! The emergency grant a session carries: what it covers and until when. Only the
//! record; how a grant is given, ended and reviewed is break-glass's
//! ([`crate::access::breakglass`]).

use serde::{Deserialize, Serialize};

/// An emergency grant, held on the session it was given to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub route: String,
    /// Unix seconds.
    pub expires: u64,
    /// Made by a sealed link (the session exists only for the grant).
    #[serde(default)]
    pub sealed: bool,
    /// The path declared (the grant covers it and what is below it); `None`: the whole
    /// route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The scope of a grant covering the whole route, as records and alerts name it.
pub const WHOLE_ROUTE: &str = "route";

impl Grant {
    /// Whether a request for `path` (normalised, as the client sent it) on `route` runs
    /// under this grant.
    pub fn covers(&self, route: &str, path: &str) -> bool {
        self.route == route && self.scope.as_deref().is_none_or(|p| within(p, path))
    }

    /// `route`, or the path declared.
    pub fn scope_name(&self) -> String {
        self.scope.clone().unwrap_or_else(|| WHOLE_ROUTE.to_string())
    }
}

/// Whether `path` is `base` or below it, by whole segments (`/patients/1` holds
/// `/patients/1/notes`, not `/patients/10`).
pub fn within(base: &str, path: &str) -> bool {
    let b = base.trim_end_matches('/');
    b.is_empty() || path == b || path.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_scope_holds_its_record_and_what_is_below_it_only() {
        let g = |scope: Option<&str>| Grant {
            id: "g".into(),
            route: "ehr".into(),
            expires: 0,
            sealed: false,
            scope: scope.map(str::to_string),
        };
        let one = g(Some("/patients/1"));
        assert!(one.covers("ehr", "/patients/1"));
        assert!(one.covers("ehr", "/patients/1/notes"));
        for other in ["/patients/10", "/patients/3", "/patients", "/patients/1x", "/"] {
            assert!(!one.covers("ehr", other), "{other}");
        }
        assert!(!one.covers("billing", "/patients/1"));
        assert!(g(Some("/patients/1/")).covers("ehr", "/patients/1/notes"));
        let route = g(None);
        assert!(route.covers("ehr", "/patients/3") && !route.covers("billing", "/patients/3"));
        assert_eq!(route.scope_name(), WHOLE_ROUTE);
        assert!(g(Some("/")).covers("ehr", "/anything"));
    }
}
