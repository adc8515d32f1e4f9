//! The `redis` source against the real Redis on 127.0.0.1:6379 (and PostgreSQL on
//! 127.0.0.1:5432 for the cross-source checks): every probe kind with captures, SCAN over more
//! than one batch, the key cap, WRONGTYPE, S-01 (`same` with `grace`) and S-02 (`join`), and a
//! stopped Redis (`error`, exit 2, the password never shown).
//!
//! Keys live under `invar-test:{pid}:{n}:` in DB 0 and are deleted afterwards (never
//! FLUSHALL); Postgres tables carry the same suffix and are dropped. A server that is down
//! fails the test under `CI` and skips it (loudly) otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Outcome, RedisKind, RedisProbe, RedisSource, RunReport, Secret, Table, Value};
use invar_sources::redis::RedisConn;
use invar_sources::{Engine, RunOptions};
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const START_REDIS: &str =
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no";
const START_PG: &str = "scripts/ensure-services.sh";

fn reachable(addr: &str, what: &str, how: &str) -> bool {
    invar_testkit::server_up(what, addr, how)
}

fn redis_up() -> bool {
    reachable("127.0.0.1:6379", "Redis", START_REDIS)
}

fn pg_up() -> bool {
    reachable("127.0.0.1:5432", "PostgreSQL", START_PG)
}

/// A prefix (and SQL suffix) no other run or test uses; its keys are deleted on drop.
struct Keys {
    prefix: String,
    suffix: String,
}

impl Keys {
    fn new() -> Keys {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Keys {
            prefix: format!("invar-test:{pid}:{n}:"),
            suffix: format!("{pid}_{n}"),
        }
    }
    fn k(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, batch)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(10_000)
                .query(&mut conn)
            else {
                return;
            };
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to redis")
}

/// Runs each command (argv) in one pipeline.
async fn seed(cmds: &[Vec<String>]) {
    let mut conn = redis_conn().await;
    let mut pipe = redis::pipe();
    for c in cmds {
        let mut cmd = redis::cmd(&c[0]);
        for a in &c[1..] {
            cmd.arg(a);
        }
        pipe.add_command(cmd).ignore();
    }
    let () = pipe.query_async(&mut conn).await.expect("seeding redis");
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

async fn pg(statements: &[String]) {
    let mut conn = sqlx::PgConnection::connect(PG_URL)
        .await
        .expect("connecting to postgres");
    for s in statements {
        sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}\n  in: {s}"));
    }
}

fn source(url: &str) -> RedisSource {
    RedisSource {
        url: Secret::new(url),
        timeout: Duration::from_secs(5),
        max_keys: 100_000,
        tls: None,
    }
}

fn probe(kind: RedisKind, pattern: String) -> RedisProbe {
    RedisProbe {
        source: "cache".into(),
        kind,
        pattern,
        max_keys: None,
    }
}

fn text(v: &str) -> Value {
    Value::Text(v.into())
}

fn rows(t: &Table) -> Vec<Vec<Value>> {
    t.rows.clone()
}

#[tokio::test]
async fn every_probe_kind_with_captures() {
    if !redis_up() {
        return;
    }
    let keys = Keys::new();
    let k = |r: &str| keys.k(r);
    seed(&[
        argv(&["ZADD", &k("agent:slots:alpha"), "1.5", "e1", "2", "e2"]),
        argv(&["ZADD", &k("agent:slots:beta"), "3", "e3"]),
        // Fits the glob (`*` may be empty) but not the pattern: skipped.
        argv(&["ZADD", &k("agent:slots:"), "9", "ghost"]),
        argv(&["SADD", &k("tags:alpha"), "y", "x"]),
        argv(&["HSET", &k("meta:alpha"), "f2", "2", "f1", "v1"]),
        argv(&["SET", &k("hb:alpha"), "2026-05-11 10:00:00"]),
        argv(&["RPUSH", &k("q:alpha"), "a", "b", "c"]),
        argv(&["SET", &k("slot:alpha:e1"), "x", "EX", "100"]),
        argv(&["SET", &k("slot:beta:e3"), "x"]),
    ])
    .await;
    let conn = RedisConn::connect(&source(REDIS_URL)).await.unwrap();
    let read = |kind, pattern: String| {
        let conn = conn.clone();
        async move { conn.read(&probe(kind, pattern)).await.unwrap() }
    };

    let t = read(RedisKind::Zset, k("agent:slots:{agent}")).await;
    assert_eq!(t.columns, ["key", "member", "score", "agent"]);
    assert_eq!(
        rows(&t),
        [
            vec![
                text(&k("agent:slots:alpha")),
                text("e1"),
                Value::Float(1.5),
                text("alpha")
            ],
            vec![
                text(&k("agent:slots:alpha")),
                text("e2"),
                Value::Float(2.0),
                text("alpha")
            ],
            vec![
                text(&k("agent:slots:beta")),
                text("e3"),
                Value::Float(3.0),
                text("beta")
            ],
        ]
    );

    let t = read(RedisKind::Set, k("tags:{agent}")).await;
    assert_eq!(t.columns, ["key", "member", "agent"]);
    assert_eq!(
        rows(&t),
        [
            vec![text(&k("tags:alpha")), text("x"), text("alpha")],
            vec![text(&k("tags:alpha")), text("y"), text("alpha")],
        ]
    );

    let t = read(RedisKind::Hash, k("meta:{agent}")).await;
    assert_eq!(t.columns, ["key", "field", "value", "agent"]);
    assert_eq!(
        rows(&t),
        [
            vec![
                text(&k("meta:alpha")),
                text("f1"),
                text("v1"),
                text("alpha")
            ],
            vec![text(&k("meta:alpha")), text("f2"), text("2"), text("alpha")],
        ],
        "values stay text: nothing is parsed"
    );

    let t = read(RedisKind::String, k("hb:{agent}")).await;
    assert_eq!(t.columns, ["key", "value", "agent"]);
    assert_eq!(
        rows(&t),
        [vec![
            text(&k("hb:alpha")),
            text("2026-05-11 10:00:00"),
            text("alpha")
        ]]
    );

    let t = read(RedisKind::List, k("q:{agent}")).await;
    assert_eq!(t.columns, ["key", "index", "value", "agent"]);
    let values: Vec<(Value, Value)> = t
        .rows
        .iter()
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    assert_eq!(
        values,
        [
            (Value::Int(0), text("a")),
            (Value::Int(1), text("b")),
            (Value::Int(2), text("c"))
        ]
    );

    let t = read(RedisKind::Ttl, k("slot:{agent}:{execution}")).await;
    assert_eq!(t.columns, ["key", "ttl", "agent", "execution"]);
    assert_eq!(t.rows.len(), 2);
    let Value::Int(ttl) = t.rows[0][1] else {
        panic!("{t:?}")
    };
    assert!((1..=100).contains(&ttl), "{ttl}");
    assert_eq!(t.rows[0][2..], [text("alpha"), text("e1")]);
    assert_eq!(t.rows[1][1..], [Value::Int(-1), text("beta"), text("e3")]);

    // A literal key (no capture): read directly; a missing one has ttl -2 and no zset rows.
    let t = read(RedisKind::Ttl, k("nope")).await;
    assert_eq!(rows(&t), [vec![text(&k("nope")), Value::Int(-2)]]);
    let t = read(RedisKind::Zset, k("agent:slots:alpha")).await;
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.columns, ["key", "member", "score"]);
    let t = read(RedisKind::Zset, k("nope")).await;
    assert!(t.rows.is_empty());
}

#[tokio::test]
async fn scan_walks_many_batches_and_the_cap_is_an_error() {
    if !redis_up() {
        return;
    }
    let keys = Keys::new();
    let cmds: Vec<Vec<String>> = (0..2_500)
        .map(|i| argv(&["SET", &keys.k(&format!("many:{i:05}")), &i.to_string()]))
        .collect();
    seed(&cmds).await;
    let conn = RedisConn::connect(&source(REDIS_URL)).await.unwrap();
    let mut p = probe(RedisKind::String, keys.k("many:{n}"));
    let t = conn.read(&p).await.unwrap();
    assert_eq!(
        t.rows.len(),
        2_500,
        "SCAN must walk past its first batch of 1,000"
    );
    assert_eq!(t.rows[0][1..], [text("0"), text("00000")]);
    assert_eq!(t.rows[2_499][1..], [text("2499"), text("02499")]);

    p.max_keys = Some(2_000);
    let e = conn.read(&p).await.unwrap_err();
    assert!(e.message.contains("max_keys = 2000"), "{}", e.message);
    assert!(!e.source_down);
    // The source's cap applies when the probe has none.
    p.max_keys = None;
    let small = RedisConn::connect(&RedisSource {
        max_keys: 10,
        ..source(REDIS_URL)
    })
    .await
    .unwrap();
    let e = small.read(&p).await.unwrap_err();
    assert!(e.message.contains("max_keys = 10"), "{}", e.message);
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_an_error_naming_it() {
    if !redis_up() {
        return;
    }
    let keys = Keys::new();
    seed(&[
        argv(&["ZADD", &keys.k("agent:slots:a"), "1", "e1"]),
        argv(&["SET", &keys.k("agent:slots:b"), "oops"]),
    ])
    .await;
    let conn = RedisConn::connect(&source(REDIS_URL)).await.unwrap();
    let e = conn
        .read(&probe(RedisKind::Zset, keys.k("agent:slots:{agent}")))
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains(&format!("key `{}`", keys.k("agent:slots:b")))
            && e.message.contains("WRONGTYPE"),
        "{}",
        e.message
    );
}

async fn run(yaml: &str) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    Engine::new(Arc::new(cfg))
        .run(&RunOptions::default())
        .await
        .report
}

fn result<'a>(r: &'a RunReport, id: &str) -> &'a invar_core::InvariantResult {
    r.results
        .iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no result {id}"))
}

/// S-01 of the canary seed: every Redis slot is a running execution and back, with a grace
/// for the races of a slot being taken or released.
#[tokio::test]
async fn s01_same_with_grace_between_a_redis_zset_and_postgres() {
    if !redis_up() || !pg_up() {
        return;
    }
    let keys = Keys::new();
    let t = format!("executions_{}", keys.suffix);
    let now = chrono::Utc::now().timestamp();
    let hour_ago = (now - 3600).to_string();
    let just_now = (now - 1).to_string();
    // Healthy: 1 (a). Leaked slot: 2 (a, its row succeeded an hour ago). Running without a
    // slot for an hour: 3 (a). Young on either side: slot 4 (b) and running row 5 (b).
    seed(&[
        argv(&[
            "ZADD",
            &keys.k("agent:slots:a"),
            &hour_ago,
            "1",
            &hour_ago,
            "2",
        ]),
        argv(&["ZADD", &keys.k("agent:slots:b"), &just_now, "4"]),
        argv(&["ZADD", &keys.k("young:slots:a"), &hour_ago, "1"]),
        argv(&["ZADD", &keys.k("young:slots:b"), &just_now, "4"]),
    ])
    .await;
    pg(&[
        format!("DROP TABLE IF EXISTS {t}"),
        format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, agent_name TEXT, status TEXT, \
             started_at TIMESTAMPTZ)"
        ),
        format!(
            "INSERT INTO {t} VALUES (1, 'a', 'running', now() - interval '1 hour'), \
             (2, 'a', 'success', now() - interval '1 hour'), \
             (3, 'a', 'running', now() - interval '1 hour'), \
             (5, 'b', 'running', now() - interval '1 second')"
        ),
    ])
    .await;
    let yaml = format!(
        r#"
sources:
  cache: {{ type: redis, url: "{REDIS_URL}" }}
  app:   {{ type: postgres, url: "{PG_URL}" }}
invariants:
  - id: S-01
    title: Every Redis slot is a running execution, and every running execution holds a slot
    same:
      left:  {{ source: cache, redis: {{ zset: "{p}agent:slots:{{agent}}" }}, key: [agent, member], age: score }}
      right: {{ source: app, sql: "SELECT agent_name, id, started_at FROM {t} WHERE status = 'running'",
               key: [agent_name, id], age: started_at }}
      grace: 30s
  - id: S-01-young
    title: Differences younger than the grace are not a mismatch
    same:
      left:  {{ source: cache, redis: {{ zset: "{p}young:slots:{{agent}}" }}, key: [agent, member], age: score }}
      right: {{ source: app, sql: "SELECT agent_name, id, started_at FROM {t} WHERE status = 'running' AND id IN (1, 5)",
               key: [agent_name, id], age: started_at }}
      grace: 30s
"#,
        p = keys.prefix
    );
    let report = run(&yaml).await;
    pg(&[format!("DROP TABLE IF EXISTS {t}")]).await;

    let r = result(&report, "S-01");
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    assert_eq!(r.violations_total, 2, "{:?}", r.violations);
    let v = serde_json::to_value(&r.violations).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"side": "only_left", "key": {"agent": "a", "member": "2"}},
            {"side": "only_right", "key": {"agent_name": "a", "id": 3}},
        ])
    );
    assert_eq!(r.measured["within_grace"], serde_json::json!(2));
    let r = result(&report, "S-01-young");
    assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
    assert_eq!(r.measured["within_grace"], serde_json::json!(2));
    assert!(report.sources_unavailable.is_empty());
}

/// S-02 of the canary seed: no agent holds more slots than its parallelism — a join across
/// Redis and Postgres, with counts, numeric comparison and date functions in the SQL.
#[tokio::test]
async fn s02_join_across_redis_and_postgres() {
    if !redis_up() || !pg_up() {
        return;
    }
    let keys = Keys::new();
    let t = format!("agents_{}", keys.suffix);
    let now = chrono::Utc::now().timestamp();
    let old = (now - 7200).to_string();
    let fresh = now.to_string();
    seed(&[
        // a: 3 slots, cap 2 (overbooked); b: 2 of 2; c: 2 slots, cap 1 (overbooked).
        argv(&[
            "ZADD",
            &keys.k("agent:slots:a"),
            &old,
            "1",
            &old,
            "2",
            &fresh,
            "3",
        ]),
        argv(&["ZADD", &keys.k("agent:slots:b"), &old, "4", &fresh, "5"]),
        argv(&["ZADD", &keys.k("agent:slots:c"), &fresh, "6", &fresh, "7"]),
    ])
    .await;
    pg(&[
        format!("DROP TABLE IF EXISTS {t}"),
        format!(
            "CREATE TABLE {t} (name TEXT PRIMARY KEY, max_parallel_tasks INT, \
             created_at TIMESTAMPTZ, ratio NUMERIC(4,2))"
        ),
        format!(
            "INSERT INTO {t} VALUES ('a', 2, now() - interval '3 days', 0.5), \
             ('b', 2, now() - interval '3 days', 1.25), ('c', 1, now() - interval '1 hour', 2.5)"
        ),
    ])
    .await;
    let p = &keys.prefix;
    let yaml = format!(
        r#"
sources:
  cache: {{ type: redis, url: "{REDIS_URL}" }}
  app:   {{ type: postgres, url: "{PG_URL}" }}
invariants:
  - id: S-02
    title: No agent holds more slots than its parallelism
    severity: critical
    join:
      tables:
        slots:  {{ source: cache, redis: {{ zset: "{p}agent:slots:{{agent}}" }} }}
        agents: {{ source: app, sql: "SELECT name, max_parallel_tasks, created_at, ratio FROM {t}" }}
      sql: |
        SELECT a.name, count(*) AS used, a.max_parallel_tasks
        FROM slots s JOIN agents a ON a.name = s.agent
        GROUP BY a.name, a.max_parallel_tasks HAVING count(*) > a.max_parallel_tasks
        ORDER BY a.name
  - id: S-02-dates
    title: Slots older than an hour, of agents created over a day ago
    join:
      tables:
        slots:  {{ source: cache, redis: {{ zset: "{p}agent:slots:{{agent}}" }} }}
        agents: {{ source: app, sql: "SELECT name, max_parallel_tasks, created_at, ratio FROM {t}" }}
      sql: |
        SELECT s.agent, s.member, a.created_at,
               round(julianday('now') - julianday(a.created_at)) AS age_days
        FROM slots s JOIN agents a ON a.name = s.agent
        WHERE s.score < strftime('%s', 'now') - 3600
          AND a.created_at < datetime('now', '-1 day')
          AND a.ratio * 2 >= 1
        ORDER BY s.member
    fail_when: count > 3.0 || rows.exists(r, r.age_days < 3.0)
    warn_when: count > 0
"#
    );
    let report = run(&yaml).await;
    pg(&[format!("DROP TABLE IF EXISTS {t}")]).await;

    let r = result(&report, "S-02");
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    assert_eq!(
        serde_json::to_value(&r.violations).unwrap(),
        serde_json::json!([
            {"name": "a", "used": 3, "max_parallel_tasks": 2},
            {"name": "c", "used": 2, "max_parallel_tasks": 1},
        ])
    );
    // Slots 1, 2 (a) and 4 (b) are two hours old; their agents three days; ratios 0.5, 1.25.
    let r = result(&report, "S-02-dates");
    assert_eq!(r.outcome, Outcome::Warn, "{r:?}");
    assert_eq!(r.measured["count"], serde_json::json!(3));
}

/// Redis stopped: its invariants (alone or joined with SQL) are `error`, SQL-only invariants
/// still pass or fail, the run exits 2 and the URL's password is never shown.
#[tokio::test]
async fn a_stopped_redis_is_an_error_and_sql_still_decides() {
    if !pg_up() {
        return;
    }
    let yaml = format!(
        r#"
sources:
  cache: {{ type: redis, url: "redis://:s3cret-pw@127.0.0.1:1/0", timeout: 2s }}
  app:   {{ type: postgres, url: "{PG_URL}" }}
invariants:
  - id: R-ONLY
    title: slots expire
    probe: {{ source: cache, redis: {{ ttl: "agent:slot:{{agent}}" }} }}
    every_row: r.ttl > 0
  - id: R-JOIN
    title: join needs both
    join:
      tables:
        slots:  {{ source: cache, redis: {{ zset: "agent:slots:{{agent}}" }} }}
        agents: {{ source: app, sql: "SELECT 'a' AS name" }}
      sql: SELECT * FROM slots JOIN agents ON agents.name = slots.agent
  - id: R-SAME
    title: same needs both
    same:
      left:  {{ source: cache, redis: {{ zset: "agent:slots:{{agent}}" }}, key: [agent, member] }}
      right: {{ source: app, sql: "SELECT 'a' AS agent, '1' AS id", key: [agent, id] }}
  - id: SQL-PASS
    title: passes
    probe: {{ source: app, sql: "SELECT 1 AS x WHERE false" }}
  - id: SQL-FAIL
    title: fails
    probe: {{ source: app, sql: "SELECT 1 AS x" }}
"#
    );
    let report = run(&yaml).await;
    for id in ["R-ONLY", "R-JOIN", "R-SAME"] {
        let r = result(&report, id);
        assert_eq!(r.outcome, Outcome::Error, "{id}: {r:?}");
        assert!(
            r.reason.as_deref().unwrap_or("").contains("cache"),
            "{id}: {r:?}"
        );
    }
    assert_eq!(result(&report, "SQL-PASS").outcome, Outcome::Pass);
    assert_eq!(result(&report, "SQL-FAIL").outcome, Outcome::Fail);
    assert_eq!(report.exit_code, 2);
    assert_eq!(report.sources_unavailable.len(), 1, "{report:?}");
    assert_eq!(report.sources_unavailable[0].source, "cache");
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("s3cret-pw"), "{json}");
    assert!(json.contains("redis://:***@127.0.0.1:1/0"), "{json}");
}

/// Probes read only by set checks stream a sorted set straight into key sets; each distinct
/// Redis probe is read once per run, however many checks read it (and whether it is read
/// into key sets or into a table).
#[tokio::test]
async fn each_redis_probe_is_read_once_and_set_checks_stream_it() {
    if !redis_up() {
        return;
    }
    let keys = Keys::new();
    let (a, b, s) = (keys.k("slots:a"), keys.k("slots:b"), keys.k("oops"));
    seed(&[
        argv(&[
            "ZADD",
            &a,
            "1700000000",
            "e1",
            "1700000001",
            "e2",
            "1.5",
            "7",
        ]),
        argv(&["ZADD", &b, "1700000000", "e1"]),
        argv(&["SET", &s, "not a zset"]),
    ])
    .await;
    let yaml = format!(
        r#"
sources:
  cache: {{ type: redis, url: "{REDIS_URL}" }}
invariants:
  - id: A-same
    title: keyed read, pass
    same:
      left: {{ source: cache, redis: {{ zset: "{a}" }}, key: member, age: score }}
      right: {{ values: ["e1", "e2", "7"] }}
  - id: A-subset
    title: keyed read of the same probe, another key spec
    subset:
      each: {{ source: cache, redis: {{ zset: "{a}" }}, key: [key, member] }}
      in: {{ values: [] }}
  - id: A-fail
    title: keyed read, violations
    same:
      left: {{ source: cache, redis: {{ zset: "{a}" }}, key: member, age: score }}
      right: {{ values: ["e1", "e9"] }}
  - id: B-same
    title: table read (a probe check reads it too)
    same:
      left: {{ source: cache, redis: {{ zset: "{b}" }}, key: member }}
      right: {{ values: ["e1"] }}
  - id: B-count
    title: table read
    probe: {{ source: cache, redis: {{ zset: "{b}" }} }}
    fail_when: count != 1.0
  - id: S-wrong
    title: a string read as a zset
    same:
      left: {{ source: cache, redis: {{ zset: "{s}" }}, key: member }}
      right: {{ values: [] }}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let engine = Engine::new(Arc::new(cfg));
    let out = engine.run(&RunOptions::default()).await;
    let report = out.report;

    assert_eq!(result(&report, "A-same").outcome, Outcome::Pass);
    assert_eq!(result(&report, "A-same").examined, 6);
    let r = result(&report, "A-subset");
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    assert_eq!(r.violations_total, 3);
    assert_eq!(
        serde_json::to_value(&r.violations[0]).unwrap(),
        serde_json::json!({"missing": {"key": a, "member": "7"}})
    );
    let r = result(&report, "A-fail");
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    assert_eq!(
        serde_json::to_value(&r.violations).unwrap(),
        serde_json::json!([
            {"side": "only_left", "key": {"member": "7"}},
            {"side": "only_left", "key": {"member": "e2"}},
            {"side": "only_right", "key": {"value": "e9"}},
        ])
    );
    assert_eq!(result(&report, "B-same").outcome, Outcome::Pass);
    assert_eq!(result(&report, "B-count").outcome, Outcome::Pass);
    let r = result(&report, "S-wrong");
    assert_eq!(r.outcome, Outcome::Error);
    let reason = r.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(&format!("key `{s}`")) && reason.contains("WRONGTYPE"),
        "{reason}"
    );
    // Three distinct probes, each read once.
    assert_eq!(out.stats.redis_reads.get("cache"), Some(&3));
}

/// The streamed sorted-set read opens its own connection: it must authenticate and select the
/// database the URL names (an ACL user with a password, database 3), and a wrong password is
/// an error that does not show it.
#[tokio::test]
async fn a_streamed_zset_read_authenticates_and_selects_the_database() {
    if !redis_up() {
        return;
    }
    let user = format!("invar-test-{}", std::process::id());
    let pw = "s3cret-pw-for-the-test";
    let mut c = redis_conn().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", &format!(">{pw}"), "~*", "+@all"][..])
        .query_async(&mut c)
        .await
        .unwrap();
    let key = format!("invar-test:{}:authdb", std::process::id());
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(&key)
        .arg(&["1", "m1", "2", "m2"][..])
        .query_async(&mut c)
        .await
        .unwrap();
    let yaml = |url: &str| {
        format!(
            r#"
sources:
  cache: {{ type: redis, url: "{url}" }}
invariants:
  - id: Z-same
    title: the zset in db 3 holds m1 and m2
    same:
      left: {{ source: cache, redis: {{ zset: "{key}" }}, key: member }}
      right: {{ values: [m1, m2] }}
"#
        )
    };
    let report = run(&yaml(&format!("redis://{user}:{pw}@127.0.0.1:6379/3"))).await;
    let r = result(&report, "Z-same");
    assert_eq!((r.outcome, r.examined), (Outcome::Pass, 4), "{r:?}");
    let report = run(&yaml(&format!(
        "redis://{user}:wrong-password@127.0.0.1:6379/3"
    )))
    .await;
    let r = result(&report, "Z-same");
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    let all = serde_json::to_string(&report).unwrap();
    assert!(
        !all.contains("wrong-password") && !all.contains(pw),
        "{all}"
    );
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["DELUSER", &user][..])
        .query_async(&mut c)
        .await
        .unwrap();
}
