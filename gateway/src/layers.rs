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
    ("postgres", &["config", "metrics", "audit", "session", "identity", "policy", "access", "telemetry"]),
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
    ("postgres", &["pingora", "http"]),
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

/// The text without its comments, joined on one line, so a `use` that rustfmt wrapped
/// over several lines reads as one.
fn code_of(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join(" ")
}

/// The leading identifier of `s`.
fn ident(s: &str) -> String {
    s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The first-level items of a `{…}` group that `rest` opens: `{a::X, b::{Y, Z}}` → a, b.
fn group_roots(rest: &str, out: &mut BTreeSet<String>) {
    let mut depth = 0usize;
    let mut item_start = true;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            ',' if depth == 1 => {
                item_start = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && item_start && !c.is_whitespace() {
            item_start = false;
            let name = ident(&rest[i..]);
            if !name.is_empty() && name != "self" {
                out.insert(name);
            }
        }
    }
}

/// The crate-level modules a source text names: `crate::<name>`, and `super::…` paths that
/// climb out of their top-level module to the crate root (`depth`: how many modules deep
/// the file is, 1 for `src/http/mod.rs` or `src/http.rs`).
fn crate_roots_at(text: &str, depth: usize) -> BTreeSet<String> {
    let code = code_of(text);
    let mut out = BTreeSet::new();
    let mut roots: Vec<&str> = code.match_indices("crate::").map(|(i, _)| &code[i + "crate::".len()..]).collect();
    let up = "super::".repeat(depth);
    if depth > 0 {
        roots.extend(code.match_indices(up.as_str()).map(|(i, _)| &code[i + up.len()..]));
    }
    for rest in roots {
        if rest.starts_with('{') {
            group_roots(rest, &mut out);
        } else {
            let name = ident(rest);
            if !name.is_empty() && name != "super" {
                out.insert(name);
            }
        }
    }
    out
}

#[cfg(test)]
fn crate_roots(text: &str) -> BTreeSet<String> {
    crate_roots_at(text, 0)
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
        // How many modules deep the file is: `http/mod.rs` and `http.rs` are 1.
        let parts = rel.components().count();
        let depth = if rel.ends_with("mod.rs") { parts - 1 } else { parts };
        // Only the crate's own modules count (a `super::super::` in an inline test module
        // reaches its file's module, not the root).
        for root in crate_roots_at(&text, depth).into_iter().filter(|r| layers.contains_key(r.as_str())) {
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
    let wrapped = crate_roots("use crate::{\n    audit::{Event, Kind},\n    session::Store,\n};\n");
    assert_eq!(wrapped.into_iter().collect::<Vec<_>>(), ["audit", "session"]);
    // From `src/audit/mod.rs`, `super::` is the crate root; from `src/audit/chain.rs` it is `audit`.
    assert_eq!(crate_roots_at("use super::http::X;", 1).into_iter().collect::<Vec<_>>(), ["http"]);
    assert!(crate_roots_at("use super::event::Event;", 2).is_empty());
    assert_eq!(crate_roots_at("use super::super::http::X;", 2).into_iter().collect::<Vec<_>>(), ["http"]);
}
