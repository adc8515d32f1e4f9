//! Redis key patterns: `{capture}` parsing, then the anchored regex compiled and matched as
//! the Redis source does, against a fuzzed key.
#![no_main]
use invar_core::RedisPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, key) = text.split_once('\n').unwrap_or((text, "agent:1:run:2"));
    let Ok(p) = RedisPattern::parse(pattern) else {
        return;
    };
    if let Some(re) = &p.regex {
        // The pattern's own regex must always compile: the source relies on it.
        let re = regex::Regex::new(re).unwrap_or_else(|e| panic!("{pattern:?}: {e}"));
        if let Some(c) = re.captures(key) {
            for name in &p.captures {
                assert!(c.name(name).is_some(), "{pattern:?} on {key:?}: no {name}");
            }
        }
    }
});
