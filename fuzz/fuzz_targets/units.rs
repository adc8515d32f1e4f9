//! Durations and sizes as the config writes them.
#![no_main]
use invar_core::units::{MAX_DURATION, MAX_SIZE, format_duration, parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION, "{s:?} gave {d:?}");
        let _ = format_duration(d);
    }
    if let Ok(n) = parse_size(s) {
        assert!(n <= MAX_SIZE, "{s:?} gave {n}");
    }
});
