//! Checks that learn from history, through the `invar` binary and a SQLite store: a
//! `history:` invariant skips on thin history (measuring all the same), then compares each
//! run with its own past; `anomaly` fails on a spike; `--dry-run` reads the history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value as J;
use std::path::Path;
use std::process::Command;

fn run(cfg: &Path, extra: &[&str]) -> (i32, J) {
    let out = Command::cargo_bin("invar")
        .unwrap()
        .env_remove("INVAR_CONFIG")
        .args(["run", "--format", "json", "--config"])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    let report: J = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn result<'a>(r: &'a J, id: &str) -> &'a J {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap()
}

#[test]
fn a_history_invariant_learns_its_normal_and_flags_a_drop_and_a_spike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("app.log");
    let lines = |n: usize| {
        std::fs::write(&log, "2026-12-04 10:00:00 order placed\n".repeat(n)).unwrap();
    };
    let cfg = d.join("invar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store: sqlite://h.db\ninvariants:\n\
             \x20 - id: ORD-RATE\n    title: orders keep coming\n    history: {{ window: 30d, min_runs: 3 }}\n\
             \x20   probe: {{ lines: {{ path: {}, match: \"order placed\" }} }}\n\
             \x20   fail_when: count < 0.5 * hist.count.median\n\
             \x20 - id: ORD-SPIKE\n    title: no order storm\n    history: {{ window: 30d, min_runs: 3 }}\n\
             \x20   probe: {{ lines: {{ path: {}, match: \"order placed\" }} }}\n\
             \x20   anomaly: {{ measure: count, threshold: 3.5, direction: up }}\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    // Thin history: three skips that measure, so the history grows.
    for (k, n) in [(0, 10), (1, 12), (2, 11)] {
        lines(n);
        let (code, r) = run(&cfg, &[]);
        assert_eq!(code, 0, "{r}");
        let res = result(&r, "ORD-RATE");
        assert_eq!(res["outcome"], "skip", "{res}");
        assert_eq!(res["reason"], format!("thin history: {k} of 3 runs"));
        assert_eq!(res["measured"]["count"], n);
    }
    // Normal: passes on both.
    lines(11);
    let (code, r) = run(&cfg, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(result(&r, "ORD-RATE")["outcome"], "pass", "{r}");
    assert_eq!(result(&r, "ORD-SPIKE")["outcome"], "pass", "{r}");
    // A drop below half the median fails the rate; a dry run sees the same history.
    lines(3);
    let (code, dry) = run(&cfg, &["--dry-run"]);
    assert_eq!(code, 1, "{dry}");
    assert_eq!(result(&dry, "ORD-RATE")["outcome"], "fail", "{dry}");
    let (code, r) = run(&cfg, &[]);
    assert_eq!(code, 1, "{r}");
    let rate = result(&r, "ORD-RATE");
    assert_eq!(rate["outcome"], "fail", "{rate}");
    assert!(
        rate["reason"]
            .as_str()
            .unwrap()
            .contains("hist.count.median"),
        "{rate}"
    );
    // A spike far above the median is an anomaly; the measured block explains it.
    lines(60);
    let (code, r) = run(&cfg, &[]);
    assert_eq!(code, 1, "{r}");
    let spike = result(&r, "ORD-SPIKE");
    assert_eq!(spike["outcome"], "fail", "{spike}");
    let m = &spike["measured"];
    assert_eq!(m["anomaly_x"], 60.0, "{spike}");
    assert_eq!(m["anomaly_median"], 11.0, "{spike}");
    assert!(m["anomaly_score"].as_f64().unwrap() > 3.5, "{spike}");
    // Three skips, a pass and a fail were recorded (the dry run was not).
    assert_eq!(m["anomaly_window"], "30d, 5 runs", "{spike}");
    assert_eq!(result(&r, "ORD-RATE")["outcome"], "pass");
}

#[test]
fn a_check_that_examines_nothing_for_its_vacuous_after_warns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("app.log");
    std::fs::write(&log, "").unwrap();
    let cfg = d.join("invar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store: sqlite://h.db\ninvariants:\n\
             \x20 - id: ERR-LINES\n    title: every error line names its job\n    vacuous_after: 1s\n\
             \x20   probe: {{ lines: {{ path: {}, match: ERROR }} }}\n\
             \x20   every_row: r.text.contains('job=')\n",
            log.display()
        ),
    )
    .unwrap();
    let (code, r) = run(&cfg, &[]);
    assert_eq!(code, 0, "{r}");
    let first = result(&r, "ERR-LINES");
    assert_eq!(
        (first["outcome"].as_str(), first["vacuous"].as_bool()),
        (Some("pass"), Some(true)),
        "{first}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Vacuous in every run for over a second: a warn saying since when.
    let (code, r) = run(&cfg, &[]);
    assert_eq!(code, 0, "a warn does not fail the run: {r}");
    let res = result(&r, "ERR-LINES");
    assert_eq!(res["outcome"], "warn", "{res}");
    let reason = res["reason"].as_str().unwrap();
    assert!(reason.starts_with("examined nothing since "), "{reason}");
    assert_eq!(res["vacuous"], true);
    // A run that examines a line ends the streak.
    std::fs::write(&log, "2026-12-04 10:00:00 ERROR job=7 failed\n").unwrap();
    let (_, r) = run(&cfg, &[]);
    assert_eq!(result(&r, "ERR-LINES")["outcome"], "pass", "{r}");
    std::fs::write(&log, "").unwrap();
    let (_, r) = run(&cfg, &[]);
    let res = result(&r, "ERR-LINES");
    assert_eq!(
        (res["outcome"].as_str(), res["vacuous"].as_bool()),
        (Some("pass"), Some(true)),
        "{res}"
    );
}
