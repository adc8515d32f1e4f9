//! Durations (`250ms`, `30s`, `5m`, `1h`, `7d`) and sizes (`512KB`, `5GB`).

use std::time::Duration;

/// The longest duration a config may give: 10 years (3650 days). Anything longer is a typo,
/// and durations this size still add to an `Instant` or a timestamp without overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// The largest size a config may give: 1 EB (10^18 bytes), well inside `u64` and exact in `f64`.
pub const MAX_SIZE: u64 = 1_000_000_000_000_000_000;

/// Parses `250ms`, `30s`, `5m`, `1h`, `7d` (also `1.5h`, and combined `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("expected a duration like `30s`, `5m`, `1h` or `7d`".into());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("`{t}` has no unit: expected one of ms, s, m, h, d (as in `30s`)")
            })?;
        if num_end == 0 {
            return Err(format!(
                "`{t}` is not a duration: expected a number then ms, s, m, h or d"
            ));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("`{t}` is not a duration"))?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = &after[..unit_end];
        let factor = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => {
                return Err(format!(
                    "unknown duration unit `{unit}` in `{t}`: expected one of ms, s, m, h, d"
                ));
            }
        };
        total += n * factor;
        rest = &after[unit_end..];
    }
    // Digits alone can spell more than f64 holds (`1e400` is not accepted, but 400 nines
    // are): an infinite or too-large total is a range error, never a panic in `from_secs_f64`.
    if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
        return Err(format!("`{t}` is too long: at most 10 years (`3650d`)"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `512KB`, `5GB`, `1.5MiB`, `1024` (bytes). KB = 1000, KiB = 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if num_end == 0 {
        return Err(format!(
            "`{t}` is not a size: expected a number then B, KB, MB, GB, TB (or KiB…)"
        ));
    }
    let n: f64 = t[..num_end]
        .parse()
        .map_err(|_| format!("`{t}` is not a size"))?;
    let unit = t[num_end..].trim();
    let factor: f64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        "TIB" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` in `{t}`: expected one of B, KB, MB, GB, TB, KiB, MiB, GiB"
            ));
        }
    };
    let bytes = n * factor;
    // `as u64` would saturate silently; a size past the cap is a mistake to report.
    if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
        return Err(format!("`{t}` is too large: at most 1 EB (`1000000TB`)"));
    }
    Ok(bytes as u64)
}

/// `90s` → `1m30s`, for messages.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (dd, h, m, sec) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    for (v, u) in [(dd, "d"), (h, "h"), (m, "m"), (sec, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    /// The bug behind 79 panics of mutated examples: `from_secs_f64` on a huge total.
    #[test]
    fn huge_durations_are_range_errors_not_panics() {
        for s in [
            "18446744073709551616s",
            "99999999999999999999s",
            "3651d",
            "521w4d",
            "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000d",
            "3650d1ms",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("at most 10 years"), "{s}: {e}");
        }
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
        assert!(parse_duration("1.5.5s").is_err());
        assert!(parse_duration("..s").is_err());
    }

    #[test]
    fn huge_sizes_are_range_errors() {
        for s in [
            "18446744073709551616",
            "1000001TB",
            "99999999999999999999999TiB",
        ] {
            let e = parse_size(s).unwrap_err();
            assert!(e.contains("at most 1 EB"), "{s}: {e}");
        }
        assert_eq!(parse_size("1000000TB").unwrap(), MAX_SIZE);
        assert!(parse_size("1..2KB").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KB").unwrap(), 512_000);
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5XB").is_err());
    }
}
