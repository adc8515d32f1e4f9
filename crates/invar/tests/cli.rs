//! The command line as users and scripts see it: exit codes, report formats, and what never
//! leaks. Runs the real binary on SQLite files and a closed port (no server needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::path::{Path, PathBuf};

fn invar() -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.env_remove("INVAR_CONFIG").env("NO_COLOR", "1");
    c
}

/// A demo directory (SQLite shop with seeded defects) in a fresh tempdir.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = invar()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "demo exits like a failing run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("invar.yaml");
    (dir, cfg)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_json(cfg: &Path, extra: &[&str]) -> (i32, J, String) {
    let out = invar()
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: J =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    (
        out.status.code().unwrap(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn result<'a>(report: &'a J, id: &str) -> &'a J {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result {id}"))
}

#[test]
fn demo_prints_failing_and_passing_invariants_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = invar()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("FAIL") && stdout.contains("PASS") && stdout.contains("SKIP"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SHOP-01") && stdout.contains(r#"{"missing":{"customer_id":999}}"#),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour when piped");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Try next"));
    // A second demo in the same place is fine; a foreign invar.yaml is never overwritten.
    invar()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .assert()
        .code(1);
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "invar.yaml", "invariants: []\n");
    invar()
        .arg("demo")
        .arg("--dir")
        .arg(other.path())
        .assert()
        .code(2);
    assert_eq!(
        std::fs::read_to_string(other.path().join("invar.yaml")).unwrap(),
        "invariants: []\n"
    );
}

#[test]
fn json_report_has_every_contract_field() {
    let (_d, cfg) = demo();
    let (code, r, _) = run_json(&cfg, &[]);
    assert_eq!(code, 1);
    for k in [
        "run_id",
        "suite",
        "trigger",
        "started_at",
        "duration_ms",
        "status",
        "exit_code",
        "counts",
        "automation_error",
        "assessment_failures",
        "lock_skipped",
        "skipped_budget",
        "sources_unavailable",
        "results",
    ] {
        assert!(r.get(k).is_some(), "missing top-level `{k}`");
    }
    assert_eq!(r["suite"], "all");
    assert_eq!(r["trigger"], "cli");
    assert_eq!(r["status"], "fail");
    assert_eq!(r["exit_code"], 1);
    assert_eq!(r["automation_error"], false);
    assert_eq!(
        r["counts"],
        serde_json::json!({"pass": 5, "warn": 1, "fail": 5, "skip": 1, "error": 0})
    );
    assert_eq!(r["assessment_failures"], 5);
    assert!(r["started_at"].as_str().unwrap().ends_with('Z'));
    for res in r["results"].as_array().unwrap() {
        for k in [
            "id",
            "title",
            "severity",
            "outcome",
            "reason",
            "examined",
            "vacuous",
            "duration_ms",
            "measured",
            "violations_total",
            "violations",
            "runbook",
        ] {
            assert!(res.get(k).is_some(), "result {} misses `{k}`", res["id"]);
        }
    }
    let s05 = result(&r, "SHOP-05");
    assert_eq!(s05["outcome"], "fail");
    assert_eq!(
        s05["violations_total"], 1,
        "the order paid a minute ago is within the grace"
    );
    assert_eq!(s05["measured"]["within_grace"], 1);
    assert_eq!(result(&r, "SHOP-01")["measured"]["pushed_down"], true);
    assert_eq!(result(&r, "SHOP-11")["outcome"], "skip");
    assert_eq!(result(&r, "SHOP-04")["outcome"], "warn");
}

#[test]
fn suites_only_and_fail_on_decide_the_exit_code() {
    let (_d, cfg) = demo();
    let (code, r, _) = run_json(&cfg, &["--suite", "gate"]);
    assert_eq!(code, 1);
    assert_eq!(r["suite"], "gate");
    let ids: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["SHOP-01", "SHOP-02", "SHOP-05", "SHOP-07", "SHOP-08"]);
    let (code, r, _) = run_json(&cfg, &["--only", "SHOP-06,SHOP-07"]);
    assert_eq!((code, r["status"].as_str().unwrap()), (0, "pass"));
    // A warning alone passes unless the suite says `fail_on: warn`.
    let (code, _, _) = run_json(&cfg, &["--only", "SHOP-04"]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "weekly: { select: \"'weekly' in tags\"",
        "strict: { select: \"id == 'SHOP-04'\", fail_on: warn }\n  lenient: { select: \"true\", fail_on: never }\n  weekly: { select: \"'weekly' in tags\"",
    );
    std::fs::write(&cfg, text).unwrap();
    assert_eq!(run_json(&cfg, &["--suite", "strict"]).0, 1);
    assert_eq!(run_json(&cfg, &["--suite", "lenient"]).0, 0);
}

#[test]
fn command_line_and_config_mistakes_exit_3() {
    let (_d, cfg) = demo();
    let out = invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--suite", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown suite `nope`: expected one of `gate`, `weekly`")
    );
    let out = invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--only", "SHOP-01,NOPE-9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`NOPE-9`"));
    invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "yaml"])
        .assert()
        .code(3);
    invar().arg("frobnicate").assert().code(3);
    invar()
        .arg("run")
        .arg("--config")
        .arg("/nonexistent/invar.yaml")
        .assert()
        .code(3);
    invar().arg("--help").assert().code(0);
    // $INVAR_CONFIG is the fallback for --config.
    invar()
        .arg("validate")
        .env("INVAR_CONFIG", &cfg)
        .assert()
        .code(0);
}

#[test]
fn validate_reports_three_mistakes_with_positions_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "invar.yaml",
        "sources:\n  db: { type: sqlite, path: x.db }\ninvariants:\n  - id: A-1\n    title: one\n    severity: urgent\n    probe: { source: db, sql: SELECT 1 }\n  - id: A-2\n    title: two\n    probe: { source: nodb, sql: SELECT 1 }\n  - id: A-3\n    title: three\n    probe: { source: db, sql: SELECT 1 }\n    fail_when: rowz.n > 1\n",
    );
    let out = invar()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invar.yaml:6:15"), "severity: {err}");
    assert!(err.contains("invar.yaml:10:22"), "unknown source: {err}");
    assert!(
        err.contains("invar.yaml:14:16"),
        "unknown CEL variable: {err}"
    );
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn junit_is_valid_xml_with_one_testcase_per_invariant() {
    let (d, cfg) = demo();
    let out_file = d.path().join("report.xml");
    invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "junit", "--output"])
        .arg(&out_file)
        .assert()
        .code(1);
    let xml = std::fs::read_to_string(&out_file).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("valid XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 12);
    let failures = cases
        .iter()
        .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
        .count();
    let skipped = cases
        .iter()
        .filter(|c| c.children().any(|k| k.has_tag_name("skipped")))
        .count();
    assert_eq!((failures, skipped), (5, 1));
    let s01 = cases
        .iter()
        .find(|c| c.attribute("name") == Some("SHOP-01"))
        .unwrap();
    assert!(
        s01.descendants()
            .any(|n| n.text().is_some_and(|t| t.contains("customer_id")))
    );
}

#[test]
fn table_shows_five_violations_then_the_rest_counted_and_the_runbook() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "invar.yaml",
        "invariants:\n  - id: MIG-01\n    title: Required migrations are in the manifest\n    runbook: Add them to boot_manifest.txt.\n    subset:\n      each: { values: [a1, a2, a3, a4, a5, a6, a7, a8] }\n      in: { values: [a1] }\n",
    );
    let out = invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.matches("· {\"missing\"").count(), 5, "{s}");
    assert!(s.contains("… and 2 more"), "{s}");
    assert!(s.contains("runbook: Add them to boot_manifest.txt."), "{s}");
    let md = invar()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "markdown"])
        .output()
        .unwrap();
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("| fail | major | `MIG-01` |") && md.contains("… and 2 more"),
        "{md}"
    );
}

#[test]
fn a_closed_port_errors_its_invariants_decides_the_rest_and_never_leaks_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, demo_cfg) = demo();
    let db = demo_cfg.parent().unwrap().join("demo.db");
    let cfg = write(
        dir.path(),
        "invar.yaml",
        &format!(
            "sources:\n  app: {{ type: postgres, url: \"${{APP_URL}}\", timeout: 2s }}\n  shop: {{ type: sqlite, path: {} }}\n\
             invariants:\n  - id: PG-1\n    title: needs postgres\n    probe: {{ source: app, sql: SELECT 1 WHERE false }}\n\
               \x20\x20- id: PG-2\n    title: needs postgres too\n    subset:\n      each: {{ values: [a] }}\n      in: {{ source: app, sql: SELECT 'a' AS value, key: value }}\n\
               \x20\x20- id: LOCAL-1\n    title: sqlite still decided\n    probe: {{ source: shop, sql: \"SELECT id FROM orders WHERE total_cents < 0\" }}\n\
               \x20\x20- id: LOCAL-2\n    title: sqlite passes\n    probe: {{ source: shop, sql: \"SELECT id FROM orders WHERE id < 0\" }}\n",
            db.display()
        ),
    );
    let secret = "hunter2-Sup3rSecret";
    for format in ["json", "table", "junit", "markdown"] {
        let out = invar()
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .args(["--format", format])
            .env(
                "APP_URL",
                format!("postgres://app:{secret}@127.0.0.1:1/app"),
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{format}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(secret), "{format} leaked the password: {all}");
        assert!(
            !all.contains("Sup3r"),
            "{format} leaked part of the password"
        );
        if format == "json" {
            let r: J = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r["sources_unavailable"][0]["source"], "app");
            assert!(
                r["sources_unavailable"][0]["error"]
                    .as_str()
                    .unwrap()
                    .contains("postgres://app:***@127.0.0.1:1/app")
            );
            assert_eq!(r["automation_error"], true);
            assert_eq!(r["status"], "error");
            assert_eq!(result(&r, "PG-1")["outcome"], "error");
            assert_eq!(result(&r, "PG-2")["outcome"], "error");
            assert_eq!(result(&r, "LOCAL-1")["outcome"], "fail");
            assert_eq!(result(&r, "LOCAL-2")["outcome"], "pass");
        }
    }
}

#[test]
fn identical_probes_are_read_once_and_timeouts_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count.txt");
    let cfg = write(
        dir.path(),
        "invar.yaml",
        &format!(
            "invariants:\n\
               \x20\x20- id: C-1\n    title: one\n    probe: {{ command: {{ run: [sh, -c, \"echo x >> {c}; echo ok\"], parse: lines }} }}\n    every_row: r.line == 'ok'\n\
               \x20\x20- id: C-2\n    title: two\n    probe: {{ command: {{ run: [sh, -c, \"echo x >> {c}; echo ok\"], parse: lines }} }}\n    fail_when: count != 1.0\n\
               \x20\x20- id: C-3\n    title: slow\n    timeout: 300ms\n    probe: {{ command: {{ run: [sleep, \"5\"] }} }}\n    fail_when: \"false\"\n",
            c = counter.display()
        ),
    );
    let started = std::time::Instant::now();
    let (code, r, _) = run_json(&cfg, &[]);
    assert!(
        started.elapsed().as_secs() < 4,
        "the timeout ended the slow check"
    );
    assert_eq!(code, 2);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        1,
        "one read for two invariants"
    );
    assert_eq!(result(&r, "C-1")["outcome"], "pass");
    assert_eq!(result(&r, "C-2")["outcome"], "pass");
    assert_eq!(result(&r, "C-3")["outcome"], "error");
    assert!(
        result(&r, "C-3")["reason"]
            .as_str()
            .unwrap()
            .contains("timed out after 300ms")
    );
}

#[test]
fn cost_guard_skips_before_probing_with_the_reason() {
    let (d, demo_cfg) = demo();
    let db = demo_cfg.parent().unwrap().join("demo.db");
    let marker = d.path().join("probed.txt");
    let cfg = write(
        d.path(),
        "guard.yaml",
        &format!(
            "sources:\n  shop: {{ type: sqlite, path: {} }}\n  log: {{ type: file, path: {} }}\ninvariants:\n\
               \x20\x20- id: G-1\n    title: skipped on a big database\n    skip_if: source.size_bytes > 1KB\n    probe: {{ source: shop, sql: PRAGMA quick_check }}\n    fail_when: row.quick_check != 'ok'\n\
               \x20\x20- id: G-2\n    title: runs on a small one\n    skip_if: source.size_bytes > 5GB\n    probe: {{ source: shop, sql: PRAGMA quick_check }}\n    fail_when: row.quick_check != 'ok'\n\
               \x20\x20- id: G-3\n    title: never probed when guarded\n    skip_if: source.name == 'log'\n    probe: {{ lines: {{ source: log }} }}\n",
            db.display(),
            marker.display()
        ),
    );
    let (code, r, _) = run_json(&cfg, &[]);
    assert_eq!(code, 0);
    let g1 = result(&r, "G-1");
    assert_eq!(g1["outcome"], "skip");
    assert!(
        g1["reason"].as_str().unwrap().contains("cost guard")
            && g1["reason"].as_str().unwrap().contains("`shop`")
    );
    assert_eq!(result(&r, "G-2")["outcome"], "pass");
    // The log file does not exist: had G-3 been probed it would be an error, not a skip.
    assert_eq!(result(&r, "G-3")["outcome"], "skip");
    assert_eq!(
        r["sources_unavailable"],
        serde_json::json!([]),
        "a guarded check needs no source"
    );
}

/// `invar schedule` prints the next fire times with the zone's offset, cronie's day rule and
/// the DST rules of `invar watch`; a bad expression is exit 3 naming the field.
#[test]
fn schedule_prints_the_next_fire_times() {
    let out = invar()
        .args(["schedule", "0 0 */2 * 1", "--timezone", "UTC"])
        .args(["--from", "2026-01-01T00:00:00Z", "--count", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2026-01-05T00:00:00+00:00\n2026-01-19T00:00:00+00:00\n2026-02-09T00:00:00+00:00\n"
    );
    // The spring-forward gap in New York: 02:30 runs once, at 03:00 EDT.
    let out = invar()
        .args(["schedule", "30 2 * * *", "--timezone", "America/New_York"])
        .args(["--from", "2026-03-07T12:00:00Z", "--count", "2"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n"
    );
    let out = invar().args(["schedule", "0 0 32 * *"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("day-of-month"));
}

/// A gate that checks nothing is not a pass: an empty config, a suite whose `select` matches
/// nothing, exit 3 "no invariant selected" unless `--allow-empty`; `validate` warns.
#[test]
fn an_empty_selection_is_exit_3_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.yaml", "# only a comment\n");
    let out = invar()
        .args(["run", "--dry-run", "--config"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no invariant selected"));
    let out = invar()
        .args(["run", "--dry-run", "--allow-empty", "--config"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    let typo = write(
        dir.path(),
        "typo.yaml",
        r#"invariants:
  - id: A-1
    title: A literal list holds
    tags: [gate]
    probe: { values: [a, b] }
    fail_when: count > 5.0
suites:
  gate: { select: "'gaet' in tags" }
"#,
    );
    let out = invar()
        .args(["run", "--dry-run", "--suite", "gate", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("suite `gate`: its `select` matches no invariant"),
        "{err}"
    );
    let out = invar()
        .args(["validate", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("suite `gate`"),
        "{err}"
    );
    // The whole config still runs.
    let out = invar()
        .args(["run", "--dry-run", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The 79 panics (exit 101) of mutated examples: a duration too large for
/// `Duration::from_secs_f64`. Now exit 3 with the field, its position and the allowed range.
#[test]
fn huge_durations_are_exit_3_with_the_range_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "invar.yaml",
        "invariants:\n  - id: A\n    title: a\n    timeout: 99999999999999999999s\n    transitions:\n      probe: { values: [a] }\n      key: id\n      state: s\n      allowed: { a: [] }\n      remember: 18446744073709551616s\n",
    );
    let out = invar()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("invar.yaml:4:14"), "{err}");
    assert!(err.contains("invar.yaml:10:17"), "{err}");
    assert!(
        err.contains("`remember` is too long: at most 10 years (`3650d`)"),
        "{err}"
    );
}

/// "Billion laughs": ten lines of nested aliases ran `invar validate` past 10 s. Now exit 3
/// in well under a second, naming the limit.
#[test]
fn yaml_alias_bomb_is_exit_3_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let a = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![a; 9].join(", ")));
    }
    let cfg = write(dir.path(), "invar.yaml", &text);
    let t = std::time::Instant::now();
    let out = invar()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("more than 100000 nodes, the limit on alias expansion"),
        "{err}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
}

/// `invar silence add` prints an id, `list` shows it, `expire` ends it; a bad matcher or
/// duration is exit 3 before the store is touched. (What a silence holds back:
/// invar-alerts `tests/silences.rs` and `watch.rs`.)
#[test]
fn silence_add_list_expire() {
    let (dir, cfg) = demo();
    let cfg_s = cfg.to_str().unwrap();
    let sil = |args: &[&str]| {
        let out = invar()
            .args(["--config", cfg_s, "silence"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = sil(&["add", "--match", "id ==", "--for", "1h"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a valid CEL matcher"), "{err}");
    let (code, _, err) = sil(&["add", "--match", "true", "--for", "soon"]);
    assert_eq!(code, 3, "{err}");

    let (code, id, err) = sil(&["add", "--match", "true", "--for", "2h", "--reason", "maint"]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "a uuid: {id}");
    let (code, listed, _) = sil(&["list"]);
    assert_eq!(code, 0);
    assert!(listed.contains(&id) && listed.contains("maint"), "{listed}");
    let (code, json, _) = sil(&["list", "--format", "json"]);
    assert_eq!(code, 0);
    let v: J = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"][0]["id"], id.as_str());

    // A run under the silence marks every result with it, and `invar incidents` says so.
    let run_json = || {
        let out = invar()
            .args(["--config", cfg_s, "run", "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<J>(&out.stdout).unwrap()
    };
    let r = run_json();
    let results = r["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for res in results {
        assert_eq!(res["silenced"]["id"], id.as_str(), "{res}");
        assert_eq!(res["silenced"]["reason"], "maint");
        assert!(res["silenced"]["until"].as_str().unwrap().ends_with('Z'));
    }
    let out = invar()
        .args(["--config", cfg_s, "run", "--format", "table"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("silenced by {id} until ")), "{text}");
    let out = invar()
        .args(["--config", cfg_s, "incidents", "--open"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("silenced by {id} until ")) && text.contains(": maint"),
        "{text}"
    );
    let out = invar()
        .args(["--config", cfg_s, "incidents", "--open", "--format", "json"])
        .output()
        .unwrap();
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v.as_array().unwrap().is_empty());
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|i| i["silenced"]["id"] == id.as_str()),
        "{v}"
    );

    let (code, out, err) = sil(&["expire", &id]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("expired {id}").as_str()),
        "{err}"
    );
    let (code, _, _) = sil(&["expire", &id]);
    assert_eq!(code, 2, "a second expiry finds no active silence");
    let (_, listed, _) = sil(&["list"]);
    assert_eq!(listed, "no silences\n");
    let r = run_json();
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|res| res.get("silenced").is_none()),
        "{r}"
    );
    drop(dir);
}
