//! One true answer whatever the execution path: the same `subset` checks over the same data,
//! once pushed down into the database (both sides on source `app`) and once compared in memory
//! (the `in:` side on `app2`, a second source with the same URL), must give identical outcomes,
//! reasons, counts and violations — for every pair of key column types the backend has.
//!
//! The data are random (a seeded generator, several seeds per backend) but drawn from pools
//! built to collide across types: `5` / `5.00` / `'5'` / `'5.00'`, `'C1'` in `char(6)` and
//! `text`, case and trailing spaces, uuids in both forms, timestamps at the same instant in
//! different zones, booleans against `'true'`, integers past 2^53.
//!
//! Real PostgreSQL and MariaDB on loopback (fail loudly under `CI`), SQLite in a temp dir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use sqlx::{AssertSqlSafe, Connection};
use std::time::Duration;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const SEEDS: u64 = 4;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Db {
    Postgres,
    Mariadb,
    Sqlite,
}

/// A key column type and the SQL literals its rows are drawn from.
struct KeyType {
    name: &'static str,
    sql_type: &'static str,
    pool: &'static [&'static str],
}

const TEXTS: &[&str] = &[
    "'5'",
    "'5.00'",
    "'5.5'",
    "'7'",
    "'42'",
    "'C1'",
    "'C1  '",
    "'c1'",
    "'a'",
    "'A'",
    "'é'",
    "'true'",
    "'false'",
    "'2026-01-01'",
    "'2026-01-01T10:00:00Z'",
    "'2026-01-01T10:00:00.500Z'",
    "'9007199254740993'",
    "'6f1c3ad8-2b4e-4c51-9d0e-3f7a1b2c4d5e'",
];
const INTS: &[&str] = &["-1", "0", "1", "5", "7", "42", "9007199254740993"];
const DECIMALS: &[&str] = &[
    "5.00",
    "5.5",
    "0.10",
    "7",
    "42.00",
    "-1",
    "2.25",
    "9007199254740993",
];
const FLOATS: &[&str] = &["5", "5.5", "0.1", "7", "0.00001", "42"];
const CHARS: &[&str] = &["'C1'", "'c1'", "'a'", "'5'", "'7'", "'true'", "'é'"];

fn types(db: Db) -> Vec<KeyType> {
    let k = |name, sql_type, pool| KeyType {
        name,
        sql_type,
        pool,
    };
    match db {
        Db::Postgres => vec![
            k("int4", "int4", &["-1", "0", "1", "5", "7", "42"]),
            k("int8", "int8", INTS),
            k("numeric", "numeric(20,2)", DECIMALS),
            k("float8", "float8", FLOATS),
            k("text", "text", TEXTS),
            k("varchar", "varchar(40)", TEXTS),
            k("char", "char(6)", CHARS),
            k(
                "uuid",
                "uuid",
                &[
                    "'6f1c3ad8-2b4e-4c51-9d0e-3f7a1b2c4d5e'",
                    "'6F1C3AD8-2B4E-4C51-9D0E-3F7A1B2C4D5F'",
                ],
            ),
            k("date", "date", &["'2026-01-01'", "'2026-02-28'"]),
            k(
                "timestamptz",
                "timestamptz",
                &[
                    "'2026-01-01 10:00:00+00'",
                    "'2026-01-01 12:00:00+02'",
                    "'2026-01-01 10:00:00.5+00'",
                    "'2026-01-01 10:00:00.000123+00'",
                ],
            ),
            k(
                "timestamp",
                "timestamp",
                &["'2026-01-01 10:00:00'", "'2026-01-01 10:00:00.5'"],
            ),
            k("bool", "bool", &["true", "false"]),
        ],
        Db::Mariadb => vec![
            k("int", "int", &["-1", "0", "1", "5", "7", "42"]),
            k("bigint", "bigint", INTS),
            k("decimal", "decimal(20,2)", DECIMALS),
            k("double", "double", FLOATS),
            k("varchar", "varchar(40)", TEXTS),
            k("varbin", "varchar(40) COLLATE utf8mb4_bin", TEXTS),
            k("char", "char(6)", CHARS),
            k("text", "text", TEXTS),
            k("date", "date", &["'2026-01-01'", "'2026-02-28'"]),
            k(
                "datetime",
                "datetime(6)",
                &[
                    "'2026-01-01 10:00:00'",
                    "'2026-01-01 10:00:00.5'",
                    "'2026-01-01 10:00:00.000123'",
                ],
            ),
            k("bool", "boolean", &["0", "1", "2"]),
        ],
        Db::Sqlite => vec![
            k("integer", "INTEGER", INTS),
            k("text", "TEXT", TEXTS),
            k("real", "REAL", FLOATS),
            k("numeric", "NUMERIC", DECIMALS),
            k("char", "CHAR(6)", CHARS),
            k("bool", "BOOLEAN", &["0", "1"]),
            k("any", "", &["5", "'5'", "5.0", "'a'", "'C1'", "7"]),
        ],
    }
}

/// A small deterministic generator (SplitMix64), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn table(t: &str, ty: &KeyType) -> String {
    format!("dk_{t}_{}", ty.name)
}

/// Drop, create and fill one table per type: 0 to 12 rows, duplicates and NULLs included.
fn seed_sql(db: Db, t: &str, rng: &mut Rng) -> Vec<String> {
    let mut out = Vec::new();
    for ty in types(db) {
        let name = table(t, &ty);
        out.push(format!("DROP TABLE IF EXISTS {name}"));
        out.push(format!("CREATE TABLE {name} (k {})", ty.sql_type));
        let n = rng.below(13);
        let rows: Vec<String> = (0..n)
            .map(|_| {
                if rng.below(8) == 0 {
                    "(NULL)".to_string()
                } else {
                    format!("({})", ty.pool[rng.below(ty.pool.len())])
                }
            })
            .collect();
        if !rows.is_empty() {
            out.push(format!("INSERT INTO {name} (k) VALUES {}", rows.join(", ")));
        }
    }
    out
}

fn drop_sql(db: Db, t: &str) -> Vec<String> {
    types(db)
        .iter()
        .map(|ty| format!("DROP TABLE IF EXISTS {}", table(t, ty)))
        .collect()
}

fn config(db: Db, sources: &str, t: &str) -> String {
    let mut y = format!("sources:\n{sources}\ninvariants:\n");
    for a in types(db) {
        for b in types(db) {
            let (ta, tb) = (table(t, &a), table(t, &b));
            for (path, src) in [("P", "app"), ("M", "app2")] {
                y.push_str(&format!(
                    "  - id: {path}-{}-{}\n    title: {} keys in {}\n    subset:\n      \
                     each: {{ source: app, sql: \"SELECT k FROM {ta}\", key: k }}\n      \
                     in: {{ source: {src}, sql: \"SELECT k FROM {tb}\", key: k }}\n",
                    a.name, b.name, a.name, b.name
                ));
            }
        }
    }
    y
}

async fn execute(db: Db, url: &str, statements: &[String]) -> Result<(), String> {
    async fn all<C: Connection>(mut conn: C, statements: &[String]) -> Result<(), String>
    where
        for<'c> &'c mut C: sqlx::Executor<'c>,
    {
        for s in statements {
            sqlx::raw_sql(AssertSqlSafe(s.clone()))
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{e}\n  in: {s}"))?;
        }
        conn.close().await.map_err(|e| e.to_string())
    }
    let e = |e: sqlx::Error| e.to_string();
    match db {
        Db::Postgres => {
            all(
                sqlx::PgConnection::connect(url).await.map_err(e)?,
                statements,
            )
            .await
        }
        Db::Mariadb => {
            all(
                sqlx::MySqlConnection::connect(url).await.map_err(e)?,
                statements,
            )
            .await
        }
        Db::Sqlite => {
            all(
                sqlx::SqliteConnection::connect(url).await.map_err(e)?,
                statements,
            )
            .await
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn run(dir: &std::path::Path, url: Option<&str>) -> J {
    let mut cmd = Command::cargo_bin("invar").unwrap();
    cmd.current_dir(dir)
        .args(["run", "--dry-run", "--format", "json"])
        .env_remove("INVAR_CONFIG")
        .timeout(Duration::from_secs(120));
    if let Some(u) = url {
        cmd.env("INVAR_DIFF_URL", u);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What must not depend on the path.
fn answer(r: &J) -> J {
    let mut violations: Vec<String> = r["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.to_string())
        .collect();
    violations.sort();
    serde_json::json!({
        "outcome": r["outcome"],
        "reason": r["reason"],
        "vacuous": r["vacuous"],
        "examined": r["examined"],
        "violations_total": r["violations_total"],
        "each_keys": r["measured"]["each_keys"],
        "missing": r["measured"]["missing"],
        "violations": violations,
    })
}

/// Runs every seed; returns the type pairs that were pushed down (in at least one seed).
fn differential(db: Db, admin_url: &str, sources: &str, env_url: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let admin_url = admin_url.replace("{dir}", &dir.path().display().to_string());
    let t = format!("{}", std::process::id());
    std::fs::write(dir.path().join("invar.yaml"), config(db, sources, &t)).unwrap();
    let mut pushed = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for seed in 0..SEEDS {
        let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(db as u64));
        block_on(execute(db, &admin_url, &seed_sql(db, &t, &mut rng)))
            .unwrap_or_else(|e| panic!("{db:?} seeding: {e}"));
        let report = run(dir.path(), env_url);
        let results = report["results"].as_array().expect("results");
        for p in results
            .iter()
            .filter(|r| r["id"].as_str().unwrap().starts_with("P-"))
        {
            let id = p["id"].as_str().unwrap();
            let m_id = format!("M-{}", &id[2..]);
            let m = results.iter().find(|r| r["id"] == m_id.as_str()).unwrap();
            if m["measured"]["pushed_down"] == true {
                problems.push(format!("{m_id}: the in-memory twin was pushed down"));
            }
            if p["measured"]["pushed_down"] == true {
                pushed.insert(id[2..].to_string());
            }
            if answer(p) != answer(m) {
                problems.push(format!(
                    "seed {seed}, {}: pushed down {} vs in memory {} (pushed_down: {})",
                    &id[2..],
                    answer(p),
                    answer(m),
                    p["measured"]["pushed_down"]
                ));
            }
        }
    }
    let _ = block_on(execute(db, &admin_url, &drop_sql(db, &t)));
    assert!(
        problems.is_empty(),
        "{db:?}: {} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    pushed.into_iter().collect()
}

fn assert_pushed(db: Db, pushed: &[String], want: &[&str]) {
    for w in want {
        assert!(
            pushed.iter().any(|p| p == w),
            "{db:?}: `{w}` was expected to be pushed down; pushed: {pushed:?}"
        );
    }
}

#[test]
fn postgres_pushdown_and_memory_agree() {
    let url = std::env::var("INVAR_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_URL.into());
    if !invar_testkit::url_up("PostgreSQL", &url, "scripts/ensure-services.sh") {
        return;
    }
    let sources = "  app: { type: postgres, url: \"${INVAR_DIFF_URL}\" }\n  \
                   app2: { type: postgres, url: \"${INVAR_DIFF_URL}\" }\n";
    let pushed = differential(Db::Postgres, &url, sources, Some(&url));
    assert_pushed(
        Db::Postgres,
        &pushed,
        &[
            "text-char",
            "char-text",
            "int4-numeric",
            "numeric-int8",
            "numeric-numeric",
            "int4-text",
            "uuid-text",
            "timestamptz-timestamptz",
            "timestamptz-text",
            "date-text",
            "bool-text",
            "float8-float8",
        ],
    );
}

#[test]
fn mariadb_pushdown_and_memory_agree() {
    let url = std::env::var("INVAR_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_URL.into());
    if !invar_testkit::url_up("MariaDB", &url, "scripts/ensure-services.sh") {
        return;
    }
    let sources = "  app: { type: mysql, url: \"${INVAR_DIFF_URL}\" }\n  \
                   app2: { type: mysql, url: \"${INVAR_DIFF_URL}\" }\n";
    let pushed = differential(Db::Mariadb, &url, sources, Some(&url));
    assert_pushed(
        Db::Mariadb,
        &pushed,
        &[
            "varchar-char",
            "int-decimal",
            "bigint-varchar",
            "datetime-text",
            "bool-varchar",
            "decimal-decimal",
        ],
    );
}

#[test]
fn sqlite_pushdown_and_memory_agree() {
    let sources = "  app: { type: sqlite, path: diff.db }\n  \
                   app2: { type: sqlite, path: diff.db }\n";
    let pushed = differential(Db::Sqlite, "sqlite://{dir}/diff.db?mode=rwc", sources, None);
    assert_pushed(
        Db::Sqlite,
        &pushed,
        &["integer-text", "text-char", "bool-text", "integer-integer"],
    );
}

/// NaN and ±Infinity are named in the report (never `null`, which reads as SQL NULL), and a
/// condition that reads a NaN is an `error` naming the column, never a silent pass.
#[test]
fn nan_is_shown_by_name_and_never_passes() {
    let url = std::env::var("INVAR_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_URL.into());
    if !invar_testkit::url_up("PostgreSQL", &url, "scripts/ensure-services.sh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"sources:
  app: { type: postgres, url: "${INVAR_DIFF_URL}" }
invariants:
  - id: NAN-COND
    title: A NaN ratio is not below the limit
    probe: { source: app, sql: "SELECT 'NaN'::float8 AS hi, 1.0::float8 AS lo" }
    fail_when: row.hi > 0.5
  - id: NAN-OTHER
    title: A condition not reading the NaN column decides
    probe: { source: app, sql: "SELECT 'NaN'::float8 AS hi, 1.0::float8 AS lo" }
    fail_when: row.lo > 0.5
  - id: NAN-EVERY
    title: every_row reading a NaN
    probe: { source: app, sql: "SELECT x::float8 AS v FROM (VALUES ('1'), ('NaN')) t(x)" }
    every_row: r.v < 10.0
  - id: SUM-EXACT
    title: A sum of bigints past 2^53 keeps every digit
    probe: { source: app, sql: "SELECT sum(x) AS s FROM (VALUES (9007199254740993::int8), (2::int8)) t(x)" }
    fail_when: row.s < 0.0
  - id: INF-ROWS
    title: Infinities are shown by name
    probe: { source: app, sql: "SELECT 'Infinity'::float8 AS a, '-Infinity'::float8 AS b" }
"#;
    std::fs::write(dir.path().join("invar.yaml"), yaml).unwrap();
    let r = run(dir.path(), Some(&url));
    let get = |id: &str| {
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()
            .clone()
    };
    let c = get("NAN-COND");
    assert_eq!(c["outcome"], "error", "{c}");
    assert!(
        c["reason"].as_str().unwrap().starts_with("`hi` is NaN"),
        "{c}"
    );
    assert_eq!(c["measured"]["hi"], "NaN", "{c}");
    assert_eq!(get("NAN-OTHER")["outcome"], "fail");
    let e = get("NAN-EVERY");
    assert_eq!(e["outcome"], "error", "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("row 2: `v` is NaN"),
        "{e}"
    );
    assert_eq!(
        get("SUM-EXACT")["measured"]["s"],
        serde_json::json!(9_007_199_254_740_995_i64)
    );
    let i = get("INF-ROWS");
    assert_eq!(i["violations"][0]["a"], "Infinity", "{i}");
    assert_eq!(i["violations"][0]["b"], "-Infinity", "{i}");
}
