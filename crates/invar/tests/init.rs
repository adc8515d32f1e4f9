//! `invar init`: from a live schema on SQLite, the real PostgreSQL and the real MariaDB — each
//! with declared foreign keys that the data violates (SQLite does not enforce them by default;
//! Postgres gets its constraint `NOT VALID` after the orphan is in; MariaDB loads with
//! `FOREIGN_KEY_CHECKS=0`) — the written config validates, and its run catches the orphans.
//! Plus the skeleton, overwrite protection, bad URLs and secrets.
//!
//! Servers on loopback: PostgreSQL 127.0.0.1:5432 (user `postgres`, trust auth), MariaDB
//! 127.0.0.1:3306 (`root`, empty password); override with `INVAR_TEST_POSTGRES_URL` /
//! `INVAR_TEST_MYSQL_URL` (a URL whose database the test may create databases next to). Each
//! test creates its own database (`invar_init_<pid>_<n>`) and drops it. When a server is down
//! the test panics under `CI` and is skipped (loudly) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use sqlx::{AssertSqlSafe, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const START_PG: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const START_MARIADB: &str =
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd";

fn invar() -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.env_remove("INVAR_CONFIG")
        .env_remove("INVAR_DATABASE_URL")
        .env("NO_COLOR", "1");
    c
}

/// Whether the server at `url` answers on TCP. Under `CI` a down server fails the test.
fn reachable(what: &str, url: &str, how_to_start: &str) -> bool {
    invar_testkit::url_up(what, url, how_to_start)
}

fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros();
    format!("invar_init_{}_{n}_{micros}", std::process::id())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `url` with its database (the path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| format!("?{q}"));
    format!("{scheme}://{authority}/{db}{}", query.unwrap_or_default())
}

/// The shop schema with its defects:
/// - orders 3 → customer 999 (declared FK); stores 2 → region (us, fr) (declared composite FK);
/// - reviews 2 → order 777 (`order_id` is not declared: a guessed FK);
/// - customers 1 and 2 share an email up to case (no unique index: a duplicates guess).
fn schema(fk_inline: bool) -> Vec<String> {
    let fk = |s: &str| {
        if fk_inline {
            format!(", {s}")
        } else {
            String::new()
        }
    };
    vec![
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR(100), name VARCHAR(100) NOT NULL)".into(),
        format!(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER NOT NULL{})",
            fk("CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)")
        ),
        "CREATE TABLE regions (code VARCHAR(10) NOT NULL, country VARCHAR(10) NOT NULL, PRIMARY KEY (code, country))".into(),
        format!(
            "CREATE TABLE stores (id INTEGER PRIMARY KEY, region_code VARCHAR(10), country VARCHAR(10){})",
            fk("CONSTRAINT stores_region_fk FOREIGN KEY (region_code, country) REFERENCES regions (code, country)")
        ),
        "CREATE TABLE reviews (id INTEGER PRIMARY KEY, order_id INTEGER, body VARCHAR(200))".into(),
        "INSERT INTO customers (id, email, name) VALUES (1, 'ann@example.com', 'Ann'), (2, 'Ann@Example.com', 'Ann B'), (3, 'bob@example.com', 'Bob')".into(),
        "INSERT INTO orders (id, customer_id, total) VALUES (1, 1, 10), (2, 3, 20), (3, 999, 30), (4, NULL, 5)".into(),
        "INSERT INTO regions (code, country) VALUES ('eu', 'fr'), ('eu', 'de')".into(),
        "INSERT INTO stores (id, region_code, country) VALUES (1, 'eu', 'fr'), (2, 'us', 'fr'), (3, NULL, 'de')".into(),
        "INSERT INTO reviews (id, order_id, body) VALUES (1, 1, 'ok'), (2, 777, 'who?')".into(),
    ]
}

/// Postgres: the same constraints, added `NOT VALID` after the orphans are in.
const PG_LATE_FKS: &[&str] = &[
    "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
    "ALTER TABLE stores ADD CONSTRAINT stores_region_fk FOREIGN KEY (region_code, country) REFERENCES regions (code, country) NOT VALID",
];

async fn execute_pg(url: &str, stmts: &[String]) -> Result<(), String> {
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    for s in stmts {
        sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await
            .map_err(|e| format!("{s}: {e}"))?;
    }
    c.close().await.map_err(|e| e.to_string())
}

async fn execute_mysql(url: &str, stmts: &[String]) -> Result<(), String> {
    let mut c = sqlx::MySqlConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    for s in stmts {
        sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await
            .map_err(|e| format!("{s}: {e}"))?;
    }
    c.close().await.map_err(|e| e.to_string())
}

async fn execute_sqlite(path: &Path, stmts: &[String]) -> Result<(), String> {
    use sqlx::sqlite::SqliteConnectOptions;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // SQLite's default, made explicit: declared foreign keys are not enforced.
        .foreign_keys(false);
    let mut c = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| e.to_string())?;
    for s in stmts {
        sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await
            .map_err(|e| format!("{s}: {e}"))?;
    }
    c.close().await.map_err(|e| e.to_string())
}

/// `invar init --from URL`, then validate and run the result; checks what every backend must
/// show. Returns the config text and the run's JSON report.
fn init_validate_run(dir: &Path, from: &str, run_url: Option<&str>) -> (String, J) {
    let cfg = dir.join("invar.yaml");
    let out = invar()
        .args(["init", "--from", from, "--output"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "init failed: {stderr}");
    assert!(
        stderr.contains("5 tables") && stderr.contains("guess"),
        "summary on stderr: {stderr}"
    );
    let text = std::fs::read_to_string(&cfg).unwrap();

    let with_env = |c: &mut Command| {
        if let Some(u) = run_url {
            c.env("INVAR_DATABASE_URL", u);
        }
    };
    let mut validate = invar();
    with_env(&mut validate);
    let v = validate
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "the written config validates: {}\n{text}",
        String::from_utf8_lossy(&v.stderr)
    );

    let mut run = invar();
    with_env(&mut run);
    let r = run
        .args(["run", "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: J = serde_json::from_slice(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        )
    });
    assert_eq!(
        r.status.code(),
        Some(1),
        "the run fails on the orphans: {report:#}\n{text}"
    );

    // The gate suite: declared keys only, never a guess.
    let mut gate = invar();
    with_env(&mut gate);
    let g = gate
        .args(["run", "--suite", "gate", "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(g.status.code(), Some(1));
    let gate_report: J = serde_json::from_slice(&g.stdout).unwrap();
    let gate_ids: Vec<&str> = gate_report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        gate_ids,
        [
            "orphans-orders-customer_id",
            "orphans-stores-region_code-country"
        ],
        "{text}"
    );
    (text, report)
}

fn result<'a>(report: &'a J, id: &str) -> &'a J {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result {id} in {report:#}"))
}

/// What every backend's run must say.
fn check_report(text: &str, report: &J) {
    // Declared single-column FK: the orphan is named.
    let fk = result(report, "orphans-orders-customer_id");
    assert_eq!(fk["outcome"], "fail", "{fk:#}");
    assert_eq!(fk["severity"], "critical");
    assert_eq!(fk["violations_total"], 1);
    assert_eq!(
        fk["violations"][0]["missing"]["customer_id"].as_f64(),
        Some(999.0),
        "{fk:#}"
    );
    assert!(fk["runbook"].as_str().unwrap().contains("customers"));

    // Declared composite FK: (us, fr) is missing; the NULL region is not an orphan.
    let comp = result(report, "orphans-stores-region_code-country");
    assert_eq!(comp["outcome"], "fail", "{comp:#}");
    assert_eq!(comp["violations_total"], 1, "{comp:#}");
    assert_eq!(comp["violations"][0]["missing"]["region_code"], "us");
    assert!(text.contains("key: [region_code, country]"), "{text}");

    // Guessed FK: reviews.order_id → orders.id, marked and tagged as a guess.
    let guess = result(report, "orphans-reviews-order_id");
    assert_eq!(guess["outcome"], "fail", "{guess:#}");
    assert_eq!(
        guess["violations"][0]["missing"]["order_id"].as_f64(),
        Some(777.0)
    );
    assert!(
        text.contains("# guess: reviews.order_id looks like a reference to orders.id"),
        "{text}"
    );

    // Duplicates ignoring case; missing-value with a thin-data skip.
    let dup = result(report, "duplicates-customers-email");
    assert_eq!(dup["outcome"], "fail", "{dup:#}");
    assert_eq!(dup["violations"][0]["email"], "ann@example.com");
    let missing = result(report, "missing-customers-email");
    assert_eq!(
        missing["outcome"], "skip",
        "thin data is a skip: {missing:#}"
    );
    assert!(
        !text.contains("missing-customers-name"),
        "NOT NULL: no check"
    );

    // Every invariant has the common fields.
    for r in report["results"].as_array().unwrap() {
        assert!(!r["title"].as_str().unwrap().is_empty());
        assert!(!r["runbook"].as_str().unwrap_or("").is_empty(), "{r:#}");
    }
    assert_eq!(
        text.matches("    tags: [").count(),
        text.matches("  - id: ").count()
    );
}

#[test]
fn init_from_sqlite_catches_a_violated_declared_foreign_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("shop.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let mut stmts = schema(true);
    // A large table: gets a freshness check, and its newest row is three days old.
    stmts.push(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, created_at TEXT NOT NULL)".into(),
    );
    stmts.push(
        "INSERT INTO events (id, kind, created_at) \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 12000) \
         SELECT x, 'click', datetime('now', '-3 days') FROM c"
            .into(),
    );
    block_on(execute_sqlite(&db, &stmts)).unwrap();

    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let from = format!("sqlite://{}", db.display());
    // `events` makes six tables; the helper's summary check wants five, so run init here.
    let cfg = conf.join("invar.yaml");
    let out = invar()
        .args(["init", "--from", &from, "--output"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("6 tables"), "{stderr}");
    assert!(stderr.contains("guessed from column names"), "{stderr}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // The path is written relative to the config file, which resolves it against its directory.
    assert!(text.contains(r#"path: "../data/shop.db""#), "{text}");
    assert!(text.contains("- id: fresh-events-created_at"), "{text}");
    std::fs::remove_file(&cfg).unwrap();

    // Without the large table, through the shared checks.
    let small = dir.path().join("small.db");
    block_on(execute_sqlite(&small, &schema(true))).unwrap();
    let (text, report) = init_validate_run(&conf, &format!("sqlite:{}", small.display()), None);
    check_report(&text, &report);
    assert!(
        text.contains("PRAGMA foreign_keys = ON"),
        "sqlite runbook: {text}"
    );

    // The freshness check on the large table fails: the newest event is three days old.
    invar()
        .args(["init", "--force", "--from", &from, "--output"])
        .arg(&cfg)
        .assert()
        .code(0);
    let r = invar()
        .args([
            "run",
            "--format",
            "json",
            "--only",
            "fresh-events-created_at",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: J = serde_json::from_slice(&r.stdout).unwrap();
    let fresh = result(&report, "fresh-events-created_at");
    assert_eq!(fresh["outcome"], "fail", "{fresh:#}");
    let age = fresh["violations"][0]["age_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{fresh:#}"));
    assert!((259_000.0..260_000.0).contains(&age), "three days: {age}");
}

#[test]
fn init_from_postgres_catches_a_not_valid_foreign_key() {
    let admin = std::env::var("INVAR_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_URL.into());
    if !reachable("PostgreSQL", &admin, START_PG) {
        return;
    }
    let name = unique_name();
    block_on(execute_pg(&admin, &[format!("CREATE DATABASE {name}")])).unwrap();
    let url = with_database(&admin, &name);
    let outcome = std::panic::catch_unwind(|| {
        let mut stmts = schema(false);
        stmts.extend(PG_LATE_FKS.iter().map(|s| s.to_string()));
        block_on(execute_pg(&url, &stmts)).unwrap();
        // Trust auth ignores the password: it is here to prove it never reaches the file.
        let secret_url = url.replacen("postgres@", "postgres:s3cret-pw@", 1);
        let dir = tempfile::tempdir().unwrap();
        let (text, report) = init_validate_run(dir.path(), &secret_url, Some(&secret_url));
        check_report(&text, &report);
        assert!(text.contains(r#"url: "${INVAR_DATABASE_URL}""#), "{text}");
        assert!(
            !text.contains("s3cret-pw") && !text.contains("127.0.0.1"),
            "{text}"
        );
        assert!(
            text.contains("NOT VALID"),
            "postgres runbook names NOT VALID: {text}"
        );
    });
    let _ = block_on(execute_pg(
        &admin,
        &[format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
    ));
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn init_from_mariadb_catches_foreign_keys_loaded_without_checks() {
    let admin = std::env::var("INVAR_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_URL.into());
    if !reachable("MariaDB", &admin, START_MARIADB) {
        return;
    }
    let name = unique_name();
    block_on(execute_mysql(&admin, &[format!("CREATE DATABASE {name}")])).unwrap();
    let url = with_database(&admin, &name);
    let outcome = std::panic::catch_unwind(|| {
        let mut stmts = vec!["SET FOREIGN_KEY_CHECKS = 0".to_string()];
        stmts.extend(schema(true));
        block_on(execute_mysql(&url, &stmts)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (text, report) = init_validate_run(dir.path(), &url, Some(&url));
        check_report(&text, &report);
        assert!(text.contains("type: mysql"), "{text}");
        assert!(text.contains("FOREIGN_KEY_CHECKS"), "mysql runbook: {text}");
    });
    let _ = block_on(execute_mysql(
        &admin,
        &[format!("DROP DATABASE IF EXISTS {name}")],
    ));
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn init_without_from_writes_a_skeleton_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("invar.yaml");
    let out = invar()
        .current_dir(dir.path())
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skeleton"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    for kind in [
        "probe:",
        "subset:",
        "same:",
        "skip_when:",
        "skip_if:",
        "lines:",
        "suites:",
    ] {
        assert!(text.contains(kind), "skeleton shows {kind}");
    }
    invar()
        .current_dir(dir.path())
        .arg("validate")
        .assert()
        .code(0);
}

#[test]
fn init_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mine.yaml");
    std::fs::write(&cfg, "invariants: []\n").unwrap();
    let out = invar()
        .args(["init", "--output"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "invariants: []\n");
    // Also with --from, before connecting to anything.
    invar()
        .args([
            "init",
            "--from",
            "postgres://u:pw@127.0.0.1:1/x",
            "--output",
        ])
        .arg(&cfg)
        .assert()
        .code(3);
    invar()
        .args(["init", "--force", "--output"])
        .arg(&cfg)
        .assert()
        .code(0);
    assert!(
        std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("  - id: APP-01")
    );
}

#[test]
fn init_rejects_bad_urls_and_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("invar.yaml");
    let out = invar()
        .args(["init", "--from", "redis://127.0.0.1:6379", "--output"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported database URL scheme `redis`")
    );

    // A closed port: the schema cannot be read (exit 2), and the password is redacted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = invar()
        .args([
            "init",
            "--from",
            &format!("postgres://app:hunter2-secret@127.0.0.1:{port}/app"),
            "--output",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read the schema"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !cfg.exists(),
        "nothing written when the schema cannot be read"
    );

    // A missing SQLite file is an error, never created.
    let missing = dir.path().join("nope.db");
    invar()
        .args([
            "init",
            "--from",
            &format!("sqlite:{}", missing.display()),
            "--output",
        ])
        .arg(&cfg)
        .assert()
        .code(2);
    assert!(!missing.exists());
}
