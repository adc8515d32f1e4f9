//! Durations (`250ms`, `30s`, `5m`, `1h`, `7d`) and sizes (`512KB`, `5GB`).

use std::time::Duration;

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
    Ok((n * factor) as u64)
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KB").unwrap(), 512_000);
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5XB").is_err());
    }
}
