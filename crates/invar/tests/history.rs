//! Recording through the CLI: every run lands in the history store (not with --dry-run), one
//! alert per incident reaches a real local webhook receiver, and `history`, `incidents`,
//! `report` and `--artifacts` show it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn invar(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.current_dir(dir)
        .env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1");
    c
}

/// A webhook receiver that keeps every JSON body.
fn receiver() -> (String, Arc<Mutex<Vec<J>>>) {
    invar_testkit::json_receiver("/hook/s3cr3t-token")
}

#[test]
fn runs_are_recorded_and_one_alert_per_incident_reaches_the_webhook() {
    story("");
}

/// The same story on a Postgres history store (a fresh database, dropped afterwards).
#[test]
fn the_same_story_on_a_postgres_store() {
    if !invar_testkit::server_up("PostgreSQL", "127.0.0.1:5432", "scripts/ensure-services.sh") {
        return;
    }
    let db = format!("invar_hist_{}", std::process::id());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
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
    };
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    story(&format!("store: postgres://postgres@127.0.0.1:5432/{db}\n"));
    psql(&format!("DROP DATABASE {db} WITH (FORCE)"));
}

fn story(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (url, bodies) = receiver();
    std::fs::write(d.join("bad.txt"), "a1\n").unwrap();
    std::fs::write(
        d.join("invar.yaml"),
        format!("{store}alerts:\n  hook: {{ type: webhook, url: \"${{HOOK_URL}}\" }}\n\
         invariants:\n  - id: MIG-01\n    title: required migrations are listed\n    severity: critical\n    runbook: Add them.\n\
         \x20   subset:\n      each: {{ values: [a1, a2] }}\n      in: {{ lines: {{ path: bad.txt, match: '^(?P<value>\\S+)' }}, key: value }}\n"),
    )
    .unwrap();
    let with_hook = |extra: &[&str]| {
        let mut c = invar(d);
        c.env("HOOK_URL", &url)
            .args(["run", "--format", "json", "--output", "report.json"])
            .args(extra);
        let out = c.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("s3cr3t-token"),
            "the webhook URL leaked: {all}"
        );
        out.status.code().unwrap()
    };
    // Red, red (dry run: not recorded), red, then green.
    assert_eq!(with_hook(&["--artifacts", "artifacts"]), 1);
    assert_eq!(with_hook(&["--dry-run"]), 1);
    assert_eq!(with_hook(&[]), 1);
    std::fs::write(d.join("bad.txt"), "a1\na2\n").unwrap();
    assert_eq!(with_hook(&[]), 0);

    let got = bodies.lock().unwrap().clone();
    let statuses: Vec<&str> = got
        .iter()
        .map(|b| b["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        statuses,
        ["firing", "resolved"],
        "one alert when it opens, one when it resolves: {got:#?}"
    );

    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["history", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let runs: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        3,
        "the dry run is not recorded"
    );

    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["history", "--invariant", "MIG-01"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // The results, then the series (the outcomes once more, oldest first).
    let (results, series) = text.split_once("measures, oldest first").unwrap();
    assert_eq!(results.matches("fail").count(), 2, "{text}");
    assert_eq!(results.matches("pass").count(), 1, "{text}");
    assert!(series.contains("(outcome)  fail fail pass\n"), "{text}");
    assert!(series.contains("  missing    1 1 0\n"), "{text}");

    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["incidents", "--format", "json"])
        .output()
        .unwrap();
    let incidents: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(incidents.as_array().unwrap().len(), 1);
    assert_eq!(incidents[0]["subject"], "MIG-01");
    assert!(incidents[0]["resolved_at"].is_string());
    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["incidents", "--open"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("0 open incidents")
    );

    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["report", "--since", "1h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("| all | cli | 3 |"), "{md}");
    assert!(md.contains("1 opened, 1 resolved"), "{md}");
    let out = invar(d)
        .env("HOOK_URL", &url)
        .args(["report", "--month", "2026-13"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));

    // --artifacts: DIR/YYYY-MM-DD/<run_id>.json holds the run report.
    let days: Vec<_> = std::fs::read_dir(d.join("artifacts")).unwrap().collect();
    assert_eq!(days.len(), 1);
    let day = days[0].as_ref().unwrap().path();
    let files: Vec<_> = std::fs::read_dir(&day)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let art: J = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(
        format!("{}.json", art["run_id"].as_str().unwrap()),
        files[0].file_name().unwrap().to_str().unwrap()
    );
    assert!(day.file_name().unwrap().to_str().unwrap().len() == 10);

    // The store never holds the webhook's secret URL.
    if store.is_empty() {
        for f in ["history.db", "history.db-wal"] {
            let bytes = std::fs::read(d.join(".invar").join(f)).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("s3cr3t-token"),
                "{f}"
            );
        }
    }
}

/// `history --invariant ID`: the measured series oldest first — JSON and CSV shapes, plain
/// numbers when piped, a sparkline only on a terminal (`script` gives it one).
#[test]
fn an_invariants_measured_series_as_json_csv_and_sparklines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("invar.yaml"),
        "invariants:\n  - id: ORD-01\n    title: orders keep flowing\n    severity: major\n\
         \x20   probe: { command: { run: [cat, n.json], parse: json } }\n    fail_when: row.n < 5\n",
    )
    .unwrap();
    // n: 10, 12, 3 (a fail), a run without n (an error), 11.
    for body in [
        r#"{"n": 10}"#,
        r#"{"n": 12}"#,
        r#"{"n": 3, "note": "a, \"quoted\" note"}"#,
        r#"{"m": 1}"#,
        r#"{"n": 11.5}"#,
    ] {
        std::fs::write(d.join("n.json"), body).unwrap();
        invar(d).args(["run", "--format", "json"]).output().unwrap();
    }
    let run = |args: &[&str]| {
        let out = invar(d)
            .args(["history", "--invariant", "ORD-01"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bars = |s: &str| s.chars().any(|c| ('▁'..='█').contains(&c));

    let j: J = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(j["invariant"], "ORD-01");
    assert_eq!(j["results"].as_array().unwrap().len(), 5);
    assert_eq!(
        j["results"][0]["measured"]["n"], 11.5,
        "results newest first"
    );
    let s = &j["series"];
    assert_eq!(
        s["measures"]["n"],
        serde_json::json!([10, 12, 3, null, 11.5])
    );
    assert_eq!(s["outcome"][2], "fail");
    assert_eq!(s["at"].as_array().unwrap().len(), 5);
    assert!(s["measures"].get("note").is_none(), "only numeric measures");
    assert!(!bars(&j.to_string()));

    let csv = run(&["--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    let head: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &head[..6],
        [
            "started_at",
            "run_id",
            "suite",
            "outcome",
            "violations_total",
            "reason"
        ]
    );
    let n = head.iter().position(|h| *h == "n").unwrap();
    assert!(head.contains(&"count"), "{csv}");
    let col = |line: &str| {
        line.rsplit(',')
            .nth(head.len() - 1 - n)
            .unwrap()
            .to_string()
    };
    assert_eq!(col(lines[1]), "10");
    assert_eq!(col(lines[4]), "", "missing is empty: {csv}");
    assert_eq!(col(lines[5]), "11.5");
    assert!(
        lines[3].contains(",all,fail,1,fail_when held: `row.n < 5`,"),
        "{csv}"
    );
    assert!(!bars(&csv));

    let piped = run(&[]);
    assert!(
        piped.contains("history of `ORD-01` (5 results, newest first)"),
        "{piped}"
    );
    assert!(
        piped.contains("measures, oldest first (5 results)"),
        "{piped}"
    );
    assert!(piped.contains("  n          10 12 3 - 11.5\n"), "{piped}");
    assert!(
        piped.contains("(outcome)  pass pass fail error pass\n"),
        "{piped}"
    );
    assert!(!bars(&piped), "no sparkline when piped: {piped}");

    // On a terminal: one bar per run, min to max, a space where n is missing.
    let bin = assert_cmd::cargo::cargo_bin("invar");
    let Ok(out) = std::process::Command::new("script")
        .current_dir(d)
        .env("NO_COLOR", "1")
        .args([
            "-qec",
            &format!("{} history --invariant ORD-01", bin.display()),
            "/dev/null",
        ])
        .output()
    else {
        eprintln!("warning: no `script`: the terminal half is not checked");
        return;
    };
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        tty.contains("n          ▆█▁ █  min 3  max 12  last 11.5"),
        "{tty}"
    );
    assert!(tty.contains("(outcome)  ✓✓✗E✓"), "{tty}");
}
