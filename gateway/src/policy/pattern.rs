//! The pattern functions of casbin (`keyMatch`, `keyMatch2`, `keyMatch3`, `regexMatch`,
//! `ipMatch`), compiled once per distinct pattern, deciding exactly as the `casbin`
//! crate's functions do: keyMatch2/3 are turned into the same regular expression casbin
//! builds; when that expression is only literal text, `[^/]+` and `.*` (nearly always),
//! it runs as a small automaton over characters instead of a regex, which compiles in
//! microseconds (a regex takes ~90 µs, 0.9 s for 10k rules) and matches faster.

use std::net::IpAddr;

/// Casbin's rewriting of keyMatch2 (`:name`) and keyMatch3 (`{name}`) parameters.
static KEY2_PARAM: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r":[^/]*").expect("a constant regex"));
static KEY3_PARAM: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\{[^/]*\}").expect("a constant regex"));

#[derive(Debug)]
pub enum Pattern {
    /// keyMatch: `*` ends a prefix.
    Key {
        text: Box<str>,
        star: Option<usize>,
    },
    /// keyMatch2/3 as an automaton.
    Auto(Auto),
    /// A regular expression (regexMatch, or keyMatch2/3 with regex syntax in it).
    Re(regex::Regex),
    /// A regexMatch pattern that is only an alternation of literal words
    /// (`^(?:GET|HEAD)$`, `(GET)|(POST)`): compared as text.
    Words(Words),
    Ip(IpPattern),
}

/// Why a pattern does not compile: what casbin would panic with on a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The regex crate's own message, its last line (without the pattern echoed).
    #[error("{0}")]
    Regex(String),
    #[error("`{0}` is not an IP address")]
    NotAnAddress(String),
    #[error("`{0}` is not a netmask")]
    NotANetmask(String),
    #[error("a /{bits} network for an IPv{version} address")]
    NetmaskTooLong { bits: u8, version: u8 },
    #[error("not a pattern function")]
    NotAPatternFunction,
}

impl Pattern {
    /// Compiles `pattern` for `func` (`keyMatch`, …); the error is what casbin would panic
    /// with when a request reached it.
    pub fn compile(func: super::matcher::Func, pattern: &str) -> Result<Pattern, PatternError> {
        use super::matcher::Func;
        match func {
            Func::KeyMatch => Ok(Pattern::Key { text: pattern.into(), star: pattern.find('*') }),
            Func::KeyMatch2 | Func::KeyMatch3 => {
                let mut p = if pattern.contains("/*") { pattern.replace("/*", "/.*") } else { pattern.to_string() };
                let param = if func == Func::KeyMatch2 { &KEY2_PARAM } else { &KEY3_PARAM };
                p = param.replace_all(&p, "[^/]+").into_owned();
                let re = format!("^{p}$");
                match Auto::from_regex(&p) {
                    Some(a) => Ok(Pattern::Auto(a)),
                    None => regex::Regex::new(&re).map(Pattern::Re).map_err(regex_error),
                }
            }
            Func::RegexMatch => match Words::parse(pattern) {
                Some(w) => Ok(Pattern::Words(w)),
                None => regex::Regex::new(pattern).map(Pattern::Re).map_err(regex_error),
            },
            Func::IpMatch => IpPattern::parse(pattern).map(Pattern::Ip),
            Func::G(_) => Err(PatternError::NotAPatternFunction),
        }
    }

    /// The text every key this pattern matches starts with, when there is one.
    pub fn literal_prefix(&self) -> Option<&str> {
        match self {
            Pattern::Key { text, star: Some(i) } => Some(&text[..*i]),
            Pattern::Key { text, star: None } => Some(text),
            Pattern::Auto(a) => Some(&a.prefix),
            Pattern::Re(_) | Pattern::Ip(_) | Pattern::Words(_) => None,
        }
    }

    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Key { text, .. } => key_match(key, text),
            Pattern::Auto(a) => a.matches(key),
            Pattern::Re(re) => re.is_match(key),
            Pattern::Words(w) => w.matches(key),
            Pattern::Ip(p) => p.matches(key),
        }
    }
}

/// casbin's keyMatch, comparing bytes: casbin slices the key at the pattern's `*` offset
/// and panics when that falls inside a character (a non-ASCII path); here that key does
/// not match. Everywhere else the same answer. Custos registers this one in the `casbin`
/// crate too, so both engines agree and no request can make a decision fail.
pub fn key_match(key: &str, pattern: &str) -> bool {
    match pattern.find('*') {
        Some(i) if key.len() > i => key.as_bytes()[..i] == pattern.as_bytes()[..i],
        Some(i) => key.as_bytes() == &pattern.as_bytes()[..i],
        None => key == pattern,
    }
}

/// casbin's ipMatch, without its panics: a key that is not an address, or a pattern
/// that is not an address or network (refused at load where Custos can see it), does not
/// match. Registered in the `casbin` crate too.
pub fn ip_match(key: &str, pattern: &str) -> bool {
    IpPattern::parse(pattern).is_ok_and(|p| p.matches(key))
}

fn regex_error(e: regex::Error) -> PatternError {
    PatternError::Regex(e.to_string().lines().last().unwrap_or("").trim().to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Char(char),
    /// `[^/]`: one character that is not `/`.
    NotSlash,
    /// `[^/]*` (the second half of `[^/]+`).
    NotSlashStar,
    /// `.*`: characters other than `\n`.
    AnyStar,
}

/// An anchored pattern of literal characters, `[^/]+` and `.*`, run as a position-set
/// automaton (at most 128 steps).
#[derive(Debug)]
pub struct Auto {
    steps: Vec<Step>,
    /// The literal text every match starts with (checked first).
    prefix: Box<str>,
}

const META: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];

impl Auto {
    /// From the body of casbin's `^…$` expression; `None` when it holds other syntax.
    fn from_regex(body: &str) -> Option<Auto> {
        let mut steps = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[^/]+") {
                steps.push(Step::NotSlash);
                steps.push(Step::NotSlashStar);
                rest = r;
            } else if let Some(r) = rest.strip_prefix(".*") {
                steps.push(Step::AnyStar);
                rest = r;
            } else {
                let c = rest.chars().next()?;
                if META.contains(&c) {
                    return None;
                }
                steps.push(Step::Char(c));
                rest = &rest[c.len_utf8()..];
            }
        }
        if steps.len() > 127 {
            return None;
        }
        let prefix: String = steps
            .iter()
            .map_while(|s| match s {
                Step::Char(c) => Some(*c),
                _ => None,
            })
            .collect();
        Some(Auto { steps, prefix: prefix.into() })
    }

    /// The positions reachable from `set` without reading (stars may match nothing).
    fn close(&self, mut set: u128) -> u128 {
        for (i, s) in self.steps.iter().enumerate() {
            if set & (1 << i) != 0 && matches!(s, Step::NotSlashStar | Step::AnyStar) {
                set |= 1 << (i + 1);
            }
        }
        set
    }

    pub fn matches(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(&*self.prefix) else { return false };
        let n = self.steps.len();
        let start = self.prefix.chars().count();
        let mut set = self.close(1 << start);
        for c in rest.chars() {
            let mut next = 0u128;
            let mut s = set;
            while s != 0 {
                let i = s.trailing_zeros() as usize;
                s &= s - 1;
                if i == n {
                    continue;
                }
                match self.steps[i] {
                    Step::Char(x) if x == c => next |= 1 << (i + 1),
                    Step::NotSlash if c != '/' => next |= 1 << (i + 1),
                    Step::NotSlashStar if c != '/' => next |= 1 << i,
                    Step::AnyStar if c != '\n' => next |= 1 << i,
                    _ => {}
                }
            }
            if next == 0 {
                return false;
            }
            set = self.close(next);
        }
        set & (1 << n) != 0
    }
}

/// An alternation of literal words, anchored at the start, the end, both or neither.
#[derive(Debug)]
pub struct Words {
    words: Vec<Box<str>>,
    start: bool,
    end: bool,
}

impl Words {
    /// `None` for anything but `[^](?:a|b)[$]`, `[^](a|b)[$]`, `(a)|(b)`, `a|b`, `^a$`…
    fn parse(p: &str) -> Option<Words> {
        // `(X)` or `(?:X)` around the whole of `s`, with no group inside.
        fn group(s: &str) -> Option<&str> {
            let inner = s.strip_prefix("(?:").or_else(|| s.strip_prefix('('))?.strip_suffix(')')?;
            (!inner.contains(['(', ')'])).then_some(inner)
        }
        let (start, rest) = p.strip_prefix('^').map_or((false, p), |r| (true, r));
        let (end, body) = rest.strip_suffix('$').map_or((false, rest), |r| (true, r));
        let inner = match group(body) {
            Some(g) => g,
            // `^a|b$` anchors each branch, not the whole: left to the regex.
            None if (start || end) && body.contains('|') => return None,
            None => body,
        };
        let mut words = Vec::new();
        for b in inner.split('|') {
            let w = group(b).unwrap_or(b);
            if w.is_empty() || w.chars().any(|c| META.contains(&c)) {
                return None;
            }
            words.push(w.into());
        }
        Some(Words { words, start, end })
    }

    fn matches(&self, key: &str) -> bool {
        self.words.iter().any(|w| match (self.start, self.end) {
            (true, true) => key == &**w,
            (true, false) => key.starts_with(&**w),
            (false, true) => key.ends_with(&**w),
            (false, false) => key.contains(&**w),
        })
    }
}

/// ipMatch's second argument: an address, or a network `addr/bits`.
#[derive(Debug)]
pub struct IpPattern {
    addr: IpAddr,
    bits: Option<u8>,
}

impl IpPattern {
    fn parse(p: &str) -> Result<IpPattern, PatternError> {
        let (a, bits) = match p.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (p, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| PatternError::NotAnAddress(a.to_string()))?;
        let bits = match bits {
            None => None,
            Some(b) => {
                let n: u8 = b.parse().map_err(|_| PatternError::NotANetmask(b.to_string()))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if n > max {
                    return Err(PatternError::NetmaskTooLong { bits: n, version: if max == 32 { 4 } else { 6 } });
                }
                Some(n)
            }
        };
        Ok(IpPattern { addr, bits })
    }

    fn matches(&self, key: &str) -> bool {
        let Ok(ip) = key.parse::<IpAddr>() else { return false };
        match self.bits {
            Some(bits) => match (self.addr, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
                _ => false,
            },
            None => match (ip, self.addr) {
                (IpAddr::V4(a), IpAddr::V6(n)) => match n.to_ipv4() {
                    Some(n) => n == a,
                    None => false,
                },
                (a, n) => a == n,
            },
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, part) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if part == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - part);
    a[whole] & mask == b[whole] & mask
}

#[cfg(test)]
mod tests {
    use super::super::matcher::Func;
    use super::*;

    /// The automaton against the regex casbin builds, on paths that probe each step.
    #[test]
    fn the_automaton_decides_as_the_regex_does() {
        let patterns = [
            "/res/:id",
            "/res/*",
            "/a/:x/b/:y",
            "ehr:/patients/*",
            "/*",
            "*",
            "/a/*/b",
            "/:id",
            "/p/{id}/notes",
            "/x:",
            "/é/:id",
        ];
        let keys = [
            "/res/1",
            "/res/",
            "/res/1/2",
            "/res",
            "/a/1/b/2",
            "/a/1/b/",
            "/a//b/2",
            "ehr:/patients/1",
            "ehr:/patients",
            "/",
            "",
            "/a/x/y/b",
            "/a/b",
            "/p/7/notes",
            "/p//notes",
            "/x:",
            "/xy",
            "/é/1",
            "/é/",
            "/res/a\nb",
            "/a/\n/b",
        ];
        let mut compared = 0;
        for f in [Func::KeyMatch2, Func::KeyMatch3] {
            let casbin_fn =
                if f == Func::KeyMatch2 { casbin::function_map::key_match2 } else { casbin::function_map::key_match3 };
            for p in patterns {
                let Ok(ours) = Pattern::compile(f, p) else {
                    // What we refuse at load, casbin panics on at the first request.
                    assert!(std::panic::catch_unwind(|| casbin_fn("/", p)).is_err(), "{f:?} {p:?} refused");
                    continue;
                };
                for k in keys {
                    assert_eq!(ours.matches(k), casbin_fn(k, p), "{f:?} {p:?} {k:?} ({ours:?})");
                    compared += 1;
                }
            }
        }
        assert!(compared > 300);
    }

    /// Action patterns compared as words decide as the regex does.
    #[test]
    fn word_alternations_decide_as_the_regex_does() {
        let patterns = [
            "^(?:GET|HEAD)$",
            "(GET)|(POST)",
            "GET",
            "^GET$",
            "^(GET)$",
            "GET|POST",
            "^GET",
            "GET$",
            "^(?:GET)$",
            "^GET|POST$",
            "^(?:(GET)|(POST))$",
            ".*",
            "GET|",
            "(?:DELETE)",
            "[A-Z]+",
            "^(?:breakglass)$",
            "a b",
        ];
        let keys = ["GET", "POST", "HEAD", "FORGET", "GETS", "get", "", "DELETE", "breakglass", "a b", "xGETx"];
        let mut words = 0;
        for p in patterns {
            let ours = Pattern::compile(Func::RegexMatch, p);
            let Ok(re) = regex::Regex::new(p) else { continue };
            let ours = ours.unwrap();
            words += usize::from(matches!(ours, Pattern::Words(_)));
            for k in keys {
                assert_eq!(ours.matches(k), re.is_match(k), "{p:?} {k:?} ({ours:?})");
            }
        }
        assert!(words >= 10, "only {words} patterns took the word path");
    }

    #[test]
    fn key_match_and_ip_match_decide_as_casbin() {
        for p in ["/foo/*", "/foo", "/ba*", "*"] {
            let ours = Pattern::compile(Func::KeyMatch, p).unwrap();
            for k in ["/foo/bar", "/foo", "/bar", "/ba", "", "/foobar"] {
                assert_eq!(ours.matches(k), casbin::function_map::key_match(k, p), "{p} {k}");
            }
        }
        // Where casbin panics (the `*` offset inside a character), no match.
        assert!(std::panic::catch_unwind(|| casbin::function_map::key_match("/é", "/a*")).is_err());
        assert!(!Pattern::compile(Func::KeyMatch, "/a*").unwrap().matches("/é"));
        assert!(!ip_match("", "10.0.0.0/8") && !ip_match("10.0.0.1", "nope"));
        for p in ["192.168.2.0/24", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::/32", "0.0.0.0/0", "192.168.2.130/25"] {
            let ours = Pattern::compile(Func::IpMatch, p).unwrap();
            for k in ["192.168.2.1", "192.168.3.1", "10.0.0.1", "2001:db8::1", "::1", "192.168.2.200"] {
                assert_eq!(ours.matches(k), casbin::function_map::ip_match(k, p), "{p} {k}");
            }
        }
        assert!(Pattern::compile(Func::IpMatch, "10.0.0.0/33").is_err());
        assert!(Pattern::compile(Func::IpMatch, "nope").is_err());
        assert!(Pattern::compile(Func::RegexMatch, "(").is_err());
    }
}
