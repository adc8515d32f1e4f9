//! The `command` probe: argv (no shell), timeout, cwd, env; stdout parsed as lines, JSON or text.
//! The exit code is a column of every row, so conditions can always see it.

use invar_core::{CommandParse, CommandProbe, Table, Value};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// Runs the probe's command in a process group of its own, so a timeout or a cut kills
/// everything it started (grandchildren included), not just the direct child. stdout and
/// stderr are each kept up to `max_output` bytes; more cuts the probe with an `error`.
pub async fn run_command(p: &CommandProbe, default_cwd: &Path) -> Result<Table, String> {
    let Some((prog, args)) = p.run.split_first() else {
        return Err("command: `run` is empty".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .current_dir(p.cwd.as_deref().unwrap_or(default_cwd))
        .envs(&p.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{prog}`: {e}"))?;
    // With `process_group(0)` the group's id is the child's pid.
    let group = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let work = async {
        let (stdout, stderr) = tokio::try_join!(
            read_capped(stdout, p.max_output, prog, "stdout"),
            read_capped(stderr, p.max_output, prog, "stderr"),
        )?;
        let status = child
            .wait()
            .await
            .map_err(|e| format!("command `{prog}` failed: {e}"))?;
        Ok::<_, String>((status, stdout, stderr))
    };
    let out = match tokio::time::timeout(p.timeout, work).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            kill_group(group);
            return Err(e);
        }
        Err(_) => {
            kill_group(group);
            return Err(format!(
                "command `{prog}` timed out after {}",
                invar_core::units::format_duration(p.timeout)
            ));
        }
    };
    let out = Output {
        status: out.0,
        stdout: out.1,
        stderr: out.2,
    };
    let code = out
        .status
        .code()
        .map(|c| Value::Int(c as i64))
        .unwrap_or(Value::Null);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match p.parse {
        CommandParse::Text => Ok(Table {
            columns: vec!["stdout".into(), "stderr".into(), "exit_code".into()],
            rows: vec![vec![Value::Text(stdout), Value::Text(stderr), code]],
        }),
        CommandParse::Lines => {
            let mut rows = Vec::new();
            for l in stdout.lines() {
                if rows.len() as u64 >= p.max_rows {
                    return Err(too_many_rows(prog, p.max_rows));
                }
                rows.push(vec![Value::Text(l.to_string()), code.clone()]);
            }
            Ok(Table {
                columns: vec!["line".into(), "exit_code".into()],
                rows,
            })
        }
        CommandParse::Json => {
            let t = parse_json_rows(&stdout, code).map_err(|e| format!("command `{prog}`: {e}"))?;
            if t.rows.len() as u64 > p.max_rows {
                return Err(too_many_rows(prog, p.max_rows));
            }
            Ok(t)
        }
    }
}

struct Output {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn too_many_rows(prog: &str, max: u64) -> String {
    format!("command `{prog}`: stdout gives more than {max} rows (the probe's `max_rows`); cut")
}

/// All of `pipe` up to `max` bytes; more is an error naming the cap and its setting.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    max: u64,
    prog: &str,
    what: &str,
) -> Result<Vec<u8>, String> {
    let Some(pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    // One byte more than allowed tells "exactly max" from "more".
    let n = pipe
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("command `{prog}`: cannot read its {what}: {e}"))?;
    if n as u64 > max {
        return Err(format!(
            "command `{prog}`: {what} is larger than {} (the probe's `max_output`); cut",
            format_size(max)
        ));
    }
    Ok(buf)
}

fn format_size(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{}MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// SIGKILL to the command's whole process group (a no-op when it is gone already).
fn kill_group(group: Option<u32>) {
    let Some(pid) = group.and_then(|g| i32::try_from(g).ok()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

/// A JSON array of objects, one object, or JSON lines → rows (columns in first-seen order).
fn parse_json_rows(stdout: &str, code: Value) -> Result<Table, String> {
    let trimmed = stdout.trim();
    let items: Vec<serde_json::Value> = if trimmed.is_empty() {
        Vec::new()
    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed) {
        match v {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        }
    } else {
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("stdout is not JSON: {e}")))
            .collect::<Result<_, _>>()?
    };
    let mut columns: Vec<String> = Vec::new();
    for it in &items {
        match it {
            serde_json::Value::Object(o) => {
                for k in o.keys() {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            _ => {
                if !columns.iter().any(|c| c == "value") {
                    columns.push("value".into());
                }
            }
        }
    }
    if !columns.iter().any(|c| c == "exit_code") {
        columns.push("exit_code".into());
    }
    let mut table = Table::new(columns);
    for it in &items {
        let row = table
            .columns
            .iter()
            .map(|c| match it {
                _ if c == "exit_code" && it.get("exit_code").is_none() => code.clone(),
                serde_json::Value::Object(o) => {
                    o.get(c).map(Value::from_json).unwrap_or(Value::Null)
                }
                other if c == "value" => Value::from_json(other),
                _ => Value::Null,
            })
            .collect();
        table.rows.push(row);
    }
    Ok(table)
}

/// `command` probes: run in the config's directory unless they say otherwise.
#[derive(Debug)]
pub struct CommandDriver;

impl crate::SourceDriver for CommandDriver {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::Local
    }

    fn read(
        self: std::sync::Arc<Self>,
        probe: &invar_core::Probe,
        sink: crate::sink::RowSink,
        cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        let invar_core::Probe::Command(cp) = probe else {
            return crate::fail(format!("{} is not a command", probe.describe()));
        };
        let (cp, dir) = (cp.clone(), cx.base_dir.clone());
        Box::pin(async move { Ok(sink.fill(run_command(&cp, &dir).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn cmd(run: &[&str], parse: CommandParse, timeout: Duration) -> CommandProbe {
        CommandProbe {
            run: run.iter().map(|s| s.to_string()).collect(),
            timeout,
            cwd: None,
            env: BTreeMap::from([("INVAR_T".to_string(), "hello".to_string())]),
            parse,
            max_output: CommandProbe::DEFAULT_MAX_OUTPUT,
            max_rows: CommandProbe::DEFAULT_MAX_ROWS,
        }
    }

    #[tokio::test]
    async fn parses_lines_json_and_text() {
        let t = run_command(
            &cmd(
                &["sh", "-c", "echo a; echo $INVAR_T"],
                CommandParse::Lines,
                Duration::from_secs(5),
            ),
            Path::new("."),
        )
        .await
        .unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1][0], Value::Text("hello".into()));
        assert_eq!(t.rows[1][1], Value::Int(0));

        let t = run_command(
            &cmd(
                &["sh", "-c", r#"echo '[{"n":1,"s":"x"},{"n":2}]'; exit 3"#],
                CommandParse::Json,
                Duration::from_secs(5),
            ),
            Path::new("."),
        )
        .await
        .unwrap();
        assert_eq!(t.columns, vec!["n", "s", "exit_code"]);
        assert_eq!(t.rows[1], vec![Value::Int(2), Value::Null, Value::Int(3)]);

        let t = run_command(
            &cmd(
                &["sh", "-c", "echo out; echo err >&2; exit 4"],
                CommandParse::Text,
                Duration::from_secs(5),
            ),
            Path::new("."),
        )
        .await
        .unwrap();
        assert_eq!(
            t.rows[0],
            vec![
                Value::Text("out\n".into()),
                Value::Text("err\n".into()),
                Value::Int(4)
            ]
        );
    }

    #[tokio::test]
    async fn times_out_and_reports_missing_programs() {
        let e = run_command(
            &cmd(
                &["sleep", "5"],
                CommandParse::Text,
                Duration::from_millis(200),
            ),
            Path::new("."),
        )
        .await
        .unwrap_err();
        assert!(e.contains("timed out after 200ms"), "{e}");
        let e = run_command(
            &cmd(
                &["/nonexistent/prog"],
                CommandParse::Text,
                Duration::from_secs(1),
            ),
            Path::new("."),
        )
        .await
        .unwrap_err();
        assert!(e.contains("cannot start"), "{e}");
    }

    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// `yes` never ends on its own: it is cut at `max_output` with a reason naming the cap
    /// and its setting, well before the timeout and with bounded memory (was: 6 GB in 15 s).
    #[tokio::test]
    async fn endless_output_is_cut_at_the_cap() {
        let before = peak_rss_kib();
        for run in [&["yes"][..], &["sh", "-c", "yes >&2"]] {
            let mut p = cmd(run, CommandParse::Lines, Duration::from_secs(60));
            p.max_output = 4 * 1024 * 1024;
            let started = std::time::Instant::now();
            let e = run_command(&p, Path::new(".")).await.unwrap_err();
            assert!(
                e.contains("larger than 4MiB") && e.contains("max_output"),
                "{e}"
            );
            assert!(started.elapsed() < Duration::from_secs(20), "{e}");
        }
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 100 * 1024, "peak RSS grew by {grown} KiB");
        // Rows: 10 lines under a cap of 5.
        let mut p = cmd(&["seq", "10"], CommandParse::Lines, Duration::from_secs(5));
        p.max_rows = 5;
        let e = run_command(&p, Path::new(".")).await.unwrap_err();
        assert!(
            e.contains("more than 5 rows") && e.contains("max_rows"),
            "{e}"
        );
        p.max_rows = 10;
        assert_eq!(
            run_command(&p, Path::new(".")).await.unwrap().rows.len(),
            10
        );
    }

    /// A timeout kills the command's whole process group: a grandchild started in the
    /// background is gone too, not left sleeping.
    #[tokio::test]
    async fn a_timeout_kills_the_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
        let p = cmd(
            &["sh", "-c", &script],
            CommandParse::Text,
            Duration::from_millis(500),
        );
        let e = run_command(&p, Path::new(".")).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // A zombie waiting for its reaper is gone as a process.
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !gone(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(pid), "grandchild {pid} still runs after the timeout");
    }
}
