//! The same invariants, end to end through the `invar` binary, against the real PostgreSQL,
//! MariaDB and SQLite: seed a small schema with healthy rows and known defects, write one
//! `invar.yaml` (only the `sources:` block differs per backend), run
//! `invar run --format json`, and check every invariant's outcome and violation count.
//!
//! Servers on loopback: PostgreSQL 127.0.0.1:5432 (user `postgres`, trust auth, database
//! `test`), MariaDB 127.0.0.1:3306 (`root`, empty password, database `test`); override with
//! `INVAR_TEST_POSTGRES_URL` / `INVAR_TEST_MYSQL_URL`. SQLite lives in a temporary directory.
//! When a server is down the test panics under `CI` and is skipped (loudly) otherwise.
//!
//! Table names carry a per-run suffix (pid, counter, clock) and are dropped after the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use sqlx::{AssertSqlSafe, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const START_PG: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const START_MARIADB: &str =
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd";

fn pg_url() -> String {
    std::env::var("INVAR_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_URL.to_string())
}

fn mysql_url() -> String {
    std::env::var("INVAR_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_URL.to_string())
}

/// Whether the server at `url` answers on TCP. Under `CI` a down server fails the test.
fn reachable(what: &str, url: &str, how_to_start: &str) -> bool {
    invar_testkit::url_up(what, url, how_to_start)
}

/// A suffix no other run (or concurrent test) uses.
fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros();
    format!("{}_{n}_{micros}", std::process::id())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Db {
    Postgres,
    Mariadb,
    Sqlite,
}

impl Db {
    /// The column type for timestamps.
    fn ts_type(self) -> &'static str {
        match self {
            Db::Postgres => "TIMESTAMPTZ",
            // DATETIME is zone-less; it is seeded with UTC_TIMESTAMP() and read as UTC.
            Db::Mariadb | Db::Sqlite => "DATETIME",
        }
    }

    /// The database's own clock, `secs` seconds ago (UTC).
    fn ago(self, secs: u32) -> String {
        match self {
            Db::Postgres => format!("now() - interval '{secs} seconds'"),
            Db::Mariadb => format!("UTC_TIMESTAMP() - INTERVAL {secs} SECOND"),
            Db::Sqlite => format!("datetime('now', '-{secs} seconds')"),
        }
    }
}

const TABLES: &[&str] = &[
    "customers",
    "orders",
    "payments",
    "migrations",
    "legacy_refs",
    "shipments",
    "jobs",
];

/// The schema and seed rows, the same on every backend. Known defects:
/// - orders 3 and 4 have negative totals; orders 11 and 12 point at missing customers 99, 98;
/// - customer 12 has no email (1 of 12); customer 5 uses the blocked `abuse@example.com`;
/// - paid order 6 (updated 2 h ago) has no payment; paid order 7 (60 s ago) has none yet;
///   pending order 8 has a payment from 30 s ago;
/// - migration 003 is not applied; legacy ref `404` is not a customer;
/// - shipments (us, 2) and (eu, 99) name no customer of that region;
/// - jobs 2 and 4 are retrying, expensive and running for over an hour.
fn seed(db: Db, t: &str) -> Vec<String> {
    let ts = db.ts_type();
    let a = |s: u32| db.ago(s);
    let mut customers = Vec::new();
    for id in 1..=12 {
        let email = match id {
            5 => "'abuse@example.com'".to_string(),
            12 => "NULL".to_string(),
            _ => format!("'c{id}@example.com'"),
        };
        let region = if id <= 6 { "eu" } else { "us" };
        customers.push(format!("({id}, {email}, '{region}')"));
    }
    let orders = [
        (1, 1, "paid", "19.99", a(3 * 3600)),
        (2, 2, "paid", "5.00", a(3 * 3600)),
        (3, 3, "paid", "-5.00", a(3 * 3600)),
        (4, 4, "paid", "-0.01", a(3 * 3600)),
        (5, 5, "paid", "42.50", a(3 * 3600)),
        (6, 6, "paid", "10.00", a(2 * 3600)),
        (7, 7, "paid", "11.00", a(60)),
        (8, 8, "pending", "12.00", a(3 * 3600)),
        (9, 9, "pending", "1.00", a(3 * 3600)),
        (10, 10, "pending", "2.00", a(3 * 3600)),
        (11, 99, "pending", "3.00", a(3 * 3600)),
        (12, 98, "pending", "4.00", a(3 * 3600)),
    ]
    .iter()
    .map(|(id, c, s, total, at)| format!("({id}, {c}, '{s}', {total}, {at})"))
    .collect::<Vec<_>>();
    let mut payments: Vec<String> = (1..=5).map(|o| format!("({o}, {})", a(170 * 60))).collect();
    payments.push(format!("(8, {})", a(30)));
    let jobs = [
        "(1, 'running', 1, 1.50, FALSE, AGO600)",
        "(2, 'running', 3, 12.75, TRUE, AGO10800)",
        "(3, 'done', 1, 0.25, FALSE, AGO18000)",
        "(4, 'running', 2, 99.99, TRUE, AGO7200)",
        "(5, 'running', 5, 3.00, FALSE, AGO7200)",
    ]
    .iter()
    .map(|row| {
        let (head, secs) = row.split_once("AGO").unwrap();
        format!("{head}{})", a(secs.trim_end_matches(')').parse().unwrap()))
    })
    .collect::<Vec<_>>();
    vec![
        format!(
            "CREATE TABLE customers_{t} (id INTEGER PRIMARY KEY, email VARCHAR(100), \
             region VARCHAR(10) NOT NULL)"
        ),
        format!(
            "INSERT INTO customers_{t} (id, email, region) VALUES {}",
            customers.join(", ")
        ),
        format!(
            "CREATE TABLE orders_{t} (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, \
             status VARCHAR(20) NOT NULL, total NUMERIC(10,2) NOT NULL, updated_at {ts} NOT NULL)"
        ),
        format!(
            "INSERT INTO orders_{t} (id, customer_id, status, total, updated_at) VALUES {}",
            orders.join(", ")
        ),
        format!("CREATE TABLE payments_{t} (order_id INTEGER NOT NULL, paid_at {ts} NOT NULL)"),
        format!(
            "INSERT INTO payments_{t} (order_id, paid_at) VALUES {}",
            payments.join(", ")
        ),
        format!("CREATE TABLE migrations_{t} (version VARCHAR(50) PRIMARY KEY)"),
        format!("INSERT INTO migrations_{t} (version) VALUES ('001_init.sql'), ('002_orders.sql')"),
        format!("CREATE TABLE legacy_refs_{t} (customer_ref VARCHAR(20) NOT NULL)"),
        format!("INSERT INTO legacy_refs_{t} (customer_ref) VALUES ('1'), ('7'), ('12'), ('404')"),
        format!(
            "CREATE TABLE shipments_{t} (region VARCHAR(10) NOT NULL, customer_id INTEGER NOT NULL)"
        ),
        format!(
            "INSERT INTO shipments_{t} (region, customer_id) VALUES \
             ('eu', 1), ('eu', 2), ('us', 7), ('us', 2), ('eu', 99)"
        ),
        format!(
            "CREATE TABLE jobs_{t} (id INTEGER PRIMARY KEY, status VARCHAR(20) NOT NULL, \
             attempts INTEGER NOT NULL, cost NUMERIC(10,2) NOT NULL, retry BOOLEAN NOT NULL, \
             started_at {ts} NOT NULL)"
        ),
        format!(
            "INSERT INTO jobs_{t} (id, status, attempts, cost, retry, started_at) VALUES {}",
            jobs.join(", ")
        ),
    ]
}

fn drops(t: &str) -> Vec<String> {
    TABLES
        .iter()
        .map(|name| format!("DROP TABLE IF EXISTS {name}_{t}"))
        .collect()
}

/// Runs statements one by one on a writable connection.
async fn execute(db: Db, url: &str, statements: &[String]) -> Result<(), String> {
    macro_rules! run_all {
        ($conn:expr) => {{
            let mut conn = $conn.map_err(|e| format!("connecting to {db:?}: {e}"))?;
            for s in statements {
                sqlx::raw_sql(AssertSqlSafe(s.clone()))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| format!("{db:?}: {e}\n  in: {s}"))?;
            }
            conn.close().await.map_err(|e| e.to_string())
        }};
    }
    match db {
        Db::Postgres => run_all!(sqlx::PgConnection::connect(url).await),
        Db::Mariadb => run_all!(sqlx::MySqlConnection::connect(url).await),
        Db::Sqlite => run_all!(sqlx::SqliteConnection::connect(url).await),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The invariants, identical for every backend; only `sources` differs. `app2` is a second
/// source on the same database, so a set check across `app` and `app2` is compared in memory
/// while one on `app` alone is pushed down into the database.
fn config_yaml(sources: &str, t: &str) -> String {
    let thin = format!(
        "SELECT count(*) AS sample, sum(CASE WHEN email IS NULL THEN 1 ELSE 0 END) AS missing \
         FROM customers_{t}"
    );
    let refunded = format!("SELECT id FROM orders_{t} WHERE status = 'refunded'");
    let jobs = format!("SELECT id, status, attempts, cost, retry, started_at FROM jobs_{t}");
    format!(
        r#"# Written by crates/invar/tests/backends.rs
sources:
{sources}

invariants:
  # probe, default mode: every returned row is a violation
  - id: DEFAULT-FAIL
    title: No order has a negative total
    probe: {{ source: app, sql: "SELECT id, total FROM orders_{t} WHERE total < 0" }}
  - id: DEFAULT-PASS
    title: No order has a bogus status
    probe: {{ source: app, sql: "SELECT id FROM orders_{t} WHERE status = 'bogus'" }}

  # fail_when with a thin-data skip_when: sample 12, missing 1 (8.3%)
  - id: THIN-SKIP
    title: Emails are present (needs 100 customers)
    probe: {{ source: app, sql: "{thin}" }}
    skip_when: row.sample < 100
    fail_when: row.missing / row.sample > 0.05
  - id: THIN-FAIL
    title: At most 5% of customers lack an email
    probe: {{ source: app, sql: "{thin}" }}
    skip_when: row.sample < 5
    fail_when: row.missing / row.sample > 0.05
  - id: THIN-PASS
    title: At most 10% of customers lack an email
    probe: {{ source: app, sql: "{thin}" }}
    skip_when: row.sample < 5
    fail_when: row.missing / row.sample > 0.10
  - id: WARN
    title: Any missing email is a warning
    probe: {{ source: app, sql: "{thin}" }}
    skip_when: row.sample < 5
    fail_when: row.missing / row.sample > 0.5
    warn_when: row.missing > 0

  # every_row
  - id: EVERY-ROW
    title: Every order total is non-negative
    probe: {{ source: app, sql: "SELECT id, total FROM orders_{t}" }}
    every_row: r.total >= 0

  # on_empty
  - id: EMPTY-FAIL
    title: Refunds exist (heartbeat)
    probe: {{ source: app, sql: "{refunded}" }}
    on_empty: fail
    fail_when: count > 100
  - id: EMPTY-SKIP
    title: Refunds have ids (nothing to judge yet)
    probe: {{ source: app, sql: "{refunded}" }}
    on_empty: skip
    every_row: r.id > 0
  - id: EMPTY-VACUOUS
    title: Fewer than 100 refunds
    probe: {{ source: app, sql: "{refunded}" }}
    fail_when: count > 100

  # same with a grace window: order 6 (2 h old) is missing a payment; order 7 (60 s) and
  # payment 8 (30 s) are young
  - id: SAME-OLD
    title: Paid orders and payments pair up
    same:
      left:  {{ source: app, sql: "SELECT id, updated_at FROM orders_{t} WHERE status = 'paid'", key: id, age: updated_at }}
      right: {{ source: app, sql: "SELECT order_id, paid_at FROM payments_{t}", key: order_id, age: paid_at }}
      grace: 10m
  - id: SAME-YOUNG
    title: Paid orders (but 6) and payments pair up, young mismatches excused
    same:
      left:  {{ source: app, sql: "SELECT id, updated_at FROM orders_{t} WHERE status = 'paid' AND id <> 6", key: id, age: updated_at }}
      right: {{ source: app, sql: "SELECT order_id, paid_at FROM payments_{t}", key: order_id, age: paid_at }}
      grace: 10m
  - id: SAME-NOGRACE
    title: Paid orders (but 6) and payments pair up, no grace
    same:
      left:  {{ source: app, sql: "SELECT id, updated_at FROM orders_{t} WHERE status = 'paid' AND id <> 6", key: id, age: updated_at }}
      right: {{ source: app, sql: "SELECT order_id, paid_at FROM payments_{t}", key: order_id, age: paid_at }}

  # subset on one SQL source: pushed down as one anti-join query
  - id: SUBSET-PUSHED
    title: Every order belongs to a customer
    subset:
      each: {{ source: app, sql: "SELECT customer_id FROM orders_{t}", key: customer_id }}
      in:   {{ source: app, sql: "SELECT id FROM customers_{t}", key: id }}
  - id: SUBSET-PUSHED-PASS
    title: Every payment belongs to an order
    subset:
      each: {{ source: app, sql: "SELECT order_id FROM payments_{t}", key: order_id }}
      in:   {{ source: app, sql: "SELECT id FROM orders_{t}", key: id }}
  - id: SUBSET-CROSS
    title: Every order belongs to a customer (compared in memory)
    subset:
      each: {{ source: app,  sql: "SELECT customer_id FROM orders_{t}", key: customer_id }}
      in:   {{ source: app2, sql: "SELECT id FROM customers_{t}", key: id }}

  # subset across a values probe and SQL: not pushed down
  - id: SUBSET-VALUES
    title: Every required migration is applied
    subset:
      each: {{ values: [001_init.sql, 002_orders.sql, 003_payments.sql] }}
      in:   {{ source: app, sql: "SELECT version FROM migrations_{t}", key: version }}
  - id: SUBSET-VALUES-INT
    title: The founding customers exist (literal text vs integer column)
    subset:
      each: {{ values: [1, 7, 12] }}
      in:   {{ source: app, sql: "SELECT id FROM customers_{t}", key: id }}

  # composite keys: (us, 2) and (eu, 99) ship to no customer of that region
  - id: COMPOSITE-PUSHED
    title: Every shipment goes to a customer of its region
    subset:
      each: {{ source: app, sql: "SELECT region, customer_id FROM shipments_{t}", key: [region, customer_id] }}
      in:   {{ source: app, sql: "SELECT region, id FROM customers_{t}", key: [region, id] }}
  - id: COMPOSITE-MEM
    title: Every shipment goes to a customer of its region (compared in memory)
    subset:
      each: {{ source: app,  sql: "SELECT region, customer_id FROM shipments_{t}", key: [region, customer_id] }}
      in:   {{ source: app2, sql: "SELECT region, id FROM customers_{t}", key: [region, id] }}

  # keys compared as text: a VARCHAR of digits against an INTEGER column
  - id: TEXT-PUSHED
    title: Every legacy ref is a customer
    subset:
      each: {{ source: app, sql: "SELECT customer_ref FROM legacy_refs_{t}", key: customer_ref }}
      in:   {{ source: app, sql: "SELECT id FROM customers_{t}", key: id }}
  - id: TEXT-MEM
    title: Every legacy ref is a customer (compared in memory)
    subset:
      each: {{ source: app,  sql: "SELECT customer_ref FROM legacy_refs_{t}", key: customer_ref }}
      in:   {{ source: app2, sql: "SELECT id FROM customers_{t}", key: id }}
  - id: TEXT-REVERSE
    title: The founding customers have legacy refs (integer in VARCHAR)
    subset:
      each: {{ source: app, sql: "SELECT id FROM customers_{t} WHERE id IN (1, 7, 12)", key: id }}
      in:   {{ source: app, sql: "SELECT customer_ref FROM legacy_refs_{t}", key: customer_ref }}

  # disjoint
  - id: DISJOINT-FAIL
    title: No customer uses a blocked address
    disjoint:
      left:  {{ values: [abuse@example.com, noreply@example.com] }}
      right: {{ source: app, sql: "SELECT email AS value FROM customers_{t} WHERE email IS NOT NULL", key: value }}
  - id: DISJOINT-PASS
    title: No order is both paid and pending
    disjoint:
      left:  {{ source: app, sql: "SELECT id FROM orders_{t} WHERE status = 'paid'", key: id }}
      right: {{ source: app, sql: "SELECT id FROM orders_{t} WHERE status = 'pending'", key: id }}
  - id: DISJOINT-TEXT
    title: No legacy ref is an orphaned order's customer (text vs integer)
    disjoint:
      left:  {{ source: app, sql: "SELECT customer_ref FROM legacy_refs_{t}", key: customer_ref }}
      right: {{ source: app, sql: "SELECT customer_id FROM orders_{t} WHERE customer_id > 6", key: customer_id }}

  # types: timestamps, numerics and booleans in conditions
  - id: TYPES-EVERY
    title: No job is stuck retrying an expensive run for over an hour
    probe: {{ source: app, sql: "{jobs}" }}
    every_row: '!(r.status == "running" && r.retry && r.attempts >= 2 && r.cost > 10.5 && now - r.started_at > duration("1h"))'
  - id: TYPES-ROW-FAIL
    title: Job 4 is not stuck
    probe: {{ source: app, sql: "{jobs} WHERE id = 4" }}
    fail_when: >-
      row.retry == true && !(row.retry == false) && row.cost > 99.9 && row.cost < 100.0
      && row.attempts == 2.0 && now - row.started_at > duration("1h")
      && now - row.started_at < duration("3h")
  - id: TYPES-ROW-PASS
    title: Job 1 is young, cheap and not retrying
    probe: {{ source: app, sql: "{jobs} WHERE id = 1" }}
    fail_when: now - row.started_at > duration("1h") || row.retry || row.cost > 2.0 || row.attempts != 1.0
  - id: TYPES-INT-LITERAL
    title: Integer literals compare with numbers from probes
    probe: {{ source: app, sql: "{jobs} WHERE id = 4" }}
    fail_when: row.attempts == 2 && row.cost > 99 && count == 1
"#
    )
}

/// Set checks that are pushed down must decide as they would in memory. Kept apart from
/// `config_yaml` while two of them hit known bugs (an `error` would turn the main run's exit
/// code into 2).
fn pushdown_agreement_yaml(sources: &str, t: &str) -> String {
    format!(
        r#"# Written by crates/invar/tests/backends.rs
sources:
{sources}

invariants:
  # a trailing SQL comment must not swallow the query the pushdown wraps around it
  - id: SUBSET-COMMENT
    title: Every order belongs to a customer (SQL with a trailing comment)
    subset:
      each:
        source: app
        key: customer_id
        sql: |
          SELECT customer_id FROM orders_{t} -- every order, even test ones
      in:   {{ source: app, sql: "SELECT id FROM customers_{t}", key: id }}
  # a NUMERIC(10,2) key (5.00) against an INTEGER key (5): equal as text in memory
  - id: DECIMAL-PUSHED
    title: Order 2's total (5.00) is some order's customer id (5)
    subset:
      each: {{ source: app, sql: "SELECT total FROM orders_{t} WHERE id = 2", key: total }}
      in:   {{ source: app, sql: "SELECT customer_id FROM orders_{t}", key: customer_id }}
  - id: DECIMAL-MEM
    title: Order 2's total (5.00) is some order's customer id (5), compared in memory
    subset:
      each: {{ source: app,  sql: "SELECT total FROM orders_{t} WHERE id = 2", key: total }}
      in:   {{ source: app2, sql: "SELECT customer_id FROM orders_{t}", key: customer_id }}

  # keys differing only in case are different keys ("C1@EXAMPLE.COM" is not "c1@example.com")
  - id: CASE-PUSHED
    title: An upper-cased email is not a stored email
    subset:
      each: {{ source: app, sql: "SELECT upper(email) AS email FROM customers_{t} WHERE id = 1", key: email }}
      in:   {{ source: app, sql: "SELECT email FROM customers_{t}", key: email }}
  - id: CASE-MEM
    title: An upper-cased email is not a stored email, compared in memory
    subset:
      each: {{ source: app,  sql: "SELECT upper(email) AS email FROM customers_{t} WHERE id = 1", key: email }}
      in:   {{ source: app2, sql: "SELECT email FROM customers_{t}", key: email }}
"#
    )
}

/// The ids that pass, for the `--only` run that must exit 0.
const PASSING: &[&str] = &[
    "DEFAULT-PASS",
    "THIN-PASS",
    "EMPTY-VACUOUS",
    "SAME-YOUNG",
    "SUBSET-PUSHED-PASS",
    "SUBSET-VALUES-INT",
    "TEXT-REVERSE",
    "DISJOINT-PASS",
    "TYPES-ROW-PASS",
];

fn run_invar(dir: &Path, config: &str, env_url: Option<&str>, only: &[&str]) -> (i32, J) {
    let mut cmd = Command::cargo_bin("invar").expect("the invar binary");
    cmd.current_dir(dir)
        .args(["run", "--config", config, "--format", "json"])
        .env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120));
    if let Some(url) = env_url {
        cmd.env("INVAR_BACKEND_URL", url);
    }
    if !only.is_empty() {
        cmd.arg("--only").arg(only.join(","));
    }
    let out = cmd.output().expect("running invar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: J = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "invar did not print a JSON report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

/// Collects every mismatch, so one failing run shows all of them.
struct Checker<'a> {
    backend: &'static str,
    report: &'a J,
    problems: Vec<String>,
    /// Ids looked at; every result of the report must be.
    seen: std::collections::BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn result(&mut self, id: &str) -> Option<&'a J> {
        self.seen.insert(id.to_string());
        let r = self.report["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id));
        if r.is_none() {
            self.problems.push(format!("{id}: not in the report"));
        }
        r
    }

    fn expect(&mut self, id: &str, outcome: &str, violations_total: u64) -> Option<&'a J> {
        let r = self.result(id)?;
        if r["outcome"] != outcome || r["violations_total"] != violations_total {
            self.problems.push(format!(
                "{id}: expected {outcome} with {violations_total} violations, got {} with {} \
                 (reason: {}, measured: {}, violations: {})",
                r["outcome"], r["violations_total"], r["reason"], r["measured"], r["violations"]
            ));
        }
        Some(r)
    }

    fn measured(&mut self, id: &str, key: &str, want: J) {
        let Some(r) = self.result(id) else { return };
        if r["measured"][key] != want {
            self.problems.push(format!(
                "{id}: expected measured.{key} = {want}, got {} (measured: {})",
                r["measured"][key], r["measured"]
            ));
        }
    }

    fn pushed_down(&mut self, id: &str, want: bool) {
        let Some(r) = self.result(id) else { return };
        let got = r["measured"]["pushed_down"] == true;
        if got != want {
            self.problems.push(format!(
                "{id}: expected pushed_down = {want}, got measured {}",
                r["measured"]
            ));
        }
    }

    /// The violations' `missing` keys, as compact JSON texts, sorted.
    fn missing_keys(&mut self, id: &str, want: &[&str]) {
        let Some(r) = self.result(id) else { return };
        let mut got: Vec<String> = r["violations"]
            .as_array()
            .map(|vs| vs.iter().map(|v| v["missing"].to_string()).collect())
            .unwrap_or_default();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        if got != want {
            self.problems
                .push(format!("{id}: expected missing keys {want:?}, got {got:?}"));
        }
    }

    fn check(&mut self, cond: bool, what: &str) {
        if !cond {
            self.problems.push(what.to_string());
        }
    }

    fn finish(mut self) {
        let unchecked: Vec<String> = self.report["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str())
            .filter(|id| !self.seen.contains(*id))
            .map(str::to_string)
            .collect();
        if !unchecked.is_empty() {
            self.problems
                .push(format!("results nobody checked: {unchecked:?}"));
        }
        assert!(
            self.problems.is_empty(),
            "{}: {} problems:\n  - {}\n\nreport:\n{}",
            self.backend,
            self.problems.len(),
            self.problems.join("\n  - "),
            serde_json::to_string_pretty(self.report).unwrap()
        );
    }
}

/// Seeds, runs (all, then `--only` the passing ids), drops, and checks.
fn run_backend(
    db: Db,
    backend: &'static str,
    admin_url: &str,
    sources: &str,
    env_url: Option<&str>,
) {
    let t = unique_suffix();
    let dir = tempfile::tempdir().unwrap();
    let admin_url = admin_url.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("invar.yaml"), config_yaml(sources, &t)).unwrap();
    std::fs::write(
        dir.path().join("pushdown.yaml"),
        pushdown_agreement_yaml(sources, &t),
    )
    .unwrap();

    block_on(execute(db, &admin_url, &drops(&t))).unwrap();
    block_on(execute(db, &admin_url, &seed(db, &t))).unwrap_or_else(|e| panic!("seeding: {e}"));
    let full = run_invar(dir.path(), "invar.yaml", env_url, &[]);
    let only = run_invar(dir.path(), "invar.yaml", env_url, PASSING);
    let (_, agreement) = run_invar(dir.path(), "pushdown.yaml", env_url, &[]);
    if let Err(e) = block_on(execute(db, &admin_url, &drops(&t))) {
        eprintln!("warning: dropping the {backend} test tables failed: {e}");
    }

    let (code, report) = full;
    let mut c = Checker {
        backend,
        report: &report,
        problems: Vec::new(),
        seen: Default::default(),
    };
    c.check(code == 1, &format!("exit code: expected 1, got {code}"));
    c.check(report["exit_code"] == 1, "report.exit_code should be 1");
    c.check(report["status"] == "fail", "report.status should be fail");
    c.check(
        report["automation_error"] == false && report["counts"]["error"] == 0,
        "no invariant should be an automation error",
    );
    c.check(
        report["sources_unavailable"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "no source should be unavailable",
    );

    c.expect("DEFAULT-FAIL", "fail", 2);
    c.expect("DEFAULT-PASS", "pass", 0);

    c.expect("THIN-SKIP", "skip", 0);
    c.expect("THIN-FAIL", "fail", 1);
    c.measured("THIN-FAIL", "sample", J::from(12));
    c.expect("THIN-PASS", "pass", 0);
    c.expect("WARN", "warn", 0);

    c.expect("EVERY-ROW", "fail", 2);

    c.expect("EMPTY-FAIL", "fail", 1);
    c.expect("EMPTY-SKIP", "skip", 0);
    if let Some(r) = c.expect("EMPTY-VACUOUS", "pass", 0) {
        let vacuous = r["vacuous"] == true;
        c.check(vacuous, "EMPTY-VACUOUS: a pass over no rows is vacuous");
    }

    c.expect("SAME-OLD", "fail", 1);
    c.measured("SAME-OLD", "only_left", J::from(1));
    c.measured("SAME-OLD", "only_right", J::from(0));
    c.measured("SAME-OLD", "within_grace", J::from(2));
    c.expect("SAME-YOUNG", "pass", 0);
    c.measured("SAME-YOUNG", "within_grace", J::from(2));
    c.expect("SAME-NOGRACE", "fail", 2);

    c.expect("SUBSET-PUSHED", "fail", 2);
    c.pushed_down("SUBSET-PUSHED", true);
    c.missing_keys(
        "SUBSET-PUSHED",
        &[r#"{"customer_id":98}"#, r#"{"customer_id":99}"#],
    );
    c.expect("SUBSET-PUSHED-PASS", "pass", 0);
    c.pushed_down("SUBSET-PUSHED-PASS", true);
    c.expect("SUBSET-CROSS", "fail", 2);
    c.pushed_down("SUBSET-CROSS", false);
    c.missing_keys(
        "SUBSET-CROSS",
        &[r#"{"customer_id":98}"#, r#"{"customer_id":99}"#],
    );

    c.expect("SUBSET-VALUES", "fail", 1);
    c.pushed_down("SUBSET-VALUES", false);
    c.missing_keys("SUBSET-VALUES", &[r#"{"value":"003_payments.sql"}"#]);
    c.expect("SUBSET-VALUES-INT", "pass", 0);
    c.pushed_down("SUBSET-VALUES-INT", false);

    c.expect("COMPOSITE-PUSHED", "fail", 2);
    c.pushed_down("COMPOSITE-PUSHED", true);
    c.missing_keys(
        "COMPOSITE-PUSHED",
        &[
            r#"{"region":"eu","customer_id":99}"#,
            r#"{"region":"us","customer_id":2}"#,
        ],
    );
    c.expect("COMPOSITE-MEM", "fail", 2);
    c.pushed_down("COMPOSITE-MEM", false);
    c.missing_keys(
        "COMPOSITE-MEM",
        &[
            r#"{"region":"eu","customer_id":99}"#,
            r#"{"region":"us","customer_id":2}"#,
        ],
    );

    c.expect("TEXT-PUSHED", "fail", 1);
    c.pushed_down("TEXT-PUSHED", true);
    c.missing_keys("TEXT-PUSHED", &[r#"{"customer_ref":"404"}"#]);
    c.expect("TEXT-MEM", "fail", 1);
    c.pushed_down("TEXT-MEM", false);
    c.missing_keys("TEXT-MEM", &[r#"{"customer_ref":"404"}"#]);
    c.expect("TEXT-REVERSE", "pass", 0);
    c.pushed_down("TEXT-REVERSE", true);
    c.measured("TEXT-REVERSE", "each_keys", J::from(3));

    c.expect("DISJOINT-FAIL", "fail", 1);
    c.expect("DISJOINT-PASS", "pass", 0);
    // legacy refs 1, 7, 12, 404 against order customers 7, 8, 9, 10, 99, 98: only 7.
    c.expect("DISJOINT-TEXT", "fail", 1);

    c.expect("TYPES-EVERY", "fail", 2);
    if let Some(r) = c.result("TYPES-EVERY") {
        let mut ids: Vec<String> = r["violations"]
            .as_array()
            .map(|vs| vs.iter().map(|v| v["id"].to_string()).collect())
            .unwrap_or_default();
        ids.sort();
        c.check(
            ids == ["2", "4"],
            &format!("TYPES-EVERY: expected jobs 2 and 4 to break it, got {ids:?}"),
        );
    }
    c.expect("TYPES-ROW-FAIL", "fail", 1);
    c.expect("TYPES-ROW-PASS", "pass", 0);
    c.expect("TYPES-INT-LITERAL", "fail", 1);

    let (only_code, only_report) = only;
    c.check(
        only_code == 0,
        &format!(
            "--only of passing ids: expected exit 0, got {only_code} (outcomes: {:?})",
            only_report["results"].as_array().map(|rs| rs
                .iter()
                .map(|r| format!("{}={}", r["id"], r["outcome"]))
                .collect::<Vec<_>>())
        ),
    );
    c.check(
        only_report["counts"]["pass"] == PASSING.len() as u64,
        "--only: every selected invariant passes",
    );
    c.finish();

    let mut c = Checker {
        backend,
        report: &agreement,
        problems: Vec::new(),
        seen: Default::default(),
    };
    c.expect("DECIMAL-MEM", "pass", 0);
    c.pushed_down("DECIMAL-MEM", false);
    // TODO(issue 2): the subset pushdown pastes the user's SQL into `WITH invar_e AS (…)` on one
    // line, so a SQL ending in a `-- comment` comments out the rest of the wrapping query:
    // `error` (syntax error) on every backend, where the same check in memory fails with 2.
    // Regression: a trailing `-- comment` in pushed-down SQL swallowed the wrapping query.
    c.expect("SUBSET-COMMENT", "fail", 2);
    c.pushed_down("SUBSET-COMMENT", true);
    // Regressions: pushed down, keys once compared as the database's CAST(… AS TEXT), so a
    // NUMERIC 5.00 ('5.00') missed the INTEGER 5, and MariaDB's case-insensitive collation
    // matched "C1@EXAMPLE.COM" with "c1@example.com" (a false pass). The pushdown must never
    // change the verdict.
    c.expect("DECIMAL-PUSHED", "pass", 0);
    c.pushed_down("DECIMAL-PUSHED", true);
    c.expect("CASE-MEM", "fail", 1);
    c.pushed_down("CASE-MEM", false);
    c.expect("CASE-PUSHED", "fail", 1);
    c.pushed_down("CASE-PUSHED", true);
    c.finish();
}

#[test]
fn postgres() {
    let url = pg_url();
    if !reachable("PostgreSQL", &url, START_PG) {
        return;
    }
    // The URL comes from the environment, as a secret would.
    let sources = "  app:  { type: postgres, url: \"${INVAR_BACKEND_URL}\", timeout: 20s }\n  \
                   app2: { type: postgres, url: \"${INVAR_BACKEND_URL}\", max_connections: 1 }";
    run_backend(Db::Postgres, "postgres", &url, sources, Some(&url));
}

#[test]
fn mariadb() {
    let url = mysql_url();
    if !reachable("MariaDB", &url, START_MARIADB) {
        return;
    }
    let sources = "  app:  { type: mysql, url: \"${INVAR_BACKEND_URL}\", timeout: 20s }\n  \
                   app2: { type: mysql, url: \"${INVAR_BACKEND_URL}\", max_connections: 1 }";
    run_backend(Db::Mariadb, "mariadb", &url, sources, Some(&url));
}

#[test]
fn sqlite() {
    // Relative to the config file's directory; opened read-only by invar.
    let sources = "  app:  { type: sqlite, path: app.db, timeout: 20s }\n  \
                   app2: { type: sqlite, path: app.db, max_connections: 1 }";
    run_backend(
        Db::Sqlite,
        "sqlite",
        "sqlite://{dir}/app.db?mode=rwc",
        sources,
        None,
    );
}

/// Distinct probes run concurrently, but never more at once per source than its pool allows.
#[test]
fn probes_run_concurrently_bounded_per_source() {
    let url = pg_url();
    if !reachable("PostgreSQL", &url, START_PG) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from(
        "sources:\n  two: { type: postgres, url: \"${INVAR_BACKEND_URL}\", max_connections: 2 }\n  \
         one: { type: postgres, url: \"${INVAR_BACKEND_URL}\", max_connections: 1 }\ninvariants:\n",
    );
    // Four distinct 0.5 s probes per source.
    for (src, n) in [("two", 4), ("one", 4)] {
        for i in 0..n {
            yaml.push_str(&format!(
                "  - id: {src}-{i}\n    title: sleeps\n    probe: {{ source: {src}, sql: \"SELECT n FROM (SELECT {i} AS n, pg_sleep(0.5)::text AS s) x WHERE x.s = 'never'\" }}\n"
            ));
        }
    }
    std::fs::write(dir.path().join("invar.yaml"), yaml).expect("write config");
    let t0 = std::time::Instant::now();
    let (code, report) = run_invar(
        dir.path(),
        "invar.yaml",
        Some(&url),
        &["two-0", "two-1", "two-2", "two-3"],
    );
    let two = t0.elapsed();
    assert_eq!(code, 0, "{report}");
    let t0 = std::time::Instant::now();
    let (code, report) = run_invar(
        dir.path(),
        "invar.yaml",
        Some(&url),
        &["one-0", "one-1", "one-2", "one-3"],
    );
    let one = t0.elapsed();
    assert_eq!(code, 0, "{report}");
    // Two at a time: two rounds of 0.5 s. One at a time: four rounds.
    assert!(
        two >= Duration::from_millis(1000),
        "max_connections 2 ran more than 2 at once: {two:?}"
    );
    assert!(
        two < Duration::from_millis(1900),
        "max_connections 2 did not run in parallel: {two:?}"
    );
    assert!(
        one >= Duration::from_millis(2000),
        "max_connections 1 ran in parallel: {one:?}"
    );
}
