//! The route table, compiled once from the config: host first (exact over wildcard,
//! longest wildcard first, then routes for any host), then the longest path prefix on
//! segment boundaries. A host that has routes of its own never falls through to a less
//! specific host's routes.

use super::path::NormPath;
pub use crate::config::routes::host_of;
use crate::config::{HostMatch, Route};
use std::collections::HashMap;
use std::sync::Arc;

/// A route with its metric handles, resolved once so requests do not hash labels.
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Route,
    pub latency: prometheus::Histogram,
    pub upstream_errors: prometheus::IntCounter,
    /// `custos_requests_total{route, status}` for the statuses of `metrics::STATUSES`.
    by_status: Vec<prometheus::IntCounter>,
}

impl RouteEntry {
    fn new(route: &Route) -> RouteEntry {
        let name = route.name.as_str();
        RouteEntry {
            latency: super::metrics::LATENCY.with_label_values(&[name]),
            upstream_errors: super::metrics::UPSTREAM_ERRORS.with_label_values(&[name]),
            by_status: super::metrics::STATUSES
                .iter()
                .map(|s| super::metrics::REQUESTS.with_label_values(&[name, s]))
                .collect(),
            route: route.clone(),
        }
    }

    /// Counts one answered request.
    pub fn count(&self, status: u16) {
        let label = super::metrics::status_label(status);
        match super::metrics::STATUSES.iter().position(|s| *s == label) {
            Some(i) => self.by_status[i].inc(),
            None => super::metrics::REQUESTS.with_label_values(&[&self.route.name, label]).inc(),
        }
    }
}

impl std::ops::Deref for RouteEntry {
    type Target = Route;
    fn deref(&self) -> &Route {
        &self.route
    }
}

#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<Arc<RouteEntry>>>,
    /// (suffix such as `.example.org`, routes), longest suffix first.
    wildcard: Vec<(String, Vec<Arc<RouteEntry>>)>,
    any: Vec<Arc<RouteEntry>>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut r = Router::default();
        for route in routes {
            let route = Arc::new(RouteEntry::new(route));
            match &route.host {
                HostMatch::Any => r.any.push(route),
                HostMatch::Exact(h) => r.exact.entry(h.clone()).or_default().push(route),
                HostMatch::Wildcard(s) => match r.wildcard.iter_mut().find(|(w, _)| w == s) {
                    Some((_, v)) => v.push(route),
                    None => r.wildcard.push((s.clone(), vec![route])),
                },
            }
        }
        let longest_first = |v: &mut Vec<Arc<RouteEntry>>| v.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        r.exact.values_mut().for_each(longest_first);
        r.wildcard.iter_mut().for_each(|(_, v)| longest_first(v));
        longest_first(&mut r.any);
        r.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        r
    }

    /// `host` is lower-case without port (see [`host_of`]).
    /// The route called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<RouteEntry>> {
        self.exact
            .values()
            .flatten()
            .chain(self.wildcard.iter().flat_map(|(_, v)| v))
            .chain(&self.any)
            .find(|r| r.name == name)
    }

    pub fn find(&self, host: &str, path: &NormPath) -> Option<&Arc<RouteEntry>> {
        let group = self
            .exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
                    .map(|(_, v)| v)
            })
            .unwrap_or(&self.any);
        group.iter().find(|r| path.starts_with_segments(&r.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router(toml: &str) -> Router {
        let cfg = Config::from_toml(std::path::Path::new("t.toml"), toml).unwrap();
        Router::new(&cfg.routes)
    }

    #[test]
    fn host_then_longest_segment_prefix() {
        let r = router(
            r#"
            listen.http = "127.0.0.1:1"
            [[routes]]
            name = "root"
            upstream = "http://127.0.0.1:1"
            public = true
            [[routes]]
            name = "api"
            path = "/api"
            upstream = "http://127.0.0.1:1"
            public = true
            [[routes]]
            name = "api-v2"
            path = "/api/v2"
            upstream = "http://127.0.0.1:1"
            public = true
            [[routes]]
            name = "wild"
            host = "*.example.org"
            upstream = "http://127.0.0.1:1"
            public = true
            [[routes]]
            name = "exact"
            host = "ehr.example.org"
            path = "/ehr"
            upstream = "http://127.0.0.1:1"
            public = true
            "#,
        );
        let f = |host: &str, p: &str| r.find(host, &NormPath::parse(p.as_bytes()).unwrap()).map(|r| r.name.as_str());
        assert_eq!(f("x", "/apix"), Some("root"));
        assert_eq!(f("x", "/api"), Some("api"));
        assert_eq!(f("x", "/api/v2/x"), Some("api-v2"));
        assert_eq!(f("x", "/api/v20"), Some("api"));
        assert_eq!(f("a.example.org", "/api"), Some("wild"));
        assert_eq!(f("example.org", "/api"), Some("api"));
        assert_eq!(f("ehr.example.org", "/ehr/1"), Some("exact"));
        // An exact host never falls through to the wildcard or the any-host routes.
        assert_eq!(f("ehr.example.org", "/other"), None);
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(host_of("Example.ORG:8443"), "example.org");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("example.org."), "example.org");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
    }
}
