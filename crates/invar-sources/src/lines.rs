//! The `lines` probe: one row per matching line of a file (`line_no`, `text`, `ts`, captures).
//!
//! Reading: the whole file; with `tail: N` only its last N lines, read from the end in
//! blocks; with `since: 15m` (and no `tail`) blocks are read from the end until a line older
//! than the window is reached, so a large log costs what its recent part costs. A file that
//! was truncated or rotated since the last run is simply read as it is now (no state is kept
//! between runs). Bytes that are not UTF-8 are replaced (lossy), never an error.
//!
//! `since`: a line is kept when its leading timestamp is at most `since` before the run's
//! start. A line without a timestamp of its own (a stack trace, a continuation) inherits the
//! timestamp of the nearest line above it that has one; lines before the first timestamped
//! line of what was read have no age and are dropped. The `ts` column still shows only a
//! line's own timestamp. Logs are assumed to be written in time order.

use chrono::{DateTime, Utc};
use invar_core::value::parse_timestamp;
use invar_core::{LinesProbe, Table, Value};
use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

static LEADING_TS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")
        .expect("static regex")
});

/// The timestamp a log line starts with (RFC 3339 or `YYYY-MM-DD HH:MM:SS`; zone-less is UTC).
pub fn leading_timestamp(line: &str) -> Option<Value> {
    let m = LEADING_TS.captures(line)?;
    parse_timestamp(&m[1].replace(',', ".")).map(Value::Timestamp)
}

/// Reads `path` (lossy UTF-8, never a crash on bad bytes) and applies the probe; `since` is
/// measured from the current time.
pub fn read_lines(path: &Path, probe: &LinesProbe) -> Result<Table, String> {
    read_lines_at(path, probe, Utc::now())
}

/// As [`read_lines`], with `since` measured from `now` (the run's start).
pub fn read_lines_at(path: &Path, probe: &LinesProbe, now: DateTime<Utc>) -> Result<Table, String> {
    let cutoff = probe.since.map(|s| {
        now - chrono::Duration::from_std(s).unwrap_or_else(|_| chrono::Duration::days(36_500))
    });
    let re = match &probe.pattern {
        Some(p) => Some(Regex::new(p).map_err(|e| format!("invalid regex: {e}"))?),
        None => None,
    };
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .len();
    let (bytes, first_line_no) = match (probe.tail, cutoff) {
        (Some(n), _) => read_tail(&mut file, len, n)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, Some(cutoff)) => read_since(&mut file, len, cutoff)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (buf, 1)
        }
    };
    let text = String::from_utf8_lossy(&bytes);

    let mut columns = vec!["line_no".to_string(), "text".to_string(), "ts".to_string()];
    let capture_names: Vec<String> = re
        .as_ref()
        .map(|r| r.capture_names().flatten().map(str::to_string).collect())
        .unwrap_or_default();
    for c in &capture_names {
        if !columns.contains(c) {
            columns.push(c.clone());
        }
    }
    let mut table = Table::new(columns);
    // The timestamp a line without one inherits (for `since`).
    let mut last_ts: Option<DateTime<Utc>> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut row = vec![
            Value::Int((first_line_no + i as u64) as i64),
            Value::Text(line.to_string()),
            Value::Null,
        ];
        row[2] = leading_timestamp(line).unwrap_or(Value::Null);
        if let Some(cutoff) = cutoff {
            if let Value::Timestamp(t) = row[2] {
                last_ts = Some(t);
            }
            if last_ts.is_none_or(|t| t < cutoff) {
                continue;
            }
        }
        match &re {
            Some(r) => {
                let Some(caps) = r.captures(line) else {
                    continue;
                };
                row.resize(table.columns.len(), Value::Null);
                for name in &capture_names {
                    let idx = table.column(name).expect("column added above");
                    row[idx] = caps
                        .name(name)
                        .map(|m| Value::Text(m.as_str().to_string()))
                        .unwrap_or(Value::Null);
                }
            }
            None => row.resize(table.columns.len(), Value::Null),
        }
        table.rows.push(row);
    }
    Ok(table)
}

/// The lines from the end back to (and including) the first block that holds a line stamped
/// before `cutoff`, read in blocks so a large log is not read whole. Returns the bytes
/// (starting at a line start) and the 1-based number of their first line.
fn read_since(
    file: &mut std::fs::File,
    len: u64,
    cutoff: DateTime<Utc>,
) -> std::io::Result<(Vec<u8>, u64)> {
    const BLOCK: u64 = 64 * 1024;
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0usize;
    while pos > 0 {
        let read = BLOCK.min(pos);
        pos -= read;
        file.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; read as usize];
        file.read_exact(&mut block)?;
        let new_len = block.len();
        block.extend_from_slice(&buf);
        buf = block;
        // Lines that start inside the new block (the first one may be cut: skip it unless the
        // block begins the file).
        let mut i = if pos == 0 {
            0
        } else {
            match buf[..new_len].iter().position(|&b| b == b'\n') {
                Some(j) => j + 1,
                None => continue,
            }
        };
        start = i;
        let mut older = false;
        while i < new_len {
            let end = buf[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |j| i + j);
            let head = String::from_utf8_lossy(&buf[i..end.min(i + 64)]);
            if let Some(Value::Timestamp(t)) = leading_timestamp(&head) {
                older = t < cutoff;
                break;
            }
            i = end + 1;
        }
        if older {
            break;
        }
    }
    let absolute_start = pos + start as u64;
    let before = count_newlines(file, absolute_start)?;
    Ok((buf.split_off(start), before + 1))
}

/// The number of `\n` in the first `upto` bytes of `file`.
fn count_newlines(file: &mut std::fs::File, upto: u64) -> std::io::Result<u64> {
    let mut before = 0u64;
    if upto > 0 {
        file.seek(SeekFrom::Start(0))?;
        let mut reader = std::io::BufReader::new(file.take(upto));
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let k = reader.read(&mut chunk)?;
            if k == 0 {
                break;
            }
            before += chunk[..k].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    Ok(before)
}

/// The last `n` lines, read from the end in blocks so a large log is not read whole.
/// Returns the bytes and the 1-based number of their first line.
fn read_tail(file: &mut std::fs::File, len: u64, n: u64) -> std::io::Result<(Vec<u8>, u64)> {
    const BLOCK: u64 = 64 * 1024;
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    // A trailing newline ends the last line; it does not start a new one.
    let mut newlines = 0u64;
    let mut start_in_buf = None;
    while pos > 0 {
        let read = BLOCK.min(pos);
        pos -= read;
        file.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; read as usize];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        newlines = 0;
        let trailing = buf.last() == Some(&b'\n') && pos + buf.len() as u64 == len;
        let scan_end = if trailing { buf.len() - 1 } else { buf.len() };
        for i in (0..scan_end).rev() {
            if buf[i] == b'\n' {
                newlines += 1;
                if newlines == n {
                    start_in_buf = Some(i + 1);
                    break;
                }
            }
        }
        if start_in_buf.is_some() {
            break;
        }
    }
    let start = start_in_buf.unwrap_or(0);
    let absolute_start = pos + start as u64;
    // Line numbers stay absolute: count the newlines before the window.
    let mut before = 0u64;
    if absolute_start > 0 {
        file.seek(SeekFrom::Start(0))?;
        let mut reader = std::io::BufReader::new(file.take(absolute_start));
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let k = reader.read(&mut chunk)?;
            if k == 0 {
                break;
            }
            before += chunk[..k].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    let _ = newlines;
    Ok((buf.split_off(start), before + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use invar_core::FileRef;
    use std::io::Write;

    fn probe(pattern: Option<&str>, tail: Option<u64>) -> LinesProbe {
        LinesProbe {
            file: FileRef::Path("x".into()),
            pattern: pattern.map(str::to_string),
            tail,
            since: None,
        }
    }

    #[test]
    fn since_keeps_recent_lines_and_inherits_timestamps() {
        let now = parse_timestamp("2026-05-11 12:00:00").unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "no timestamp yet: dropped").unwrap();
        // Many old lines, so the window is found by reading from the end.
        for i in 0..20_000 {
            writeln!(f, "2026-05-11 10:00:00 old line {i} schema_guard FAIL").unwrap();
        }
        writeln!(f, "2026-05-11T11:50:00Z schema_guard FAIL fresh").unwrap();
        writeln!(f, "  at frame 1 schema_guard FAIL (inherits 11:50)").unwrap();
        writeln!(f, "2026-05-11 11:59:00 all good").unwrap();
        let mut p = probe(Some("schema_guard FAIL"), None);
        p.since = Some(std::time::Duration::from_secs(15 * 60));
        let t = read_lines_at(f.path(), &p, now).unwrap();
        assert_eq!(t.rows.len(), 2, "{t:?}");
        assert_eq!(t.rows[0][0], Value::Int(20_002));
        assert_eq!(t.rows[1][0], Value::Int(20_003));
        assert_eq!(
            t.rows[1][2],
            Value::Null,
            "ts shows only a line's own timestamp"
        );
        // An hour's window takes the old lines in as well? No: they are two hours old.
        p.since = Some(std::time::Duration::from_secs(3 * 3600));
        let t = read_lines_at(f.path(), &p, now).unwrap();
        assert_eq!(t.rows.len(), 20_002);
        // With `tail`, `since` filters the tail.
        p.tail = Some(2);
        p.since = Some(std::time::Duration::from_secs(15 * 60));
        let t = read_lines_at(f.path(), &p, now).unwrap();
        assert_eq!(
            t.rows.len(),
            0,
            "the continuation line has no stamp inside the tail"
        );
    }

    #[test]
    fn matches_captures_and_timestamps() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "2026-05-11 11:40:00 boot started").unwrap();
        writeln!(f, "noise").unwrap();
        f.write_all(b"2026-05-11T11:41:00Z schema_guard FAIL missing=049_x.sql \xff\n")
            .unwrap();
        let t = read_lines(f.path(), &probe(Some(r"(?P<what>FAIL|started)"), None)).unwrap();
        assert_eq!(t.columns, vec!["line_no", "text", "ts", "what"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0][0], Value::Int(1));
        assert_eq!(t.rows[1][0], Value::Int(3));
        assert_eq!(t.rows[1][3], Value::Text("FAIL".into()));
        assert_eq!(t.rows[0][2].key_text(), "2026-05-11T11:40:00Z");
        assert!(t.rows[1][1].key_text().ends_with('\u{fffd}'));
    }

    #[test]
    fn tail_reads_the_last_lines_with_absolute_numbers() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for i in 1..=200_000 {
            writeln!(f, "line {i}").unwrap();
        }
        let t = read_lines(f.path(), &probe(None, Some(3))).unwrap();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0][0], Value::Int(199_998));
        assert_eq!(t.rows[2][1], Value::Text("line 200000".into()));
        let t = read_lines(f.path(), &probe(None, Some(10_000_000))).unwrap();
        assert_eq!(t.rows.len(), 200_000);
    }
}
