//! The YAML config loader: bytes -> model or diagnostics, then both renderings.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn env(name: &str) -> Option<String> {
    (name.len() % 2 == 0).then(|| "postgres://app:hunter22@127.0.0.1:5432/test".to_string())
}

fuzz_target!(|data: &[u8]| {
    // The loader reads text; `invar validate` rejects invalid UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: includes resolve against it and find nothing.
    let path = Path::new("/nonexistent-invar-fuzz/invar.yaml");
    if let Err(d) = invar_config::load_from_str(path, text, &env) {
        let _ = d.render(false);
        let _ = d.render(true);
    }
});
