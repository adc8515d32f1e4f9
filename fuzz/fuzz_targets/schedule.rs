//! Cron in a time zone: parse, then next/previous ticks and the misfire count around a
//! fuzzed instant.
#![no_main]
use invar_core::Misfire;
use invar_core::schedule::{Schedule, misfire};
use libfuzzer_sys::fuzz_target;

const ZONES: [&str; 8] = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Santiago",
    "Etc/GMT+12",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&data[..8]);
    let zone_byte = data[8];
    let Ok(expr) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    // A fuzzed zone name, or one of the zones with odd DST rules.
    let zone = if zone_byte == 255 {
        expr.rsplit_once('|').map(|(_, z)| z)
    } else {
        Some(ZONES[usize::from(zone_byte) % ZONES.len()])
    };
    let expr = expr.split('|').next().unwrap_or(expr);
    let Ok(s) = Schedule::parse(expr, zone) else {
        return;
    };
    // Instants come from the clock, never from input: 1970 to 2200, then one near today.
    // (Far past 2200 each call gets slow — jiff walks the zone's yearly rule transitions one
    // by one past the tzdb's last listed one, ~12 s per call in year 8420 — but no input
    // reaches such an instant.)
    let secs = i64::from_le_bytes(t);
    for at in [
        chrono::DateTime::from_timestamp(secs.rem_euclid(7_258_118_400), 0),
        chrono::DateTime::from_timestamp(1_700_000_000 + secs.rem_euclid(400_000_000), 0),
    ]
    .into_iter()
    .flatten()
    {
        let next = s.next_after(at);
        let prev = s.latest_at_or_before(at);
        if let (Some(n), Some(p)) = (next, prev) {
            assert!(p <= at && at < n, "{expr} in {zone:?}: {p} <= {at} < {n}");
        }
        if let Some(p) = prev {
            let _ = misfire(
                &s,
                Misfire::RunOnce,
                Some(p - chrono::Duration::days(2)),
                at,
            );
        }
    }
});
