//! The `command` probe: argv (no shell), timeout, cwd, env; stdout parsed as lines, JSON or text.
//! The exit code is a column of every row, so conditions can always see it.

use invar_core::{CommandParse, CommandProbe, Table, Value};
use std::path::Path;
use std::process::Stdio;

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
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{prog}`: {e}"))?;
    let out = match tokio::time::timeout(p.timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("command `{prog}` failed: {e}"))?,
        Err(_) => {
            return Err(format!(
                "command `{prog}` timed out after {}",
                invar_core::units::format_duration(p.timeout)
            ));
        }
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
        CommandParse::Lines => Ok(Table {
            columns: vec!["line".into(), "exit_code".into()],
            rows: stdout
                .lines()
                .map(|l| vec![Value::Text(l.to_string()), code.clone()])
                .collect(),
        }),
        CommandParse::Json => {
            parse_json_rows(&stdout, code).map_err(|e| format!("command `{prog}`: {e}"))
        }
    }
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
}
