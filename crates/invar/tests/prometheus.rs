//! The `prometheus` source against a real Prometheus (Debian's `prometheus`, installed by
//! `scripts/ensure-services.sh`): each test backfills known series with
//! `promtool tsdb create-blocks-from openmetrics`, starts its own server on a free port over
//! that data, runs `invar run`, and kills the server by PID at the end (a Drop guard).
//!
//! The data: `http_requests_total{service, code}` counters over the last 30 minutes, one
//! sample every 15 s: service `bad` serves 10 errors per 1,000 requests (0.99 %), `good` 1
//! per 1,000 (0.1 %).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A running Prometheus; killed and reaped on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    let debian = PathBuf::from("/usr/bin").join(name);
    on_path.or_else(|| debian.is_file().then_some(debian))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test data as OpenMetrics text, ending at `end` (unix seconds).
fn openmetrics(end: u64) -> String {
    let mut out =
        String::from("# HELP http_requests Requests served.\n# TYPE http_requests counter\n");
    for (service, errors) in [("bad", 10u64), ("good", 1)] {
        for (code, per_step) in [("200", 1000 - errors), ("500", errors)] {
            for i in 0..=120u64 {
                let t = end - (120 - i) * 15;
                let v = i * per_step;
                writeln!(
                    out,
                    "http_requests_total{{service=\"{service}\",code=\"{code}\"}} {v} {t}"
                )
                .unwrap();
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Backfills the test data into `dir/data` and starts Prometheus over it. None (a loud skip)
/// when Prometheus is not installed outside CI; a failure under CI.
fn start(dir: &Path) -> Option<Prometheus> {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else {
        invar_testkit::skip(
            "prometheus/promtool are not installed",
            "install them with `bash scripts/ensure-services.sh` (Debian package `prometheus`)",
        );
        return None;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let input = dir.join("data.om");
    std::fs::write(&input, openmetrics(now - now % 15)).unwrap();
    let data = dir.join("data");
    let out = std::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global: {}\nscrape_configs: []\n").unwrap();
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Prometheus { child, port, log };
    for _ in 0..300 {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
        });
        if ready {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "prometheus did not get ready on {port}:\n{}",
        std::fs::read_to_string(&p.log).unwrap_or_default()
    );
}

/// `invar run --format json` in `dir`: (exit code, the report, stderr).
fn run(dir: &Path) -> (i32, J, String) {
    let out = Command::cargo_bin("invar")
        .unwrap()
        .current_dir(dir)
        .args(["run", "--config", "invar.yaml", "--format", "json"])
        .env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a report ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap(), report, stderr)
}

fn result<'a>(report: &'a J, id: &str) -> &'a J {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result {id} in {report}"))
}

fn ratio(service: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{service=\\\"{service}\\\",code=~\\\"5..\\\"}}[5m])) / sum(rate(http_requests_total{{service=\\\"{service}\\\"}}[5m]))"
    )
}

fn config(port: u16) -> String {
    format!(
        r#"
sources:
  prom: {{ type: prometheus, url: "http://127.0.0.1:{port}", timeout: 5s, headers: {{ Authorization: "Bearer prom-s3cr3t-77" }} }}
  app:  {{ type: sqlite, path: app.db, read_only: false }}
invariants:
  - id: ERR-BAD
    title: 5xx ratio of the bad service under 0.5%
    probe: {{ source: prom, promql: "{bad}" }}
    fail_when: row.value > 0.005
  - id: ERR-GOOD
    title: 5xx ratio of the good service under 0.5%
    probe: {{ source: prom, promql: "{good}" }}
    fail_when: row.value > 0.005
  - id: EMPTY
    title: a selector that matches nothing examines nothing
    probe: {{ source: prom, promql: "http_requests_total{{service=\"none\"}}" }}
    fail_when: row.value > 0
  - id: THIN
    title: thin telemetry skips
    probe: {{ source: prom, promql: "http_requests_total{{service=\"none\"}}" }}
    skip_when: count == 0
    fail_when: row.value > 0
  - id: BAD-QUERY
    title: a broken query
    probe: {{ source: prom, promql: "sum(rate(http_requests_total[5m]" }}
    fail_when: row.value > 0
  - id: RANGE
    title: the good service's counter only grows over the last 10 minutes
    probe: {{ source: prom, promql: "http_requests_total{{service=\"good\",code=\"200\"}}", range: 10m, step: 1m }}
    fail_when: count < 10 || rows.exists(r, r.value < 0)
  - id: EVERY
    title: every series has a code label
    probe: {{ source: prom, promql: "http_requests_total" }}
    every_row: r.code == "200" || r.code == "500"
  - id: SAME
    title: the services Prometheus sees are the services the catalogue lists
    same:
      left:  {{ source: prom, promql: "count by (service) (http_requests_total)", key: service }}
      right: {{ source: app, sql: "SELECT name FROM services", key: name }}
  - id: SQL-ONLY
    title: a SQL invariant beside them
    probe: {{ source: app, sql: "SELECT name FROM services WHERE name = 'gone'" }}
"#,
        bad = ratio("bad"),
        good = ratio("good"),
    )
}

/// The catalogue the SQL side reads, made with the `sqlite3` shell (Debian's `sqlite3`,
/// installed by `scripts/ensure-services.sh`).
fn seed_sqlite(dir: &Path) {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("app.db"))
        .arg("CREATE TABLE services(name TEXT); INSERT INTO services VALUES ('bad'), ('good');")
        .output()
        .unwrap_or_else(|e| panic!("the sqlite3 shell is needed (Debian package sqlite3): {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promql_invariants_decide_against_a_real_prometheus_and_its_absence_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let Some(prom) = start(dir.path()) else {
        return;
    };
    seed_sqlite(dir.path());
    std::fs::write(dir.path().join("invar.yaml"), config(prom.port)).unwrap();

    let (code, report, stderr) = run(dir.path());
    let outcome = |id: &str| result(&report, id)["outcome"].as_str().unwrap().to_string();
    let log = || std::fs::read_to_string(&prom.log).unwrap_or_default();
    assert_eq!(outcome("ERR-BAD"), "fail", "{report}\n{stderr}\n{}", log());
    let measured = result(&report, "ERR-BAD")["measured"]["value"]
        .as_f64()
        .unwrap();
    assert!((measured - 0.0099).abs() < 0.0002, "{measured}");
    assert_eq!(outcome("ERR-GOOD"), "pass", "{report}");
    assert_eq!(outcome("EMPTY"), "pass");
    assert_eq!(result(&report, "EMPTY")["vacuous"], true, "{report}");
    assert_eq!(outcome("THIN"), "skip");
    assert_eq!(outcome("BAD-QUERY"), "error");
    let reason = result(&report, "BAD-QUERY")["reason"].as_str().unwrap();
    assert!(
        reason.contains("bad_data") && reason.contains("parse error"),
        "{reason}"
    );
    assert_eq!(outcome("RANGE"), "pass", "{report}");
    assert_eq!(result(&report, "RANGE")["measured"]["count"], 11);
    assert_eq!(outcome("EVERY"), "pass", "{report}");
    assert_eq!(result(&report, "EVERY")["measured"]["count"], 4);
    assert_eq!(outcome("SAME"), "pass", "{report}");
    assert_eq!(outcome("SQL-ONLY"), "pass");
    // The broken query is an error (exit 2), but the server answered: it is not unavailable.
    assert_eq!(code, 2);
    assert!(
        report["sources_unavailable"].as_array().unwrap().is_empty(),
        "{report}"
    );

    // Prometheus gone: its invariants are errors, the SQL one is still decided, exit 2.
    drop(prom);
    let (code, report, stderr) = run(dir.path());
    assert_eq!(code, 2, "{report}\n{stderr}");
    for id in ["ERR-BAD", "ERR-GOOD", "EMPTY", "RANGE", "SAME"] {
        assert_eq!(result(&report, id)["outcome"], "error", "{id}: {report}");
    }
    assert_eq!(result(&report, "SQL-ONLY")["outcome"], "pass");
    let down = report["sources_unavailable"].to_string();
    assert!(down.contains("prom"), "{down}");
    let all = format!("{report}{stderr}");
    assert!(
        !all.contains("prom-s3cr3t-77"),
        "the header secret leaked: {all}"
    );
}
