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
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

// A constant pattern, compiled by every test of this module.
#[allow(clippy::expect_used)]
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
    let rd = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .len();
    // Where the lines to read start; everything after it is streamed line by line, so memory
    // is the kept rows plus one line, whatever the file's size.
    let offset = match (probe.tail, cutoff) {
        (Some(n), _) => tail_start(&mut file, len, n).map_err(rd)?,
        (None, Some(cutoff)) => since_start(&mut file, len, cutoff).map_err(rd)?,
        (None, None) => 0,
    };
    // Line numbers stay absolute: count the newlines before the window.
    let first_line_no = count_newlines(&mut file, offset).map_err(rd)? + 1;
    file.seek(SeekFrom::Start(offset)).map_err(rd)?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);

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
    // Each capture's column, resolved once.
    let capture_cols: Vec<(usize, &str)> = capture_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let col = columns.iter().position(|c| c == name).unwrap_or(3 + i);
            (col, name.as_str())
        })
        .collect();
    let width = columns.len();
    let mut table = Table::new(columns);
    // The timestamp a line without one inherits (for `since`).
    let mut last_ts: Option<DateTime<Utc>> = None;
    let mut raw: Vec<u8> = Vec::new();
    let mut line_no = first_line_no;
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).map_err(rd)? == 0 {
            break;
        }
        let this_no = line_no;
        line_no += 1;
        let bytes = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes);
        let mut ts = None;
        if let Some(cutoff) = cutoff {
            ts = Some(leading_timestamp(&line));
            if let Some(Some(Value::Timestamp(t))) = ts {
                last_ts = Some(t);
            }
            if last_ts.is_none_or(|t| t < cutoff) {
                continue;
            }
        }
        let mut row = Vec::with_capacity(width);
        match &re {
            Some(r) => {
                let Some(caps) = r.captures(&line) else {
                    continue;
                };
                row.resize(width, Value::Null);
                for &(col, name) in &capture_cols {
                    if let (Some(cell), Some(m)) = (row.get_mut(col), caps.name(name)) {
                        *cell = Value::Text(m.as_str().to_string());
                    }
                }
            }
            None => row.resize(width, Value::Null),
        }
        row[0] = Value::Int(i64::try_from(this_no).unwrap_or(i64::MAX));
        row[2] = ts
            .unwrap_or_else(|| leading_timestamp(&line))
            .unwrap_or(Value::Null);
        row[1] = Value::Text(line.into_owned());
        table.rows.push(row);
    }
    Ok(table)
}

const BLOCK: u64 = 64 * 1024;
/// Bytes of a line's head that can hold its timestamp.
const HEAD: u64 = 64;

/// The offset of the first line to read for `since`: blocks are read from the end until one
/// holds a line stamped before `cutoff`; the window starts at that block's first whole line
/// (lines before it cannot be in the window, logs being in time order). Reads only the part
/// of the file from the window's start on, one block at a time: memory is one block.
fn since_start(file: &mut std::fs::File, len: u64, cutoff: DateTime<Utc>) -> std::io::Result<u64> {
    let mut pos = len;
    let mut block = Vec::with_capacity((BLOCK + HEAD) as usize);
    let mut start = 0u64;
    while pos > 0 {
        let read = BLOCK.min(pos);
        pos -= read;
        // The block plus a line head's worth of the next one, so a head cut by the block's
        // end is still whole.
        let extra = HEAD.min(len - pos - read);
        block.clear();
        file.seek(SeekFrom::Start(pos))?;
        file.by_ref().take(read + extra).read_to_end(&mut block)?;
        let own = (read as usize).min(block.len());
        // Lines that start inside the block (the first one may be cut: skip it unless the
        // block begins the file).
        let mut i = if pos == 0 {
            0
        } else {
            match block[..own].iter().position(|&b| b == b'\n') {
                Some(j) => j + 1,
                None => continue,
            }
        };
        start = pos + i as u64;
        let mut older = false;
        while i < own {
            let next = block[i..].iter().position(|&b| b == b'\n').map(|j| i + j);
            let head_end = next.unwrap_or(block.len()).min(i + HEAD as usize);
            let head = String::from_utf8_lossy(&block[i..head_end]);
            if let Some(Value::Timestamp(t)) = leading_timestamp(&head) {
                older = t < cutoff;
                break;
            }
            match next {
                Some(n) => i = n + 1,
                // The line runs past what was read: no other line starts in this block.
                None => break,
            }
        }
        if older {
            break;
        }
    }
    Ok(start)
}

/// The number of `\n` in the first `upto` bytes of `file`.
fn count_newlines(file: &mut std::fs::File, upto: u64) -> std::io::Result<u64> {
    let mut before = 0u64;
    if upto > 0 {
        file.seek(SeekFrom::Start(0))?;
        let mut reader = file.take(upto);
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

/// The offset of the last `n` lines, found by counting newlines from the end one block at a
/// time (memory is one block, whatever `n`).
fn tail_start(file: &mut std::fs::File, len: u64, n: u64) -> std::io::Result<u64> {
    if n == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut block = vec![0u8; BLOCK as usize];
    let mut newlines = 0u64;
    while pos > 0 {
        let read = BLOCK.min(pos);
        pos -= read;
        let buf = &mut block[..read as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(buf)?;
        // A trailing newline ends the last line; it does not start a new one.
        let scan_end = if pos + read == len && buf.last() == Some(&b'\n') {
            buf.len() - 1
        } else {
            buf.len()
        };
        for i in (0..scan_end).rev() {
            if buf[i] == b'\n' {
                newlines += 1;
                if newlines == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
    }
    Ok(0)
}

/// A `file` source: the file must exist when the run starts.
#[derive(Debug)]
pub struct FileDriver {
    path: std::path::PathBuf,
}

impl FileDriver {
    pub fn open(f: &invar_core::FileSource) -> Result<FileDriver, String> {
        if !f.path.exists() {
            return Err(format!("file {} does not exist", f.path.display()));
        }
        Ok(FileDriver {
            path: f.path.clone(),
        })
    }
}

impl crate::SourceDriver for FileDriver {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::Local
    }

    fn size_bytes(&self) -> futures::future::BoxFuture<'_, Option<u64>> {
        let size = std::fs::metadata(&self.path).ok().map(|m| m.len());
        Box::pin(async move { size })
    }

    fn read(
        self: std::sync::Arc<Self>,
        probe: &invar_core::Probe,
        sink: crate::sink::RowSink,
        cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        match probe {
            invar_core::Probe::Lines(lp) => read_file(self.path.clone(), lp, sink, cx),
            other => crate::not_mine(other, "a file"),
        }
    }
}

/// `lines` probes that name a path (resolved against the config's directory), not a source.
#[derive(Debug)]
pub struct PathDriver;

impl crate::SourceDriver for PathDriver {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::Local
    }

    fn read(
        self: std::sync::Arc<Self>,
        probe: &invar_core::Probe,
        sink: crate::sink::RowSink,
        cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        match probe {
            invar_core::Probe::Lines(lp) => match &lp.file {
                invar_core::FileRef::Path(p) => read_file(cx.base_dir.join(p), lp, sink, cx),
                invar_core::FileRef::Source(s) => crate::fail(format!("unknown source `{s}`")),
            },
            other => crate::not_mine(other, "a file"),
        }
    }
}

/// Reads a file off the runtime's threads.
fn read_file(
    path: std::path::PathBuf,
    lp: &LinesProbe,
    sink: crate::sink::RowSink,
    cx: &crate::ReadCx,
) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
    let (lp, now) = (lp.clone(), cx.now);
    Box::pin(async move {
        let t = tokio::task::spawn_blocking(move || read_lines_at(&path, &lp, now))
            .await
            .map_err(|e| e.to_string())??;
        Ok(sink.fill(t))
    })
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

    /// The window found by reading backwards equals a plain forward filter, across block
    /// boundaries, lines longer than a block, unstamped runs and CRLF endings.
    #[test]
    fn since_matches_a_forward_filter_on_awkward_files() {
        let now = parse_timestamp("2026-05-11 12:00:00").unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut expected = Vec::new();
        let mut no = 0u64;
        let mut stamp_of_last: Option<i64> = None;
        for i in 0..30_000i64 {
            no += 1;
            // Seconds before `now`, falling over the file: from 2 h old to fresh.
            let age = 7200 - i * 7200 / 30_000;
            let line = match i % 97 {
                0 => format!("  continuation {i} {}", "x".repeat(70_000)),
                1 => format!("  at frame {i}\r"),
                _ => {
                    let t = now - chrono::Duration::seconds(age);
                    format!("{} event {i}", t.format("%Y-%m-%d %H:%M:%S"))
                }
            };
            if i % 97 > 1 {
                stamp_of_last = Some(age);
            }
            writeln!(f, "{line}").unwrap();
            if stamp_of_last.is_some_and(|a| a <= 1800) {
                expected.push(no);
            }
        }
        f.flush().unwrap();
        let mut p = probe(None, None);
        p.since = Some(std::time::Duration::from_secs(1800));
        let t = read_lines_at(f.path(), &p, now).unwrap();
        let got: Vec<u64> = t
            .rows
            .iter()
            .map(|r| match r[0] {
                Value::Int(n) => n as u64,
                _ => 0,
            })
            .collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
        assert!(
            t.rows
                .iter()
                .all(|r| !matches!(&r[1], Value::Text(s) if s.ends_with('\r')))
        );
    }
}
