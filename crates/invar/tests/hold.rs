//! `invar run --hold`: the post-deploy stability hold, through the real binary and the real
//! clock (about 12 s in all; the tests run in parallel). A green suite is held after the whole
//! window; a suite that turns red inside the window restarts it; the timeout ends a hold that
//! never settles, with the last red run's report and exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::path::Path;
use std::time::{Duration, Instant};

fn invar() -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.env_remove("INVAR_CONFIG").env("NO_COLOR", "1");
    c
}

/// One invariant: the log has no `FATAL` line.
fn config(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("app.log"), "boot ok\n").unwrap();
    let cfg = dir.join("invar.yaml");
    std::fs::write(
        &cfg,
        r#"sources:
  log: { type: file, path: app.log }
invariants:
  - id: LOG-01
    title: The application log has no FATAL line
    severity: critical
    runbook: Read the line; roll back the deploy if it is new.
    probe: { lines: { source: log, match: 'FATAL (?P<what>.*)' } }
"#,
    )
    .unwrap();
    cfg
}

struct Held {
    code: i32,
    elapsed: Duration,
    stderr: String,
    report: J,
}

fn hold(cfg: &Path, args: &[&str]) -> Held {
    let t = Instant::now();
    let out = invar()
        .args(["run", "--format", "json", "--config"])
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    let elapsed = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: J = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Held {
        code: out.status.code().unwrap(),
        elapsed,
        stderr,
        report,
    }
}

#[test]
fn a_green_suite_is_held_after_the_whole_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let h = hold(&cfg, &["--hold", "6s", "--interval", "1s"]);
    assert_eq!(h.code, 0, "{}", h.stderr);
    assert!(h.elapsed >= Duration::from_secs(6), "{:?}", h.elapsed);
    assert!(h.elapsed < Duration::from_secs(10), "{:?}", h.elapsed);
    assert!(h.stderr.contains("green for 2s of 6s"), "{}", h.stderr);
    assert!(
        h.stderr.contains("held: green for 6s of 6s"),
        "{}",
        h.stderr
    );
    assert!(!h.stderr.contains("red"), "{}", h.stderr);
    assert_eq!(h.report["status"], "pass");
    assert_eq!(h.report["exit_code"], 0);
    eprintln!("green hold of 6s took {:?}", h.elapsed);
}

#[test]
fn a_red_run_inside_the_window_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let log = dir.path().join("app.log");
    // A bad line appears after ~2 s and is gone after ~4 s.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2000));
        std::fs::write(&log, "boot ok\nFATAL out of memory\n").unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        std::fs::write(&log, "boot ok\nrecovered\n").unwrap();
    });
    let h = hold(&cfg, &["--hold", "6s", "--interval", "1s"]);
    writer.join().unwrap();
    assert_eq!(h.code, 0, "{}", h.stderr);
    assert!(
        h.stderr.contains("red (exit 1: LOG-01) — window restarted"),
        "{}",
        h.stderr
    );
    // Green again from ~4-5 s, then 6 s more: well past a plain 6 s hold.
    assert!(h.elapsed >= Duration::from_secs(9), "{:?}", h.elapsed);
    assert!(h.elapsed < Duration::from_secs(15), "{:?}", h.elapsed);
    assert_eq!(h.report["status"], "pass");
    eprintln!("hold of 6s with a red run at ~2-4s took {:?}", h.elapsed);
}

#[test]
fn the_timeout_ends_a_hold_with_the_last_red_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::write(dir.path().join("app.log"), "FATAL disk full\n").unwrap();
    let h = hold(
        &cfg,
        &[
            "--hold",
            "2s",
            "--interval",
            "500ms",
            "--hold-timeout",
            "3s",
        ],
    );
    assert_eq!(h.code, 1, "{}", h.stderr);
    assert!(h.elapsed >= Duration::from_secs(3), "{:?}", h.elapsed);
    assert!(h.elapsed < Duration::from_secs(6), "{:?}", h.elapsed);
    assert!(h.stderr.contains("timed out after 3s"), "{}", h.stderr);
    assert!(h.stderr.contains("waiting for a green run"), "{}", h.stderr);
    assert_eq!(h.report["status"], "fail");
    assert_eq!(h.report["results"][0]["violations"][0]["what"], "disk full");
}

#[test]
fn hold_arguments_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    for args in [
        &["--hold", "5s", "--hold-timeout", "2s"][..],
        &["--interval", "5s"][..],
        &["--hold", "0s"][..],
        &["--hold", "soon"][..],
    ] {
        let out = invar()
            .args(["run", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
