//! E-02 through the CLI against the real Postgres: `transitions` remembers each key's state in
//! the history store across runs, and every `invar run` is a new process (so the memory
//! survives a restart by construction).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::path::Path;

fn postgres_up() -> bool {
    invar_testkit::server_up("PostgreSQL", "127.0.0.1:5432", "scripts/ensure-services.sh")
}

fn psql(db: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `invar run` (a new process): exit code and the E-02 result.
fn run(dir: &Path, extra: &[&str]) -> (i32, J) {
    let out = Command::cargo_bin("invar")
        .unwrap()
        .current_dir(dir)
        .env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1")
        .args(["run", "--format", "json", "--output", "report.json"])
        .args(extra)
        .output()
        .unwrap();
    let report: J =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let result = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "E-02")
        .cloned()
        .unwrap();
    (out.status.code().unwrap(), result)
}

#[test]
fn e02_terminal_stays_terminal_across_process_restarts() {
    if !postgres_up() {
        return;
    }
    let db = format!("invar_e02_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE executions (id text PRIMARY KEY, status text NOT NULL);
         INSERT INTO executions VALUES ('ex-1', 'success'), ('ex-2', 'queued'), ('ex-3', 'running');",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("invar.yaml"),
        format!(
            "sources:\n  app: {{ type: postgres, url: \"postgres://postgres@127.0.0.1:5432/{db}\" }}\n\
             invariants:\n  - id: E-02\n    title: Terminal executions stay terminal\n    severity: critical\n\
             \x20   transitions:\n      probe: {{ source: app, sql: \"SELECT id, status FROM executions\" }}\n\
             \x20     key: id\n      state: status\n      allowed:\n        queued: [running, cancelled]\n\
             \x20       running: [success, failed, cancelled]\n      remember: 24h\n"
        ),
    )
    .unwrap();

    // A dry run before anything is remembered: a baseline, and nothing is stored.
    let (code, r) = run(d, &["--dry-run"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["measured"]["baseline"], true, "{r}");
    assert!(!d.join(".invar/history.db").exists());

    // Run 1: the baseline pass.
    let (code, r) = run(d, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["outcome"], "pass");
    assert_eq!(r["measured"]["baseline"], true, "{r}");
    assert_eq!(r["measured"]["keys"], 3);

    // Allowed changes (queued → running, running → success): still a pass, in a new process.
    psql(
        &db,
        "UPDATE executions SET status = 'running' WHERE id = 'ex-2'",
    );
    psql(
        &db,
        "UPDATE executions SET status = 'success' WHERE id = 'ex-3'",
    );
    let (code, r) = run(d, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["outcome"], "pass");
    assert!(r["measured"].get("baseline").is_none(), "{r}");
    assert_eq!(r["measured"]["allowed_changes"], 2, "{r}");

    // A terminal → running reversal fails, naming the key, `from` and `to`.
    psql(
        &db,
        "UPDATE executions SET status = 'running' WHERE id = 'ex-1'",
    );
    // The dry run sees it too (it reads the store) but stores nothing …
    let (code, r) = run(d, &["--dry-run"]);
    assert_eq!(code, 1, "{r}");
    let (code, r) = run(d, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["outcome"], "fail");
    assert_eq!(
        r["violations"],
        serde_json::json!([{"key": "ex-1", "from": "success", "to": "running"}])
    );

    // The source down: error, and the remembered states stay as they were.
    std::fs::write(
        d.join("invar.yaml"),
        std::fs::read_to_string(d.join("invar.yaml"))
            .unwrap()
            .replace("127.0.0.1:5432", "127.0.0.1:1"),
    )
    .unwrap();
    let (code, r) = run(d, &[]);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["outcome"], "error");
    std::fs::write(
        d.join("invar.yaml"),
        std::fs::read_to_string(d.join("invar.yaml"))
            .unwrap()
            .replace("127.0.0.1:1", "127.0.0.1:5432"),
    )
    .unwrap();

    // The reversal was remembered (running now), so running → success is allowed again …
    psql(
        &db,
        "UPDATE executions SET status = 'success' WHERE id = 'ex-1'",
    );
    let (code, r) = run(d, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["measured"]["allowed_changes"], 1, "{r}");
    // … and success → failed is not.
    psql(
        &db,
        "UPDATE executions SET status = 'failed' WHERE id = 'ex-1'",
    );
    let (code, r) = run(d, &[]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        r["violations"],
        serde_json::json!([{"key": "ex-1", "from": "success", "to": "failed"}])
    );

    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}
