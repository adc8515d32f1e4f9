//! The SQL sources against the real servers on loopback: PostgreSQL (127.0.0.1:5432, user
//! `postgres`, trust auth, database `test`), MariaDB/MySQL (127.0.0.1:3306, `root` without a
//! password, database `test`) and SQLite in a temporary file.
//!
//! Override the URLs with `INVAR_TEST_POSTGRES_URL` / `INVAR_TEST_MYSQL_URL`. When a server is
//! down, the test fails under `CI` and is skipped (loudly) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use invar_core::{Secret, SqlSource, SqliteSource, Table, Value};
use invar_sources::sql::{Dialect, SqlPool};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn pg_url() -> String {
    std::env::var("INVAR_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_URL.to_string())
}

fn mysql_url() -> String {
    std::env::var("INVAR_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_URL.to_string())
}

/// `host:port` of a URL with a numeric host.
fn socket_addr(url: &str) -> Option<SocketAddr> {
    let authority = url.split("://").nth(1)?.split(['/', '?']).next()?;
    authority.rsplit('@').next()?.parse().ok()
}

/// Whether the server at `url` answers on TCP. Under `CI` a down server fails the test.
fn reachable(url: &str, how_to_start: &str) -> bool {
    invar_testkit::url_up(&Secret::new(url).redacted(), url, how_to_start)
}

const START_PG: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const START_MARIADB: &str =
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd";

fn sql_source(url: &str, read_only: bool, timeout: Duration) -> SqlSource {
    SqlSource {
        url: Secret::new(url),
        read_only,
        timeout,
        max_connections: 2,
    }
}

fn sqlite_source(path: &Path, read_only: bool, timeout: Duration) -> SqliteSource {
    SqliteSource {
        path: path.to_path_buf(),
        read_only,
        timeout,
        max_connections: 2,
    }
}

/// A table name no other run (or concurrent test) uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("invar_{prefix}_{}_{nanos}", std::process::id())
}

const SECS_30: Duration = Duration::from_secs(30);

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Value {
    Value::Timestamp(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
}

fn date(y: i32, m: u32, d: u32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn json(s: &str) -> Value {
    Value::from_json(&serde_json::from_str(s).unwrap())
}

/// Compares column by column so a failure names the column.
fn assert_row(t: &Table, row: usize, expected: &[(&str, Value)]) {
    let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(t.columns, names, "column names");
    for (i, (name, want)) in expected.iter().enumerate() {
        assert_eq!(&t.rows[row][i], want, "row {row}, column `{name}`");
    }
}

fn all_null_but_id(t: &Table, row: usize) {
    for (i, v) in t.rows[row].iter().enumerate().skip(1) {
        assert_eq!(v, &Value::Null, "row {row}, column `{}`", t.columns[i]);
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn postgres_decodes_every_common_type() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let table = unique("pg_types");
    let rw = SqlPool::connect_postgres(&sql_source(&pg_url(), false, SECS_30))
        .await
        .unwrap();
    rw.query(&format!(
        "CREATE TYPE {table}_mood AS ENUM ('happy', 'sad');
         CREATE TABLE {table} (
            id int PRIMARY KEY, mood {table}_mood, i int4, s int2, b bigint, f float8, r real, n numeric(12,3),
            ok bool, t text, v varchar(20), c char(3), ts timestamp, tz timestamptz, d date,
            tm time, u uuid, j json, jb jsonb, ai int[], at text[], af float8[], ab bool[],
            by bytea);
         INSERT INTO {table} VALUES (1, 'sad', 42, -7, 9007199254740993, 1.5, 0.1, 1234.5,
            true, 'héllo', 'varying', 'ab', '2026-03-01 10:00:00', '2026-03-01 10:00:00+09',
            '2026-03-01', '10:30:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            '{{\"a\": [1, 2.5, \"x\", null]}}', '{{\"k\": {{\"n\": 3}}}}',
            '{{1,NULL,3}}', '{{\"a,b\",\"c\\\"d\",NULL}}', '{{1.5,-2}}', '{{t,f}}', 'bytes');
         INSERT INTO {table} (id) VALUES (2);"
    ))
    .await
    .unwrap();

    let ro = SqlPool::connect_postgres(&sql_source(&pg_url(), true, SECS_30))
        .await
        .unwrap();
    assert_eq!(ro.dialect(), Dialect::Postgres);
    let t = ro
        .query(&format!("SELECT * FROM {table} ORDER BY id"))
        .await;
    rw.query(&format!("DROP TABLE {table}; DROP TYPE {table}_mood"))
        .await
        .unwrap();
    let t = t.unwrap();

    assert_eq!(t.len(), 2);
    assert_row(
        &t,
        0,
        &[
            ("id", Value::Int(1)),
            // A user-defined type: its text.
            ("mood", text("sad")),
            ("i", Value::Int(42)),
            ("s", Value::Int(-7)),
            ("b", Value::Int(9_007_199_254_740_993)),
            ("f", Value::Float(1.5)),
            ("r", Value::Float(0.1)),
            ("n", Value::Float(1234.5)),
            ("ok", Value::Bool(true)),
            ("t", text("héllo")),
            ("v", text("varying")),
            // char(n) padding is dropped, as Postgres' own `::text` does (keys compare alike).
            ("c", text("ab")),
            ("ts", ts(2026, 3, 1, 10, 0, 0)),
            ("tz", ts(2026, 3, 1, 1, 0, 0)),
            ("d", date(2026, 3, 1)),
            ("tm", text("10:30:00")),
            ("u", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            ("j", json(r#"{"a": [1, 2.5, "x", null]}"#)),
            ("jb", json(r#"{"k": {"n": 3}}"#)),
            (
                "ai",
                Value::List(vec![Value::Int(1), Value::Null, Value::Int(3)]),
            ),
            (
                "at",
                Value::List(vec![text("a,b"), text("c\"d"), Value::Null]),
            ),
            (
                "af",
                Value::List(vec![Value::Float(1.5), Value::Float(-2.0)]),
            ),
            (
                "ab",
                Value::List(vec![Value::Bool(true), Value::Bool(false)]),
            ),
            ("by", text("bytes")),
        ],
    );
    all_null_but_id(&t, 1);
}

#[tokio::test]
async fn postgres_decodes_expressions() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let pool = SqlPool::connect_postgres(&sql_source(&pg_url(), true, SECS_30))
        .await
        .unwrap();
    let t = pool
        .query(
            "SELECT 1 AS one, count(*) AS n, 'x'::text AS s, NULL AS nothing, 2.50::numeric AS dec,
                    123456789012345678901234567890.5::numeric AS huge, now() > '2020-01-01' AS recent,
                    ARRAY['a', 'b'] AS arr, '2026-03-01'::date + 1 AS next, '\\xff00'::bytea AS raw,
                    'abc'::name AS nm, '{{1,2},{3,NULL}}'::int[] AS grid, '{}'::text[] AS none,
                    ARRAY['2026-03-01 10:00:00+00'::timestamptz] AS stamps,
                    ARRAY['{\"a\": 1}'::jsonb] AS docs, '1 day'::interval AS span
             FROM generate_series(1, 3)",
        )
        .await
        .unwrap();
    assert_row(
        &t,
        0,
        &[
            ("one", Value::Int(1)),
            ("n", Value::Int(3)),
            ("s", text("x")),
            ("nothing", Value::Null),
            ("dec", Value::Float(2.5)),
            (
                "huge",
                Value::Float(123_456_789_012_345_678_901_234_567_890.5),
            ),
            ("recent", Value::Bool(true)),
            ("arr", Value::List(vec![text("a"), text("b")])),
            ("next", date(2026, 3, 2)),
            ("raw", text("0xff00")),
            ("nm", text("abc")),
            (
                "grid",
                Value::List(vec![
                    Value::List(vec![Value::Int(1), Value::Int(2)]),
                    Value::List(vec![Value::Int(3), Value::Null]),
                ]),
            ),
            ("none", Value::List(vec![])),
            ("stamps", Value::List(vec![ts(2026, 3, 1, 10, 0, 0)])),
            ("docs", Value::List(vec![json(r#"{"a": 1}"#)])),
            ("span", text("1 day")),
        ],
    );
}

#[tokio::test]
async fn postgres_empty_results_keep_column_names_and_multi_statement_takes_the_last_rows() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let pool = SqlPool::connect_postgres(&sql_source(&pg_url(), true, SECS_30))
        .await
        .unwrap();
    let t = pool
        .query("SELECT 1 AS a, 'x' AS b WHERE false")
        .await
        .unwrap();
    assert_eq!(t.columns, ["a", "b"]);
    assert!(t.is_empty());

    let t = pool
        .query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        .await
        .unwrap();
    assert_eq!(t.columns, ["b", "c"]);
    assert_eq!(t.rows, [[Value::Int(2), Value::Int(3)]]);

    // The last statement returned no rows: the rows of the one before it.
    let t = pool
        .query("SELECT 1 AS a; SELECT 2 AS b WHERE false")
        .await
        .unwrap();
    assert_eq!(t.columns, ["a"]);
    assert_eq!(t.rows, [[Value::Int(1)]]);
}

#[tokio::test]
async fn postgres_read_only_rejects_writes() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let table = unique("pg_ro");
    let rw = SqlPool::connect_postgres(&sql_source(&pg_url(), false, SECS_30))
        .await
        .unwrap();
    rw.query(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();

    let ro = SqlPool::connect_postgres(&sql_source(&pg_url(), true, SECS_30))
        .await
        .unwrap();
    let insert = ro.query(&format!("INSERT INTO {table} VALUES (1)")).await;
    let create = ro.query(&format!("CREATE TABLE {table}_x (id int)")).await;
    let count = ro
        .query(&format!("SELECT count(*) AS n FROM {table}"))
        .await;
    rw.query(&format!("DROP TABLE {table}")).await.unwrap();

    let err = insert.unwrap_err();
    assert!(err.contains("read-only transaction"), "{err}");
    assert!(
        err.starts_with("query failed on postgres://postgres@127.0.0.1:5432/test"),
        "{err}"
    );
    let err = create.unwrap_err();
    assert!(err.contains("read-only transaction"), "{err}");
    assert_eq!(count.unwrap().rows, [[Value::Int(0)]]);
}

#[tokio::test]
async fn postgres_statement_timeout() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let pool = SqlPool::connect_postgres(&sql_source(&pg_url(), true, Duration::from_secs(1)))
        .await
        .unwrap();
    let started = Instant::now();
    let err = pool.query("SELECT pg_sleep(5)").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("statement timed out after 1s"), "{err}");
    // The pool is still usable.
    assert_eq!(
        pool.query("SELECT 1 AS one").await.unwrap().rows,
        [[Value::Int(1)]]
    );
}

#[tokio::test]
async fn postgres_size_is_positive() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let pool = SqlPool::connect_postgres(&sql_source(&pg_url(), true, SECS_30))
        .await
        .unwrap();
    assert!(pool.size_bytes().await.unwrap() > 0);
}

#[tokio::test]
async fn postgres_query_errors_never_show_the_password() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    // Trust auth ignores the password, so the connection works and the query fails.
    let url = pg_url().replacen("postgres@", "postgres:topsecretpw@", 1);
    if !url.contains("topsecretpw") {
        return;
    }
    let pool = SqlPool::connect_postgres(&sql_source(&url, true, SECS_30))
        .await
        .unwrap();
    let err = pool
        .query("SELECT * FROM \"topsecretpw\"")
        .await
        .unwrap_err();
    assert!(!err.contains("topsecretpw"), "{err}");
    assert!(err.contains("relation \"***\" does not exist"), "{err}");
    assert!(err.contains("postgres://postgres:***@"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Connection errors: no server needed (port 1 is closed).

#[tokio::test]
async fn closed_port_errors_are_redacted() {
    let url = "postgres://app:hunter2secret@127.0.0.1:1/db";
    let err = SqlPool::connect_postgres(&sql_source(url, true, SECS_30))
        .await
        .unwrap_err();
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(!err.contains(url), "{err}");
    assert!(
        err.starts_with("cannot connect to postgres://app:***@127.0.0.1:1/db: "),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");

    let url = "mysql://app:hunter2secret@127.0.0.1:1/db";
    let err = SqlPool::connect_mysql(&sql_source(url, true, SECS_30))
        .await
        .unwrap_err();
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(!err.contains(url), "{err}");
    assert!(
        err.starts_with("cannot connect to mysql://app:***@127.0.0.1:1/db: "),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn invalid_urls_are_redacted() {
    let url = "postgres://app:hunter2secret@127.0.0.1:notaport/db";
    let err = SqlPool::connect_postgres(&sql_source(url, true, SECS_30))
        .await
        .unwrap_err();
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(err.starts_with("invalid postgres url"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// MariaDB / MySQL

#[tokio::test]
async fn mysql_decodes_every_common_type() {
    if !reachable(&mysql_url(), START_MARIADB) {
        return;
    }
    let table = unique("my_types");
    let rw = SqlPool::connect_mysql(&sql_source(&mysql_url(), false, SECS_30))
        .await
        .unwrap();
    rw.query(&format!(
        "CREATE TABLE {table} (
            id int PRIMARY KEY, ti tinyint, si smallint, i int, b bigint, ub bigint unsigned,
            ui int unsigned, f float, d double, n decimal(12,3), ok boolean, t text,
            v varchar(20), c char(3), ts timestamp NULL DEFAULT NULL, dt datetime, dd date,
            tm time, u char(36), j json, e enum('red','green'), bl blob, y year, bt bit(8))"
    ))
    .await
    .unwrap();
    rw.query(&format!(
        "INSERT INTO {table} VALUES (1, -8, 300, 42, 9007199254740993, 18446744073709551615,
            4000000000, 1.5, 0.1, 1234.5, true, 'héllo', 'varying', 'ab',
            '2026-03-01 10:00:00', '2026-03-01 11:30:00', '2026-03-01', '10:30:00',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2.5, \"x\", null]}}', 'green',
            'bytes', 2026, b'00000101');
         INSERT INTO {table} (id) VALUES (2)"
    ))
    .await
    .unwrap();

    let ro = SqlPool::connect_mysql(&sql_source(&mysql_url(), true, SECS_30))
        .await
        .unwrap();
    assert_eq!(ro.dialect(), Dialect::Mysql);
    let t = ro
        .query(&format!("SELECT * FROM {table} ORDER BY id"))
        .await;
    let json_col = ro
        .query(&format!(
            "SELECT JSON_EXTRACT(j, '$.a') AS a FROM {table} WHERE id = 1"
        ))
        .await;
    rw.query(&format!("DROP TABLE {table}")).await.unwrap();
    let t = t.unwrap();

    assert_eq!(t.len(), 2);
    assert_row(
        &t,
        0,
        &[
            ("id", Value::Int(1)),
            ("ti", Value::Int(-8)),
            ("si", Value::Int(300)),
            ("i", Value::Int(42)),
            ("b", Value::Int(9_007_199_254_740_993)),
            ("ub", Value::Float(18_446_744_073_709_551_615u64 as f64)),
            ("ui", Value::Int(4_000_000_000)),
            ("f", Value::Float(1.5)),
            ("d", Value::Float(0.1)),
            ("n", Value::Float(1234.5)),
            ("ok", Value::Bool(true)),
            ("t", text("héllo")),
            ("v", text("varying")),
            ("c", text("ab")),
            ("ts", ts(2026, 3, 1, 10, 0, 0)),
            ("dt", ts(2026, 3, 1, 11, 30, 0)),
            ("dd", date(2026, 3, 1)),
            ("tm", text("10:30:00")),
            ("u", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            // MariaDB's JSON is LONGTEXT: the text as stored (MySQL's JSON type is parsed).
            ("j", text(r#"{"a": [1, 2.5, "x", null]}"#)),
            ("e", text("green")),
            ("bl", text("bytes")),
            ("y", Value::Int(2026)),
            ("bt", Value::Int(5)),
        ],
    );
    all_null_but_id(&t, 1);
    let a = json_col.unwrap();
    assert_eq!(a.columns, ["a"]);
    assert_eq!(a.rows[0][0], text(r#"[1, 2.5, "x", null]"#));
}

#[tokio::test]
async fn mysql_decodes_expressions_and_empty_results() {
    if !reachable(&mysql_url(), START_MARIADB) {
        return;
    }
    let pool = SqlPool::connect_mysql(&sql_source(&mysql_url(), true, SECS_30))
        .await
        .unwrap();
    let t = pool
        .query(
            "SELECT 1 AS one, 'x' AS s, NULL AS nothing, 2.50 AS dec_, 1.5e0 AS dbl, 1 = 1 AS yes,
                    CAST('2026-03-01 10:00:00' AS DATETIME) AS at, CURRENT_DATE > '2020-01-01' AS recent",
        )
        .await
        .unwrap();
    assert_row(
        &t,
        0,
        &[
            ("one", Value::Int(1)),
            ("s", text("x")),
            ("nothing", Value::Null),
            ("dec_", Value::Float(2.5)),
            ("dbl", Value::Float(1.5)),
            ("yes", Value::Int(1)),
            ("at", ts(2026, 3, 1, 10, 0, 0)),
            ("recent", Value::Int(1)),
        ],
    );

    let t = pool
        .query("SELECT 1 AS a, 'x' AS b FROM DUAL WHERE 1 = 0")
        .await
        .unwrap();
    assert_eq!(t.columns, ["a", "b"]);
    assert!(t.is_empty());

    let t = pool
        .query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        .await
        .unwrap();
    assert_eq!(t.columns, ["b", "c"]);
    assert_eq!(t.rows, [[Value::Int(2), Value::Int(3)]]);
}

#[tokio::test]
async fn mysql_read_only_rejects_writes() {
    if !reachable(&mysql_url(), START_MARIADB) {
        return;
    }
    let table = unique("my_ro");
    let rw = SqlPool::connect_mysql(&sql_source(&mysql_url(), false, SECS_30))
        .await
        .unwrap();
    rw.query(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();

    let ro = SqlPool::connect_mysql(&sql_source(&mysql_url(), true, SECS_30))
        .await
        .unwrap();
    let insert = ro.query(&format!("INSERT INTO {table} VALUES (1)")).await;
    let count = ro
        .query(&format!("SELECT count(*) AS n FROM {table}"))
        .await;
    rw.query(&format!("DROP TABLE {table}")).await.unwrap();

    let err = insert.unwrap_err();
    assert!(
        err.to_lowercase().contains("read only transaction"),
        "{err}"
    );
    assert!(
        err.starts_with("query failed on mysql://root@127.0.0.1:3306/test"),
        "{err}"
    );
    assert_eq!(count.unwrap().rows, [[Value::Int(0)]]);
}

#[tokio::test]
async fn mysql_statement_timeout() {
    if !reachable(&mysql_url(), START_MARIADB) {
        return;
    }
    let pool = SqlPool::connect_mysql(&sql_source(&mysql_url(), true, Duration::from_secs(1)))
        .await
        .unwrap();
    let started = Instant::now();
    let err = pool.query("SELECT SLEEP(5)").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("statement timed out after 1s"), "{err}");
    assert_eq!(
        pool.query("SELECT 1 AS one").await.unwrap().rows,
        [[Value::Int(1)]]
    );
}

#[tokio::test]
async fn mysql_size_is_positive() {
    if !reachable(&mysql_url(), START_MARIADB) {
        return;
    }
    let table = unique("my_size");
    let rw = SqlPool::connect_mysql(&sql_source(&mysql_url(), false, SECS_30))
        .await
        .unwrap();
    rw.query(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let size = rw.size_bytes().await;
    rw.query(&format!("DROP TABLE {table}")).await.unwrap();
    assert!(size.unwrap() > 0);
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// An empty file is an empty SQLite database.
fn sqlite_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("probe.db");
    std::fs::write(&path, b"").unwrap();
    path
}

#[tokio::test]
async fn sqlite_decodes_every_common_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_file(&dir);
    let rw = SqlPool::connect_sqlite(&sqlite_source(&path, false, SECS_30))
        .await
        .unwrap();
    rw.query(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, i INT, b BIGINT, f REAL, n NUMERIC, ok BOOLEAN,
            tx TEXT, v VARCHAR(20), ts DATETIME, tz TIMESTAMP, d DATE, j JSON, bl BLOB, anything);
         INSERT INTO t VALUES (1, 42, 9007199254740993, 1.5, 1234.5, 1, 'héllo', 'varying',
            '2026-03-01 10:00:00', '2026-03-01T10:00:00+09:00', '2026-03-01', '{\"a\": 1}',
            x'ff00', 'free');
         INSERT INTO t (id) VALUES (2);",
    )
    .await
    .unwrap();

    let ro = SqlPool::connect_sqlite(&sqlite_source(&path, true, SECS_30))
        .await
        .unwrap();
    assert_eq!(ro.dialect(), Dialect::Sqlite);
    let t = ro.query("SELECT * FROM t ORDER BY id").await.unwrap();
    assert_eq!(t.len(), 2);
    assert_row(
        &t,
        0,
        &[
            ("id", Value::Int(1)),
            ("i", Value::Int(42)),
            ("b", Value::Int(9_007_199_254_740_993)),
            ("f", Value::Float(1.5)),
            ("n", Value::Float(1234.5)),
            ("ok", Value::Bool(true)),
            ("tx", text("héllo")),
            ("v", text("varying")),
            ("ts", ts(2026, 3, 1, 10, 0, 0)),
            ("tz", ts(2026, 3, 1, 1, 0, 0)),
            ("d", date(2026, 3, 1)),
            ("j", text(r#"{"a": 1}"#)),
            ("bl", text("0xff00")),
            ("anything", text("free")),
        ],
    );
    all_null_but_id(&t, 1);

    let t = ro
        .query("SELECT count(*) AS n, 1.5 AS f, 'x' AS s, NULL AS nul, max(ts) AS latest FROM t")
        .await
        .unwrap();
    assert_row(
        &t,
        0,
        &[
            ("n", Value::Int(2)),
            ("f", Value::Float(1.5)),
            ("s", text("x")),
            ("nul", Value::Null),
            // An expression has no declared type: the text as it is.
            ("latest", text("2026-03-01 10:00:00")),
        ],
    );

    let t = ro
        .query("SELECT id, tx FROM t WHERE id > 100")
        .await
        .unwrap();
    assert_eq!(t.columns, ["id", "tx"]);
    assert!(t.is_empty());
    assert!(ro.size_bytes().await.unwrap() > 0);
}

#[tokio::test]
async fn sqlite_read_only_rejects_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_file(&dir);
    let rw = SqlPool::connect_sqlite(&sqlite_source(&path, false, SECS_30))
        .await
        .unwrap();
    rw.query("CREATE TABLE t (id INTEGER)").await.unwrap();

    let ro = SqlPool::connect_sqlite(&sqlite_source(&path, true, SECS_30))
        .await
        .unwrap();
    let err = ro.query("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert!(err.contains("readonly database"), "{err}");
    let err = ro.query("CREATE TABLE u (id INTEGER)").await.unwrap_err();
    assert!(err.contains("readonly database"), "{err}");
    assert_eq!(
        ro.query("SELECT count(*) AS n FROM t").await.unwrap().rows,
        [[Value::Int(0)]]
    );
}

#[tokio::test]
async fn sqlite_missing_file_is_an_error_and_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    for read_only in [true, false] {
        let err = SqlPool::connect_sqlite(&sqlite_source(&path, read_only, SECS_30))
            .await
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("missing.db"), "{err}");
        assert!(!path.exists());
    }
}

#[tokio::test]
async fn sqlite_statement_timeout_interrupts_a_runaway_query() {
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_file(&dir);
    let pool = SqlPool::connect_sqlite(&sqlite_source(&path, true, Duration::from_secs(1)))
        .await
        .unwrap();
    let started = Instant::now();
    let err = pool
        .query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("statement timed out after 1s"), "{err}");
    assert_eq!(
        pool.query("SELECT 1 AS one").await.unwrap().rows,
        [[Value::Int(1)]]
    );
}

#[tokio::test]
async fn sqlite_file_removed_after_connect_fails_at_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = sqlite_file(&dir);
    let pool = SqlPool::connect_sqlite(&sqlite_source(&path, true, SECS_30))
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = pool.query("SELECT 1").await.unwrap_err();
    assert!(
        err.starts_with(&format!("cannot connect to {}: ", path.display())),
        "{err}"
    );
    assert!(!path.exists());
}

/// A loopback TCP proxy to `upstream` that can be shut, so the server "goes away" while the
/// pool lives.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn postgres_gone_after_connect_names_the_cause_at_first_use() {
    if !reachable(&pg_url(), START_PG) {
        return;
    }
    let (addr, task) = proxy(socket_addr(&pg_url()).unwrap()).await;
    let url = format!("postgres://postgres:hunter2secret@{addr}/test");
    let pool = SqlPool::connect_postgres(&sql_source(&url, true, Duration::from_secs(1)))
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    let started = Instant::now();
    let err = pool.query("SELECT 1").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(
        err.starts_with(&format!(
            "cannot connect to postgres://postgres:***@{addr}/test: "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}
