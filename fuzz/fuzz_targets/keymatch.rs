//! The policy's path patterns against casbin's own functions, on any pattern and any
//! request path: keyMatch, keyMatch2 and keyMatch3 compiled by Custos (an automaton or
//! a regex) must decide exactly as casbin does where casbin answers, not match where
//! casbin panics (keyMatch on a `*` offset inside a character), and never panic; a
//! regexMatch pattern (4) as the regex itself decides. Input: a digit (1, 2, 3, 4 for the
//! function), the pattern, a newline, the key. `cargo fuzz run keymatch`
#![no_main]
use custos::policy::matcher::Func;
use custos::policy::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Some((head, key)) = s.split_once('\n') else { return };
    let (f, pattern) = match head.as_bytes().first() {
        Some(b'1') => (Func::KeyMatch, &head[1..]),
        Some(b'2') => (Func::KeyMatch2, &head[1..]),
        Some(b'3') => (Func::KeyMatch3, &head[1..]),
        Some(b'4') => (Func::RegexMatch, &head[1..]),
        _ => return,
    };
    // What Custos refuses to compile is a load error; casbin would panic on it.
    let Ok(p) = Pattern::compile(f, pattern) else { return };
    let ours = p.matches(key);
    let theirs = std::panic::catch_unwind(|| match f {
        Func::KeyMatch => casbin::function_map::key_match(key, pattern),
        Func::KeyMatch2 => casbin::function_map::key_match2(key, pattern),
        Func::RegexMatch => casbin::function_map::regex_match(key, pattern),
        _ => casbin::function_map::key_match3(key, pattern),
    })
    .unwrap_or(false);
    assert_eq!(ours, theirs, "{f:?} pattern {pattern:?} key {key:?}");
});
