//! The layer map, checked: a module imports only from the layers below it (DESIGN.md's
//! "layers, bottom up"), so there is no import cycle and a lower layer never depends on a
//! front end. Read from the source, so a new `use` that breaks the map fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and the modules it may import. `*` is any module.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("audit", &["config", "metrics"]),
    ("session", &["config", "metrics"]),
    ("identity", &["config", "metrics", "audit", "session"]),
    ("policy", &["config", "metrics", "audit", "session"]),
    ("access", &["config", "metrics", "audit", "session", "identity", "policy"]),
    ("http", &["config", "metrics", "audit", "session", "identity", "policy", "access", "telemetry"]),
    ("telemetry", &["config"]),
    ("certs", &["config"]),
    ("server", &["*"]),
    ("cli", &["*"]),
];

/// Crates of a front end that layers below the front ends must not use: nothing under
/// `access` names the HTTP framework, and the access core not even the `http` types.
const NO_FRONT_END: &[(&str, &[&str])] = &[
    ("metrics", &["pingora"]),
    ("audit", &["pingora"]),
    ("session", &["pingora"]),
    ("identity", &["pingora"]),
    ("policy", &["pingora"]),
    ("access", &["pingora", "http"]),
];

/// Whether a line of code names the external crate `name` (`name::…` as a path root, not
/// the tail of a longer path such as `crate::http::`).
fn names_crate(code: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    code.match_indices(&needle).any(|(i, _)| {
        i.checked_sub(1)
            .map(|j| code.as_bytes()[j])
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == b':' || c == b'_'))
    })
}

/// The `crate::<name>` roots a source text names (comments and strings aside).
fn crate_roots(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                for item in group.split(['}', ',']).map(str::trim) {
                    let name: String = item.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or("");
        let module = top.trim_end_matches(".rs");
        if matches!(module, "lib" | "main" | "layers") {
            continue;
        }
        let Some(allowed) = layers.get(module) else {
            wrong.push(format!("{}: module `{module}` has no layer in LAYERS", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("source file");
        for root in crate_roots(&text) {
            if root != module && !allowed.contains(&"*") && !allowed.contains(&root.as_str()) {
                wrong.push(format!("{}: `{module}` imports `crate::{root}`", rel.display()));
            }
        }
        let banned = NO_FRONT_END.iter().find(|(m, _)| *m == module).map_or(&[][..], |(_, b)| *b);
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for name in banned.iter().filter(|b| names_crate(code, b)) {
                wrong.push(format!("{}:{}: `{module}` uses the front-end crate `{name}`", rel.display(), n + 1));
            }
        }
    }
    assert!(wrong.is_empty(), "layer violations:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_imports() {
    assert!(names_crate("let h = http::HeaderValue::from_static(x);", "http"));
    assert!(!names_crate("use crate::http::respond;", "http"));
    let roots = crate_roots("use crate::{audit::Event, http::x};\nlet a = crate::policy::Request; // crate::cli\n");
    assert_eq!(roots.into_iter().collect::<Vec<_>>(), ["audit", "http", "policy"]);
}
