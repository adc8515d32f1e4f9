//! Metrics fusion: N `metrics` invariants over one table (same `where`) cost exactly one
//! statement, on SQLite and on the real PostgreSQL and MariaDB; and the aggregates are right.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Outcome, RunReport};
use invar_sources::{Engine, RunOptions};
use std::path::Path;
use std::sync::Arc;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn reachable(addr: &str, what: &str) -> bool {
    invar_testkit::server_up(what, addr, "scripts/ensure-services.sh")
}

/// Nine metrics invariants: six on `t` (one `where`), two on `t` with another `where`, one on `u`.
fn config(source: &str, t: &str, u: &str) -> String {
    format!(
        r#"sources:
{source}
invariants:
  - id: M-1
    title: row count
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ rows: count() }} }} }}
    fail_when: row.rows != 5.0
  - id: M-2
    title: emails present
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ rows: count(), no_email: missing(email) }} }} }}
    fail_when: row.no_email / row.rows > 0.1
  - id: M-3
    title: emails unique
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ dup: duplicates(email), n: distinct(email) }} }} }}
    fail_when: row.dup > 0.0
  - id: M-4
    title: statuses valid
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ bad: "invalid(status, [paid, pending])" }} }} }}
    fail_when: row.bad > 0.0
  - id: M-5
    title: amounts
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ lo: min(amount), hi: max(amount), mean: avg(amount), total: sum(amount) }} }} }}
    fail_when: row.lo != 10.0 || row.hi != 50.0 || row.mean != 30.0 || row.total != 150.0
  - id: M-6
    title: fresh
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount >= 0", compute: {{ stale_s: age(updated_at) }} }} }}
    fail_when: row.stale_s > 1800.0
  - id: M-7
    title: negative amounts
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount < 0", compute: {{ n: count() }} }} }}
    fail_when: row.n > 0.0
  - id: M-8
    title: negative amounts are rare
    probe: {{ source: db, metrics: {{ table: {t}, where: "amount < 0", compute: {{ n: count(), none: missing(email) }} }} }}
    fail_when: row.n > 5.0
  - id: M-9
    title: other table
    probe: {{ source: db, metrics: {{ table: {u}, compute: {{ n: count(), last: age(seen_at) }} }} }}
    fail_when: row.n != 0.0
"#
    )
}

fn outcome(r: &RunReport, id: &str) -> Outcome {
    r.results.iter().find(|x| x.id == id).unwrap().outcome
}

fn run(dir: &Path, yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> (RunReport, u64) {
    let path = dir.join("invar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg =
        invar_config::load_with_env(&path, env).unwrap_or_else(|d| panic!("{}", d.render(false)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(Arc::new(cfg));
    let out = rt.block_on(engine.run(&RunOptions::default()));
    let (report, queries) = (
        out.report,
        out.stats.queries.get("db").copied().unwrap_or(0),
    );
    (report, queries)
}

fn check(report: &RunReport, queries: u64) {
    let reasons: Vec<String> = report
        .results
        .iter()
        .map(|r| format!("{} {:?} {:?} {:?}", r.id, r.outcome, r.reason, r.measured))
        .collect();
    assert_eq!(
        queries, 3,
        "nine metrics invariants over three (table, where) groups: {reasons:#?}"
    );
    for (id, want) in [
        ("M-1", Outcome::Pass),
        ("M-2", Outcome::Fail), // one of five emails missing: 20%
        ("M-3", Outcome::Fail), // two rows share an email
        ("M-4", Outcome::Fail), // `refunded` is not allowed
        ("M-5", Outcome::Pass),
        ("M-6", Outcome::Fail), // newest update an hour ago
        ("M-7", Outcome::Fail),
        ("M-8", Outcome::Pass),
        ("M-9", Outcome::Pass),
    ] {
        assert_eq!(outcome(report, id), want, "{id}: {reasons:#?}");
    }
    let m3 = report.results.iter().find(|r| r.id == "M-3").unwrap();
    assert_eq!(m3.measured["dup"], 1, "{:?}", m3.measured);
    assert_eq!(m3.measured["n"], 3);
    let m6 = report.results.iter().find(|r| r.id == "M-6").unwrap();
    let age = m6.measured["stale_s"].as_f64().unwrap();
    assert!(
        (3500.0..3700.0).contains(&age),
        "age of an hour-old row, zone-less as UTC: {age}"
    );
}

const ROWS: &str = "(1, 'a@x.org', 'paid', 10, {old}), (2, 'b@x.org', 'pending', 20, {old}), \
                    (3, 'b@x.org', 'paid', 30, {new}), (4, NULL, 'refunded', 40, {old}), \
                    (5, 'c@x.org', 'paid', 50, {old}), (6, 'd@x.org', 'paid', -5, {old})";

#[test]
fn sqlite_fuses_metrics_per_table_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect({db:?}); c.executescript(\"\"\"\
             CREATE TABLE orders (id INTEGER PRIMARY KEY, email TEXT, status TEXT, amount INTEGER, updated_at TEXT);\
             CREATE TABLE visits (seen_at TEXT);\
             INSERT INTO orders VALUES {rows};\"\"\"); c.commit()",
            db = db.display().to_string(),
            rows = ROWS.replace("{old}", "datetime('now', '-2 days')").replace("{new}", "datetime('now', '-1 hours')")
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let yaml = config(
        &format!("  db: {{ type: sqlite, path: {} }}", db.display()),
        "orders",
        "visits",
    );
    let (report, queries) = run(dir.path(), &yaml, &|_| None);
    check(&report, queries);
}

fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mariadb(sql: &str) {
    let out = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "test", "-e", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn postgres_fuses_metrics_per_table_and_where() {
    if !reachable("127.0.0.1:5432", "PostgreSQL") {
        return;
    }
    let (t, u) = (
        format!("fusion_o_{}", std::process::id()),
        format!("fusion_v_{}", std::process::id()),
    );
    psql(&format!(
        "DROP TABLE IF EXISTS {t}, {u}; CREATE TABLE {t} (id int, email text, status text, amount numeric(10,2), updated_at timestamp);\
         CREATE TABLE {u} (seen_at timestamptz); INSERT INTO {t} VALUES {};",
        ROWS.replace("{old}", "(now() at time zone 'utc') - interval '2 days'")
            .replace("{new}", "(now() at time zone 'utc') - interval '1 hour'")
    ));
    let dir = tempfile::tempdir().unwrap();
    let yaml = config("  db: { type: postgres, url: \"${DB_URL}\" }", &t, &u);
    let (report, queries) = run(dir.path(), &yaml, &|k| {
        (k == "DB_URL").then(|| PG_URL.to_string())
    });
    psql(&format!("DROP TABLE {t}, {u}"));
    check(&report, queries);
}

#[test]
fn mariadb_fuses_metrics_per_table_and_where() {
    if !reachable("127.0.0.1:3306", "MariaDB") {
        return;
    }
    let (t, u) = (
        format!("fusion_o_{}", std::process::id()),
        format!("fusion_v_{}", std::process::id()),
    );
    mariadb(&format!(
        "DROP TABLE IF EXISTS {t}, {u}; CREATE TABLE {t} (id int, email varchar(64), status varchar(16), amount decimal(10,2), updated_at datetime);\
         CREATE TABLE {u} (seen_at timestamp NULL); INSERT INTO {t} VALUES {};",
        ROWS.replace("{old}", "UTC_TIMESTAMP() - INTERVAL 2 DAY")
            .replace("{new}", "UTC_TIMESTAMP() - INTERVAL 1 HOUR")
    ));
    let dir = tempfile::tempdir().unwrap();
    let yaml = config("  db: { type: mysql, url: \"${DB_URL}\" }", &t, &u);
    let (report, queries) = run(dir.path(), &yaml, &|k| {
        (k == "DB_URL").then(|| MYSQL_URL.to_string())
    });
    mariadb(&format!("DROP TABLE {t}, {u}"));
    check(&report, queries);
}
