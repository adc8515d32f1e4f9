//! The two backends. They share every statement (written once in `store_impl!`): timestamps
//! are BIGINT unix milliseconds, JSON is text, placeholders are `$N` (SQLite reads `$N` as the
//! N-th argument too). Only opening, locking and the migrations' DDL differ.

use crate::migrate::{self, Migration};
use crate::types::*;
use crate::{Planner, Result, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use invar_core::incident::{EventKind, IncidentState};
use invar_core::{
    Counts, InvariantResult, Outcome, Retention, RunReport, Secret, SourceUnavailable,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Rows per multi-row INSERT: 400 rows × at most 16 columns stays under every backend's limit
/// on bound parameters.
const CHUNK: usize = 400;
const DEFAULT_LIMIT: u32 = 50;
/// Serialises recording runs across processes sharing one Postgres history.
const PG_RECORD_LOCK: i64 = 0x1A7A_5700_0001;
/// Most bytes of bound arrays per Postgres statement. sqlx 0.9.0 leaves Nagle's algorithm on
/// (no `TCP_NODELAY`, launchbadge/sqlx#4335), so a message the client writes in more than one
/// piece — over TLS, one record per 16 KiB — waits for the server's delayed ACK: ~40 ms per
/// statement on loopback, whatever its size. A batch that fits in one TLS record goes out in
/// one write and never waits (14 KiB of array elements leaves room for the Bind framing); the
/// statement text does not depend on the row count, so every batch reuses one prepared
/// statement. Drop the batching once sqlx sets `TCP_NODELAY` again.
const PG_BATCH_BYTES: usize = 14 * 1024;

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn decode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Decode(e.to_string())
}

/// `INSERT … VALUES (?,?),(?,?)…` for `rows` rows of `cols` columns. Anonymous placeholders:
/// SQLite looks numbered names up linearly, which makes a 6,000-parameter statement quadratic.
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    format!("{head} VALUES {} {tail}", vec![row; rows].join(","))
}

/// A bound value of a dynamically built statement.
enum Arg {
    I(i64),
    S(String),
    N(Option<String>),
    NI(Option<i64>),
    B(bool),
}

/// WHERE clauses with numbered placeholders.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// `clause` has `{}` where the placeholder goes.
    fn add(&mut self, clause: &str, arg: Arg) {
        let n = self.args.len() + 1;
        self.clauses.push(clause.replace("{}", &format!("${n}")));
        self.args.push(arg);
    }
    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
    fn next(&self) -> usize {
        self.args.len() + 1
    }
}

fn limit_of(l: u32) -> i64 {
    i64::from(if l == 0 { DEFAULT_LIMIT } else { l.min(10_000) })
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn outcome_of(s: &str) -> Result<Outcome> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(decode)
}

/// The embedded SQLite store (WAL, `synchronous = NORMAL`, 10 s busy timeout).
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

/// The Postgres store.
pub struct PgStore {
    pool: sqlx::PgPool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("cannot create `{}`: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // sqlx hands SQLite rows across a channel from its worker thread; the default 50
            // parks that thread several times for one API page of up to 1,000 rows.
            .row_buffer_size(1024);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("`{}`: {e}", path.display())))?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // IMMEDIATE takes the write lock up front: a reader upgrading later could fail.
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query(migrate::SQLITE_VERSIONS)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.run_migrations(migrate::SQLITE).await
    }
}

impl PgStore {
    pub async fn connect(url: &Secret, schema: Option<&str>) -> Result<PgStore> {
        let scrub = |e: sqlx::Error| StoreError::Open(url.scrub(&e.to_string()));
        let mut opts = PgConnectOptions::from_str(url.expose()).map_err(scrub)?;
        // Same rule as the SQL sources: no TLS to a loopback server unless the URL asks.
        if invar_core::secret::loopback_without_tls_request(opts.get_host(), url.expose()) {
            opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
        }
        if let Some(s) = schema {
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(scrub)?;
        if let Some(s) = schema {
            let ident = s.replace('"', "\"\"");
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{ident}\""
            )))
            .execute(&pool)
            .await
            .map_err(scrub)?;
        }
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_RECORD_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
    }

    async fn migrate(&self) -> Result<()> {
        {
            let mut tx = self.begin_write().await?;
            sqlx::query(migrate::POSTGRES_VERSIONS)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
        self.run_migrations(migrate::POSTGRES).await
    }

    /// Drops a schema (tests use one per run).
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        let ident = schema.replace('"', "\"\"");
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{ident}\" CASCADE"
        )))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

/// SQLite: `head VALUES (?,…),(?,…) tail`, a chunk of rows per statement.
async fn insert_sqlite(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<Vec<Arg>>,
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let sql = values_sql(head, cols, chunk.len(), tail);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in chunk.iter().flatten() {
            q = match a {
                Arg::I(v) => q.bind(*v),
                Arg::S(s) => q.bind(s.as_str()),
                Arg::N(s) => q.bind(s.as_deref()),
                Arg::NI(v) => q.bind(*v),
                Arg::B(b) => q.bind(*b),
            };
        }
        q.execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Postgres: `head SELECT * FROM UNNEST($1::text[], …) tail` — one array per column, prepared
/// once whatever the number of rows, in batches of at most [`PG_BATCH_BYTES`].
async fn insert_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<Vec<Arg>>,
) -> Result<()> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = pg_row_bytes(&row);
        if !batch.is_empty() && bytes + size > PG_BATCH_BYTES {
            insert_pg_batch(tx, head, tail, cols, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        bytes += size;
        batch.push(row);
    }
    insert_pg_batch(tx, head, tail, cols, batch).await
}

/// The bytes a row adds to a Bind message of per-column arrays (a length word per element).
fn pg_row_bytes(row: &[Arg]) -> usize {
    row.iter()
        .map(|a| {
            4 + match a {
                Arg::I(_) => 8,
                Arg::NI(v) => v.map_or(0, |_| 8),
                Arg::S(s) => s.len(),
                Arg::N(s) => s.as_ref().map_or(0, String::len),
                Arg::B(_) => 1,
            }
        })
        .sum()
}

/// One `INSERT … SELECT * FROM UNNEST(…)` of `rows`.
async fn insert_pg_batch(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    head: &str,
    tail: &str,
    cols: usize,
    rows: Vec<Vec<Arg>>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    enum Col {
        I(Vec<Option<i64>>),
        S(Vec<Option<String>>),
        B(Vec<bool>),
    }
    let mut columns: Vec<Col> = rows[0]
        .iter()
        .map(|a| match a {
            Arg::I(_) | Arg::NI(_) => Col::I(Vec::with_capacity(rows.len())),
            Arg::S(_) | Arg::N(_) => Col::S(Vec::with_capacity(rows.len())),
            Arg::B(_) => Col::B(Vec::with_capacity(rows.len())),
        })
        .collect();
    debug_assert_eq!(columns.len(), cols);
    for row in rows {
        for (c, a) in columns.iter_mut().zip(row) {
            match (c, a) {
                (Col::I(v), Arg::I(x)) => v.push(Some(x)),
                (Col::I(v), Arg::NI(x)) => v.push(x),
                (Col::S(v), Arg::S(x)) => v.push(Some(x)),
                (Col::S(v), Arg::N(x)) => v.push(x),
                (Col::B(v), Arg::B(x)) => v.push(x),
                _ => return Err(StoreError::Db("internal: mixed column types".into())),
            }
        }
    }
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t = match c {
                Col::I(_) => "int8",
                Col::S(_) => "text",
                Col::B(_) => "bool",
            };
            format!("${}::{t}[]", i + 1)
        })
        .collect();
    let sql = format!("{head} SELECT * FROM UNNEST({}) {tail}", casts.join(", "));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in columns {
        q = match c {
            Col::I(v) => q.bind(v),
            Col::S(v) => q.bind(v),
            Col::B(v) => q.bind(v),
        };
    }
    q.execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// Marks incidents resolved at `at` by `run_id`, a chunk of ids per statement.
async fn resolve_sqlite(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    at: i64,
    run_id: &str,
    ids: Vec<String>,
) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE incidents SET resolved_at = ?, resolved_run_id = ? WHERE id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(at).bind(run_id);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

async fn resolve_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    at: i64,
    run_id: &str,
    ids: Vec<String>,
) -> Result<()> {
    // Batched like `insert_pg`, for the same reason.
    let mut batches: Vec<Vec<String>> = vec![vec![]];
    let mut bytes = 0;
    for id in ids {
        let size = 4 + id.len();
        if bytes + size > PG_BATCH_BYTES && batches.last().is_some_and(|b| !b.is_empty()) {
            batches.push(vec![]);
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("one batch").push(id);
    }
    for batch in batches.into_iter().filter(|b| !b.is_empty()) {
        sqlx::query(
            "UPDATE incidents SET resolved_at = $1, resolved_run_id = $2 WHERE id = ANY($3::text[])",
        )
        .bind(at)
        .bind(run_id)
        .bind(batch)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// The whole `Store` implementation, written once for both backends.
macro_rules! store_impl {
    ($store:ident, $db:ty, $backend:literal, $insert:ident, $resolve:ident) => {
        impl $store {
            /// Applies each migration not yet applied, each in its own transaction with its
            /// version row; refuses a store migrated by a newer invar.
            async fn run_migrations(&self, list: &[Migration]) -> Result<()> {
                for &(version, name, sql) in list {
                    let mut tx = self.begin_write().await?;
                    let row = sqlx::query("SELECT count(*) FROM invar_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                    if row.try_get::<i64, _>(0).map_err(db)? > 0 {
                        continue;
                    }
                    let fail = |e: sqlx::Error| StoreError::Migrate {
                        version,
                        name: name.to_string(),
                        message: e.to_string(),
                    };
                    sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(fail)?;
                    sqlx::query(
                        "INSERT INTO invar_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    )
                    .bind(version)
                    .bind(name)
                    .bind(Utc::now().timestamp_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                    tx.commit().await.map_err(fail)?;
                    tracing::debug!(backend = $backend, version, name, "history store migrated");
                }
                self.refuse_newer(list).await
            }

            async fn refuse_newer(&self, known: &[Migration]) -> Result<()> {
                let row = sqlx::query("SELECT max(version) FROM invar_migrations")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db)?;
                let max: Option<i64> = row.try_get(0).map_err(db)?;
                let ours = known.iter().map(|m| m.0).max().unwrap_or(0);
                match max {
                    Some(v) if v > ours => Err(StoreError::Open(format!(
                        "the store is at schema version {v}, this invar knows up to {ours}: upgrade invar"
                    ))),
                    _ => Ok(()),
                }
            }

            fn bind_args<'q>(
                mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                args: &'q [Arg],
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                for a in args {
                    q = match a {
                        Arg::I(v) => q.bind(*v),
                        Arg::S(s) => q.bind(s.as_str()),
                        Arg::N(s) => q.bind(s.as_deref()),
                        Arg::NI(v) => q.bind(*v),
                        Arg::B(b) => q.bind(*b),
                    };
                }
                q
            }

            async fn record_run_inner(
                &self,
                run: &RunRecord<'_>,
                plan: &Planner<'_>,
            ) -> Result<Recorded> {
                let r = run.report;
                let started = DateTime::parse_from_rfc3339(&r.started_at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| StoreError::Decode(format!("run started_at `{}`: {e}", r.started_at)))?;
                let at = ms(started);
                                let mut tx = self.begin_write().await?;

                // What the planner sees, read under the write lock.
                let mut input = PlanInput::default();
                for row in sqlx::query("SELECT subject, state FROM incident_states")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?
                {
                    let subject: String = row.try_get(0).map_err(db)?;
                    let state: String = row.try_get(1).map_err(db)?;
                    let st: IncidentState = serde_json::from_str(&state).map_err(decode)?;
                    input.states.insert(subject, st);
                }
                for row in sqlx::query(
                    "SELECT o.incident_id, o.sink, max(o.created_at) FROM outbox o \
                     JOIN incidents i ON i.id = o.incident_id \
                     WHERE i.resolved_at IS NULL AND o.notice IN ('firing', 'reminder') \
                     GROUP BY o.incident_id, o.sink",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                {
                    let inc: String = row.try_get(0).map_err(db)?;
                    let sink: String = row.try_get(1).map_err(db)?;
                    let last: i64 = row.try_get(2).map_err(db)?;
                    input.notified.entry(inc).or_default().insert(sink, from_ms(last));
                }
                let plan = plan(&input);

                sqlx::query(
                    "INSERT INTO runs (run_id, suite, trigger, started_at, duration_ms, status, \
                     exit_code, n_pass, n_warn, n_fail, n_skip, n_error, automation_error, \
                     lock_skipped, skipped_budget, sources_unavailable) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
                )
                .bind(&r.run_id)
                .bind(&r.suite)
                .bind(&r.trigger)
                .bind(at)
                .bind(r.duration_ms as i64)
                .bind(r.status.as_str())
                .bind(i64::from(r.exit_code))
                .bind(r.counts.pass as i64)
                .bind(r.counts.warn as i64)
                .bind(r.counts.fail as i64)
                .bind(r.counts.skip as i64)
                .bind(r.counts.error as i64)
                .bind(r.automation_error)
                .bind(r.lock_skipped)
                .bind(r.skipped_budget as i64)
                .bind(json_text(&r.sources_unavailable))
                .execute(&mut *tx)
                .await
                .map_err(db)?;

                let mut results = Vec::with_capacity(r.results.len());
                let mut violations = Vec::new();
                for (i, res) in r.results.iter().enumerate() {
                    let sources = run.sources.get(i).cloned().unwrap_or_default();
                    results.push(vec![
                        Arg::S(r.run_id.clone()),
                        Arg::I(i as i64),
                        Arg::S(res.id.clone()),
                        Arg::I(at),
                        Arg::S(r.suite.clone()),
                        Arg::S(res.title.clone()),
                        Arg::S(res.severity.clone()),
                        Arg::S(res.outcome.as_str().to_string()),
                        Arg::N(res.reason.clone()),
                        Arg::I(res.examined as i64),
                        Arg::B(res.vacuous),
                        Arg::I(res.duration_ms as i64),
                        Arg::S(json_text(&res.measured)),
                        Arg::I(res.violations_total as i64),
                        Arg::N(res.runbook.clone()),
                        Arg::S(json_text(&sources)),
                    ]);
                    for (j, v) in res.violations.iter().enumerate() {
                        violations.push(vec![
                            Arg::S(r.run_id.clone()),
                            Arg::S(res.id.clone()),
                            Arg::S(res.severity.clone()),
                            Arg::I(j as i64),
                            Arg::I(at),
                            Arg::S(json_text(v)),
                        ]);
                    }
                }
                let n_results = results.len();
                let n_violations = violations.len();
                $insert(
                    &mut tx,
                    "INSERT INTO results (run_id, seq, invariant_id, started_at, suite, title, \
                     severity, outcome, reason, examined, vacuous, duration_ms, measured, \
                     violations_total, runbook, sources)",
                    "",
                    16,
                    results,
                )
                .await?;
                $insert(
                    &mut tx,
                    "INSERT INTO violations (run_id, invariant_id, severity, seq, at, observed)",
                    "",
                    6,
                    violations,
                )
                .await?;
                let remembered: Vec<Vec<Arg>> = run
                    .remembered
                    .iter()
                    .map(|s| {
                        vec![
                            Arg::S(s.invariant.clone()),
                            Arg::S(s.key.clone()),
                            Arg::S(s.state.clone()),
                            Arg::I(ms(s.seen_at)),
                        ]
                    })
                    .collect();
                $insert(
                    &mut tx,
                    "INSERT INTO remembered_states (invariant_id, key, state, seen_at)",
                    // The newer observation wins: two runs of one `transitions` invariant
                    // (two suites at once) may record out of order.
                    "ON CONFLICT (invariant_id, key) DO UPDATE SET state = excluded.state, \
                     seen_at = excluded.seen_at WHERE excluded.seen_at >= remembered_states.seen_at",
                    4,
                    remembered,
                )
                .await?;

                let states: Vec<Vec<Arg>> = plan
                    .states
                    .iter()
                    .map(|s| vec![Arg::S(s.subject.clone()), Arg::S(json_text(s)), Arg::I(at)])
                    .collect();
                $insert(
                    &mut tx,
                    "INSERT INTO incident_states (subject, state, updated_at)",
                    "ON CONFLICT (subject) DO UPDATE SET state = excluded.state, \
                     updated_at = excluded.updated_at",
                    3,
                    states,
                )
                .await?;
                let mut events = Vec::with_capacity(plan.events.len());
                let mut opened = Vec::new();
                let mut resolved: BTreeMap<i64, Vec<String>> = BTreeMap::new();
                for e in &plan.events {
                    let now = ms(e.at);
                    events.push(vec![
                        Arg::S(r.run_id.clone()),
                        Arg::S(e.subject.clone()),
                        Arg::N(e.incident_id.clone()),
                        Arg::S(e.kind.as_str().to_string()),
                        Arg::N(e.notice.map(|n| n.as_str().to_string())),
                        Arg::I(now),
                        Arg::S(json_text(e)),
                    ]);
                    match (e.kind, &e.incident_id) {
                        (EventKind::Opened, Some(id)) => {
                            let info = plan.subjects.get(&e.subject).cloned().unwrap_or_default();
                            opened.push(vec![
                                Arg::S(id.clone()),
                                Arg::S(e.subject.clone()),
                                Arg::S(e.subject_kind.as_str().to_string()),
                                Arg::S(info.title),
                                Arg::S(info.severity),
                                Arg::I(now),
                                Arg::S(r.run_id.clone()),
                                Arg::NI(e.last_red_at.map(ms)),
                            ]);
                        }
                        (EventKind::Resolved, Some(id)) => {
                            resolved.entry(now).or_default().push(id.clone());
                        }
                        _ => {}
                    }
                }
                // An incident opens and resolves in different runs, so opening first is enough.
                $insert(
                    &mut tx,
                    "INSERT INTO incidents (id, subject, kind, title, severity, opened_at, \
                     opened_run_id, last_red_at)",
                    "",
                    8,
                    opened,
                )
                .await?;
                for (at_ms, ids) in resolved {
                    $resolve(&mut tx, at_ms, &r.run_id, ids).await?;
                }
                $insert(
                    &mut tx,
                    "INSERT INTO incident_events (run_id, subject, incident_id, event, notice, at, detail)",
                    "",
                    7,
                    events,
                )
                .await?;

                let outbox: Vec<Vec<Arg>> = plan
                    .outbox
                    .iter()
                    .map(|d| {
                        let created = ms(d.created_at);
                        vec![
                            Arg::S(d.id.clone()),
                            Arg::S(d.idempotency_key.clone()),
                            Arg::S(d.sink.clone()),
                            Arg::S(d.notice.clone()),
                            Arg::N(d.incident_id.clone()),
                            Arg::S(d.subject.clone()),
                            Arg::S(r.run_id.clone()),
                            Arg::S(json_text(&d.payload)),
                            Arg::I(created),
                            Arg::S("pending".into()),
                            Arg::I(0),
                            Arg::I(created),
                        ]
                    })
                    .collect();
                let n_outbox = outbox.len();
                $insert(
                    &mut tx,
                    "INSERT INTO outbox (id, idempotency_key, sink, notice, incident_id, subject, \
                     run_id, payload, created_at, status, attempts, next_attempt_at)",
                    "ON CONFLICT (idempotency_key) DO NOTHING",
                    12,
                    outbox,
                )
                .await?;
                tx.commit().await.map_err(db)?;
                Ok(Recorded {
                    run_id: r.run_id.clone(),
                    results: n_results,
                    violations: n_violations,
                    events: plan.events,
                    deliveries: n_outbox,
                })
            }

            fn run_summary(row: &<$db as sqlx::Database>::Row) -> Result<RunSummary> {
                let su: String = row.try_get(15).map_err(db)?;
                Ok(RunSummary {
                    run_id: row.try_get(0).map_err(db)?,
                    suite: row.try_get(1).map_err(db)?,
                    trigger: row.try_get(2).map_err(db)?,
                    started_at: from_ms(row.try_get(3).map_err(db)?),
                    duration_ms: row.try_get::<i64, _>(4).map_err(db)? as u64,
                    status: row.try_get(5).map_err(db)?,
                    exit_code: row.try_get::<i64, _>(6).map_err(db)? as i32,
                    counts: Counts {
                        pass: row.try_get::<i64, _>(7).map_err(db)? as u64,
                        warn: row.try_get::<i64, _>(8).map_err(db)? as u64,
                        fail: row.try_get::<i64, _>(9).map_err(db)? as u64,
                        skip: row.try_get::<i64, _>(10).map_err(db)? as u64,
                        error: row.try_get::<i64, _>(11).map_err(db)? as u64,
                    },
                    automation_error: row.try_get(12).map_err(db)?,
                    lock_skipped: row.try_get(13).map_err(db)?,
                    skipped_budget: row.try_get::<i64, _>(14).map_err(db)? as u64,
                    sources_unavailable: serde_json::from_str::<Vec<SourceUnavailable>>(&su)
                        .map_err(decode)?,
                })
            }

            fn incident_row(row: &<$db as sqlx::Database>::Row) -> Result<IncidentRow> {
                Ok(IncidentRow {
                    id: row.try_get(0).map_err(db)?,
                    subject: row.try_get(1).map_err(db)?,
                    kind: row.try_get(2).map_err(db)?,
                    title: row.try_get(3).map_err(db)?,
                    severity: row.try_get(4).map_err(db)?,
                    opened_at: from_ms(row.try_get(5).map_err(db)?),
                    opened_run_id: row.try_get(6).map_err(db)?,
                    resolved_at: row.try_get::<Option<i64>, _>(7).map_err(db)?.map(from_ms),
                    resolved_run_id: row.try_get(8).map_err(db)?,
                    last_red_at: row.try_get::<Option<i64>, _>(9).map_err(db)?.map(from_ms),
                })
            }

            /// `id, run_id, invariant_id, severity, at, observed`.
            fn violation_row(row: &<$db as sqlx::Database>::Row) -> Result<ViolationRow> {
                let obs: String = row.try_get(5).map_err(db)?;
                Ok(ViolationRow {
                    id: row.try_get(0).map_err(db)?,
                    run_id: row.try_get(1).map_err(db)?,
                    invariant: row.try_get(2).map_err(db)?,
                    severity: row.try_get(3).map_err(db)?,
                    at: from_ms(row.try_get(4).map_err(db)?),
                    observed: serde_json::from_str(&obs).map_err(decode)?,
                })
            }

            fn delivery_row(row: &<$db as sqlx::Database>::Row) -> Result<Delivery> {
                let payload: String = row.try_get(6).map_err(db)?;
                let status: String = row.try_get(8).map_err(db)?;
                Ok(Delivery {
                    id: row.try_get(0).map_err(db)?,
                    idempotency_key: row.try_get(1).map_err(db)?,
                    sink: row.try_get(2).map_err(db)?,
                    notice: row.try_get(3).map_err(db)?,
                    incident_id: row.try_get(4).map_err(db)?,
                    subject: row.try_get(5).map_err(db)?,
                    payload: serde_json::from_str(&payload).map_err(decode)?,
                    created_at: from_ms(row.try_get(7).map_err(db)?),
                    status: if status == "delivered" {
                        DeliveryStatus::Delivered
                    } else {
                        DeliveryStatus::Pending
                    },
                    attempts: row.try_get::<i64, _>(9).map_err(db)? as u32,
                    next_attempt_at: from_ms(row.try_get(10).map_err(db)?),
                    delivered_at: row.try_get::<Option<i64>, _>(11).map_err(db)?.map(from_ms),
                    last_error: row.try_get(12).map_err(db)?,
                })
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn record_run<'a>(
                &'a self,
                run: &'a RunRecord<'a>,
                plan: &'a Planner<'a>,
            ) -> BoxFuture<'a, Result<Recorded>> {
                Box::pin(self.record_run_inner(run, plan))
            }

            fn incident_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, IncidentState>>> {
                Box::pin(async move {
                    let mut out = BTreeMap::new();
                    for row in sqlx::query("SELECT subject, state FROM incident_states")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?
                    {
                        let subject: String = row.try_get(0).map_err(db)?;
                        let state: String = row.try_get(1).map_err(db)?;
                        out.insert(subject, serde_json::from_str(&state).map_err(decode)?);
                    }
                    Ok(out)
                })
            }

            fn runs<'a>(&'a self, q: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunSummary>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if let Some(s) = &q.suite {
                        f.add("suite = {}", Arg::S(s.clone()));
                    }
                    if let Some(t) = q.since {
                        f.add("started_at >= {}", Arg::I(ms(t)));
                    }
                    if let Some(t) = q.until {
                        f.add("started_at < {}", Arg::I(ms(t)));
                    }
                    let sql = format!(
                        "SELECT run_id, suite, trigger, started_at, duration_ms, status, exit_code, \
                         n_pass, n_warn, n_fail, n_skip, n_error, automation_error, lock_skipped, \
                         skipped_budget, sources_unavailable FROM runs {} \
                         ORDER BY started_at DESC, run_id DESC LIMIT {}",
                        f.where_sql(),
                        limit_of(q.limit)
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    rows.iter().map(Self::run_summary).collect()
                })
            }

            fn run_report<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunReport>>> {
                Box::pin(async move {
                    let Some(row) = sqlx::query(
                        "SELECT run_id, suite, trigger, started_at, duration_ms, status, exit_code, \
                         n_pass, n_warn, n_fail, n_skip, n_error, automation_error, lock_skipped, \
                         skipped_budget, sources_unavailable FROM runs WHERE run_id = $1",
                    )
                    .bind(run_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    else {
                        return Ok(None);
                    };
                    let s = Self::run_summary(&row)?;
                    let mut violations: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
                    for v in sqlx::query(
                        "SELECT invariant_id, observed FROM violations WHERE run_id = $1 \
                         ORDER BY invariant_id, seq",
                    )
                    .bind(run_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let id: String = v.try_get(0).map_err(db)?;
                        let obs: String = v.try_get(1).map_err(db)?;
                        violations
                            .entry(id)
                            .or_default()
                            .push(serde_json::from_str(&obs).map_err(decode)?);
                    }
                    let mut results = Vec::new();
                    for r in sqlx::query(
                        "SELECT invariant_id, title, severity, outcome, reason, examined, vacuous, \
                         duration_ms, measured, violations_total, runbook FROM results \
                         WHERE run_id = $1 ORDER BY seq",
                    )
                    .bind(run_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let id: String = r.try_get(0).map_err(db)?;
                        let outcome: String = r.try_get(3).map_err(db)?;
                        let measured: String = r.try_get(8).map_err(db)?;
                        results.push(InvariantResult {
                            violations: violations.remove(&id).unwrap_or_default(),
                            id,
                            title: r.try_get(1).map_err(db)?,
                            severity: r.try_get(2).map_err(db)?,
                            outcome: outcome_of(&outcome)?,
                            reason: r.try_get(4).map_err(db)?,
                            examined: r.try_get::<i64, _>(5).map_err(db)? as u64,
                            vacuous: r.try_get(6).map_err(db)?,
                            duration_ms: r.try_get::<i64, _>(7).map_err(db)? as u64,
                            measured: serde_json::from_str(&measured).map_err(decode)?,
                            violations_total: r.try_get::<i64, _>(9).map_err(db)? as u64,
                            runbook: r.try_get(10).map_err(db)?,
                        });
                    }
                    Ok(Some(RunReport {
                        run_id: s.run_id,
                        suite: s.suite,
                        trigger: s.trigger,
                        started_at: s
                            .started_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        duration_ms: s.duration_ms,
                        status: outcome_of(&s.status)?,
                        exit_code: s.exit_code,
                        counts: s.counts,
                        automation_error: s.automation_error,
                        assessment_failures: s.counts.fail,
                        lock_skipped: s.lock_skipped,
                        skipped_budget: s.skipped_budget,
                        sources_unavailable: s.sources_unavailable,
                        results,
                    }))
                })
            }

            fn results<'a>(&'a self, q: &'a ResultQuery) -> BoxFuture<'a, Result<Vec<ResultEntry>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if let Some(s) = &q.invariant {
                        f.add("r.invariant_id = {}", Arg::S(s.clone()));
                    }
                    if let Some(s) = &q.suite {
                        f.add("r.suite = {}", Arg::S(s.clone()));
                    }
                    if let Some(t) = q.since {
                        f.add("r.started_at >= {}", Arg::I(ms(t)));
                    }
                    let sql = format!(
                        "SELECT r.run_id, r.suite, u.trigger, r.started_at, r.invariant_id, r.title, \
                         r.severity, r.outcome, r.reason, r.examined, r.vacuous, r.duration_ms, \
                         r.measured, r.violations_total FROM results r \
                         JOIN runs u ON u.run_id = r.run_id {} \
                         ORDER BY r.started_at DESC, r.run_id DESC, r.seq LIMIT {}",
                        f.where_sql(),
                        limit_of(q.limit)
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    rows.iter()
                        .map(|r| {
                            let measured: String = r.try_get(12).map_err(db)?;
                            Ok(ResultEntry {
                                run_id: r.try_get(0).map_err(db)?,
                                suite: r.try_get(1).map_err(db)?,
                                trigger: r.try_get(2).map_err(db)?,
                                started_at: from_ms(r.try_get(3).map_err(db)?),
                                id: r.try_get(4).map_err(db)?,
                                title: r.try_get(5).map_err(db)?,
                                severity: r.try_get(6).map_err(db)?,
                                outcome: r.try_get(7).map_err(db)?,
                                reason: r.try_get(8).map_err(db)?,
                                examined: r.try_get::<i64, _>(9).map_err(db)? as u64,
                                vacuous: r.try_get(10).map_err(db)?,
                                duration_ms: r.try_get::<i64, _>(11).map_err(db)? as u64,
                                measured: serde_json::from_str(&measured).map_err(decode)?,
                                violations_total: r.try_get::<i64, _>(13).map_err(db)? as u64,
                            })
                        })
                        .collect()
                })
            }

            fn incidents<'a>(&'a self, q: &'a IncidentQuery) -> BoxFuture<'a, Result<Vec<IncidentRow>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if q.open_only {
                        f.clauses.push("resolved_at IS NULL".into());
                    }
                    if let Some(s) = &q.subject {
                        f.add("subject = {}", Arg::S(s.clone()));
                    }
                    if let Some(t) = q.since {
                        f.add("(opened_at >= {0} OR resolved_at >= {0})".replace("{0}", "{}").as_str(), Arg::I(ms(t)));
                    }
                    let sql = format!(
                        "SELECT id, subject, kind, title, severity, opened_at, opened_run_id, \
                         resolved_at, resolved_run_id, last_red_at FROM incidents {} \
                         ORDER BY opened_at DESC, id DESC LIMIT {}",
                        f.where_sql(),
                        limit_of(q.limit)
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    rows.iter().map(Self::incident_row).collect()
                })
            }

            fn violations<'a>(
                &'a self,
                q: &'a ViolationQuery,
            ) -> BoxFuture<'a, Result<Page<ViolationRow>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if let Some(s) = &q.invariant {
                        f.add("invariant_id = {}", Arg::S(s.clone()));
                    }
                    if let Some(s) = &q.severity {
                        f.add("severity = {}", Arg::S(s.clone()));
                    }
                    if let Some(t) = q.since {
                        f.add("at >= {}", Arg::I(ms(t)));
                    }
                    let limit = limit_of(q.limit);
                    let cols = "id, run_id, invariant_id, severity, at, observed";
                    let order = format!("ORDER BY at DESC, id DESC LIMIT {}", limit + 1);
                    let sql = match &q.cursor {
                        None => format!("SELECT {cols} FROM violations {} {order}", f.where_sql()),
                        Some(c) => {
                            let id: i64 = c
                                .parse()
                                .map_err(|_| StoreError::Db(format!("invalid cursor `{c}`")))?;
                            // After the cursor's row in (at, id) order: the rest of its `at`,
                            // then everything older — two index range scans. (A row-value
                            // `(at, id) < (…)` makes SQLite seek on `at` alone and step over
                            // every row of that `at` it already served: a big run's pages
                            // would get slower and slower.)
                            let n = f.next();
                            f.args.push(Arg::I(id));
                            let at = format!("(SELECT at FROM violations WHERE id = ${n})");
                            let branch = |cond: String| {
                                let mut clauses = f.clauses.clone();
                                clauses.push(cond);
                                format!(
                                    "SELECT * FROM (SELECT {cols} FROM violations WHERE {} {order})",
                                    clauses.join(" AND ")
                                )
                            };
                            format!(
                                "{} a UNION ALL {} b {order}",
                                branch(format!("at = {at} AND id < ${n}")),
                                branch(format!("at < {at}")),
                            )
                        }
                    };
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    let mut items = rows
                        .iter()
                        .map(Self::violation_row)
                        .collect::<Result<Vec<_>>>()?;
                    let next_cursor = if items.len() as i64 > limit {
                        items.truncate(limit as usize);
                        items.last().map(|v| v.id.to_string())
                    } else {
                        None
                    };
                    Ok(Page { items, next_cursor })
                })
            }

            fn report(
                &self,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> BoxFuture<'_, Result<ReportData>> {
                Box::pin(async move {
                    let (a, b) = (ms(from), ms(to));
                    let count = |r: &<$db as sqlx::Database>::Row, i: usize| -> Result<u64> {
                        Ok(r.try_get::<i64, _>(i).map_err(db)?.max(0) as u64)
                    };
                    let mut runs = Vec::new();
                    for r in sqlx::query(
                        "SELECT suite, trigger, count(*), \
                         count(*) FILTER (WHERE status = 'pass'), \
                         count(*) FILTER (WHERE status = 'warn'), \
                         count(*) FILTER (WHERE status = 'fail'), \
                         count(*) FILTER (WHERE status = 'error'), \
                         count(*) FILTER (WHERE lock_skipped), \
                         COALESCE(CAST(sum(skipped_budget) AS BIGINT), 0) \
                         FROM runs WHERE started_at >= $1 AND started_at < $2 \
                         GROUP BY suite, trigger ORDER BY suite, trigger",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        runs.push(SuiteRuns {
                            suite: r.try_get(0).map_err(db)?,
                            trigger: r.try_get(1).map_err(db)?,
                            runs: count(&r, 2)?,
                            pass: count(&r, 3)?,
                            warn: count(&r, 4)?,
                            fail: count(&r, 5)?,
                            error: count(&r, 6)?,
                            lock_skipped: count(&r, 7)?,
                            skipped_budget: count(&r, 8)?,
                        });
                    }
                    let mut outcomes = Vec::new();
                    let mut vacuous = Vec::new();
                    for r in sqlx::query(
                        "SELECT invariant_id, max(title), max(severity), count(*), \
                         count(*) FILTER (WHERE outcome = 'pass'), \
                         count(*) FILTER (WHERE outcome = 'warn'), \
                         count(*) FILTER (WHERE outcome = 'fail'), \
                         count(*) FILTER (WHERE outcome = 'skip'), \
                         count(*) FILTER (WHERE outcome = 'error'), \
                         count(*) FILTER (WHERE vacuous AND outcome = 'pass') \
                         FROM results WHERE started_at >= $1 AND started_at < $2 \
                         GROUP BY invariant_id ORDER BY invariant_id",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let o = InvariantOutcomes {
                            id: r.try_get(0).map_err(db)?,
                            title: r.try_get(1).map_err(db)?,
                            severity: r.try_get(2).map_err(db)?,
                            runs: count(&r, 3)?,
                            pass: count(&r, 4)?,
                            warn: count(&r, 5)?,
                            fail: count(&r, 6)?,
                            skip: count(&r, 7)?,
                            error: count(&r, 8)?,
                            vacuous: count(&r, 9)?,
                        };
                        if o.vacuous > 0 {
                            vacuous.push(Count { name: o.id.clone(), count: o.vacuous });
                        }
                        outcomes.push(o);
                    }
                    let incidents: Vec<IncidentRow> = sqlx::query(
                        "SELECT id, subject, kind, title, severity, opened_at, opened_run_id, \
                         resolved_at, resolved_run_id, last_red_at FROM incidents \
                         WHERE (opened_at >= $1 AND opened_at < $2) \
                            OR (resolved_at >= $1 AND resolved_at < $2) \
                            OR (opened_at < $1 AND resolved_at IS NULL) \
                         ORDER BY opened_at, id",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(Self::incident_row)
                    .collect::<Result<_>>()?;
                    let in_range = |t: DateTime<Utc>| t >= from && t < to;
                    let incidents_opened = incidents.iter().filter(|i| in_range(i.opened_at)).count() as u64;
                    let mut ttr: Vec<u64> = incidents
                        .iter()
                        .filter_map(|i| i.resolved_at.filter(|t| in_range(*t)).map(|t| (t - i.opened_at).num_milliseconds().max(0) as u64))
                        .collect();
                    ttr.sort_unstable();
                    let incidents_resolved = ttr.len() as u64;
                    let median_time_to_resolve_ms = (!ttr.is_empty()).then(|| ttr[ttr.len() / 2]);
                    let max_time_to_resolve_ms = ttr.last().copied();

                    let mut flapping = Vec::new();
                    for r in sqlx::query(
                        "SELECT subject, count(*) FROM incident_events \
                         WHERE event = 'flapping' AND at >= $1 AND at < $2 \
                         GROUP BY subject ORDER BY subject",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        flapping.push(Count { name: r.try_get(0).map_err(db)?, count: count(&r, 1)? });
                    }

                    let mut skips: BTreeMap<String, u64> = BTreeMap::new();
                    for r in sqlx::query(
                        "SELECT reason, count(*) FROM results \
                         WHERE outcome = 'skip' AND started_at >= $1 AND started_at < $2 \
                         GROUP BY reason",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let reason: Option<String> = r.try_get(0).map_err(db)?;
                        *skips.entry(skip_category(reason.as_deref()).to_string()).or_default() += count(&r, 1)?;
                    }

                    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                    for r in sqlx::query(
                        "SELECT sources, count(*) FROM results \
                         WHERE outcome = 'error' AND started_at >= $1 AND started_at < $2 \
                         GROUP BY sources",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let sources: String = r.try_get(0).map_err(db)?;
                        let n = count(&r, 1)?;
                        let list: Vec<String> = serde_json::from_str(&sources).map_err(decode)?;
                        if list.is_empty() {
                            *errors.entry("(none)".into()).or_default() += n;
                        }
                        for s in list {
                            *errors.entry(s).or_default() += n;
                        }
                    }
                    let mut unavailable: BTreeMap<String, u64> = BTreeMap::new();
                    for r in sqlx::query(
                        "SELECT sources_unavailable FROM runs \
                         WHERE sources_unavailable <> '[]' AND started_at >= $1 AND started_at < $2",
                    )
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    {
                        let su: String = r.try_get(0).map_err(db)?;
                        for s in serde_json::from_str::<Vec<SourceUnavailable>>(&su).map_err(decode)? {
                            *unavailable.entry(s.source).or_default() += 1;
                        }
                    }
                    let counts = |m: BTreeMap<String, u64>| -> Vec<Count> {
                        m.into_iter().map(|(name, count)| Count { name, count }).collect()
                    };
                    Ok(ReportData {
                        from,
                        to,
                        runs,
                        outcomes,
                        incidents,
                        incidents_opened,
                        incidents_resolved,
                        median_time_to_resolve_ms,
                        max_time_to_resolve_ms,
                        flapping,
                        vacuous,
                        skips_by_reason: counts(skips),
                        errors_by_source: counts(errors),
                        unavailable_by_source: counts(unavailable),
                    })
                })
            }

            fn prune(
                &self,
                retention: Retention,
                now: DateTime<Utc>,
            ) -> BoxFuture<'_, Result<PruneCounts>> {
                Box::pin(async move {
                    let cut = |d: Duration| {
                        ms(now) - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
                    };
                    let runs_cut = cut(retention.runs);
                    let viol_cut = cut(retention.violations);
                    let mut tx = self.begin_write().await?;
                    let mut exec = async |sql: &'static str, v: i64| -> Result<u64> {
                        Ok(sqlx::query(sql)
                            .bind(v)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?
                            .rows_affected())
                    };
                    let results = exec("DELETE FROM results WHERE started_at < $1", runs_cut).await?;
                    let runs = exec("DELETE FROM runs WHERE started_at < $1", runs_cut).await?;
                    let violations = exec("DELETE FROM violations WHERE at < $1", viol_cut).await?;
                    let incidents = exec(
                        "DELETE FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < $1",
                        runs_cut,
                    )
                    .await?;
                    exec("DELETE FROM incident_events WHERE at < $1", runs_cut).await?;
                    exec(
                        "DELETE FROM delivery_attempts WHERE delivery_id IN \
                         (SELECT id FROM outbox WHERE status = 'delivered' AND delivered_at < $1)",
                        runs_cut,
                    )
                    .await?;
                    let deliveries = exec(
                        "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < $1",
                        runs_cut,
                    )
                    .await?;
                    // Claimed ticks age like runs, but each suite keeps its latest: `last_tick`
                    // decides misfires and the dead-man's switch.
                    exec(
                        "DELETE FROM schedule_ticks WHERE tick < $1 AND tick < \
                         (SELECT max(t.tick) FROM schedule_ticks t WHERE t.suite = schedule_ticks.suite)",
                        runs_cut,
                    )
                    .await?;
                    tx.commit().await.map_err(db)?;
                    Ok(PruneCounts { runs, results, violations, incidents, deliveries })
                })
            }

            fn remembered<'a>(
                &'a self,
                invariant: &'a str,
            ) -> BoxFuture<'a, Result<Vec<RememberedState>>> {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT key, state, seen_at FROM remembered_states \
                         WHERE invariant_id = $1 ORDER BY key",
                    )
                    .bind(invariant)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| {
                        Ok(RememberedState {
                            invariant: invariant.to_string(),
                            key: r.try_get(0).map_err(db)?,
                            state: r.try_get(1).map_err(db)?,
                            seen_at: from_ms(r.try_get(2).map_err(db)?),
                        })
                    })
                    .collect()
                })
            }

            fn forget_before<'a>(
                &'a self,
                invariant: &'a str,
                before: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<u64>> {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "DELETE FROM remembered_states WHERE invariant_id = $1 AND seen_at < $2",
                    )
                    .bind(invariant)
                    .bind(ms(before))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected())
                })
            }

            fn pending(
                &self,
                due_at: Option<DateTime<Utc>>,
                limit: u32,
            ) -> BoxFuture<'_, Result<Vec<Delivery>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    f.clauses.push("status = 'pending'".into());
                    if let Some(t) = due_at {
                        f.add("next_attempt_at <= {}", Arg::I(ms(t)));
                    }
                    let sql = format!(
                        "SELECT id, idempotency_key, sink, notice, incident_id, subject, payload, \
                         created_at, status, attempts, next_attempt_at, delivered_at, last_error \
                         FROM outbox {} ORDER BY created_at, id LIMIT {}",
                        f.where_sql(),
                        limit_of(limit)
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    rows.iter().map(Self::delivery_row).collect()
                })
            }

            fn claim<'a>(
                &'a self,
                id: &'a str,
                owner: &'a str,
                until: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<bool>> {
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE outbox SET lease_owner = $1, lease_until = $2 \
                         WHERE id = $3 AND status = 'pending' \
                         AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
                    )
                    .bind(owner)
                    .bind(ms(until))
                    .bind(id)
                    .bind(ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                })
            }

            fn record_attempt<'a>(&'a self, a: &'a AttemptRecord) -> BoxFuture<'a, Result<()>> {
                Box::pin(async move {
                    let mut tx = self.pool.begin().await.map_err(db)?;
                    sqlx::query(
                        "INSERT INTO delivery_attempts (delivery_id, attempt, at, duration_ms, ok, code, error) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7)",
                    )
                    .bind(&a.delivery_id)
                    .bind(i64::from(a.attempt))
                    .bind(ms(a.at))
                    .bind(a.duration_ms as i64)
                    .bind(a.ok)
                    .bind(a.code.map(i64::from))
                    .bind(a.error.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    if a.ok {
                        sqlx::query(
                            "UPDATE outbox SET status = 'delivered', delivered_at = $1, attempts = $2, \
                             last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE id = $3",
                        )
                        .bind(ms(a.at))
                        .bind(i64::from(a.attempt))
                        .bind(&a.delivery_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    } else {
                        sqlx::query(
                            "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
                             lease_owner = NULL, lease_until = NULL \
                             WHERE id = $4 AND status = 'pending'",
                        )
                        .bind(i64::from(a.attempt))
                        .bind(ms(a.next_attempt_at.unwrap_or(a.at)))
                        .bind(a.error.as_deref())
                        .bind(&a.delivery_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    }
                    tx.commit().await.map_err(db)?;
                    Ok(())
                })
            }

            fn deliveries<'a>(&'a self, q: &'a DeliveryQuery) -> BoxFuture<'a, Result<Vec<Delivery>>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if let Some(s) = &q.incident_id {
                        f.add("incident_id = {}", Arg::S(s.clone()));
                    }
                    if let Some(s) = &q.subject {
                        f.add("subject = {}", Arg::S(s.clone()));
                    }
                    if let Some(s) = &q.sink {
                        f.add("sink = {}", Arg::S(s.clone()));
                    }
                    let _ = f.next();
                    let sql = format!(
                        "SELECT id, idempotency_key, sink, notice, incident_id, subject, payload, \
                         created_at, status, attempts, next_attempt_at, delivered_at, last_error \
                         FROM outbox {} ORDER BY created_at, id LIMIT {}",
                        f.where_sql(),
                        if q.limit == 0 { 10_000 } else { i64::from(q.limit) }
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    rows.iter().map(Self::delivery_row).collect()
                })
            }

            fn violation(&self, id: i64) -> BoxFuture<'_, Result<Option<ViolationRow>>> {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT id, run_id, invariant_id, severity, at, observed FROM violations \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .as_ref()
                    .map(Self::violation_row)
                    .transpose()
                })
            }

            fn violation_stats(
                &self,
                since: Option<DateTime<Utc>>,
            ) -> BoxFuture<'_, Result<ViolationStats>> {
                Box::pin(async move {
                    let mut f = Filter::default();
                    if let Some(t) = since {
                        f.add("at >= {}", Arg::I(ms(t)));
                    }
                    let sql = format!(
                        "SELECT invariant_id, severity, count(*), min(at), max(at) FROM violations {} \
                         GROUP BY invariant_id, severity \
                         ORDER BY count(*) DESC, invariant_id, severity",
                        f.where_sql()
                    );
                    let rows = Self::bind_args(sqlx::query(AssertSqlSafe(sql)), &f.args)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db)?;
                    let mut stats = ViolationStats { since, ..ViolationStats::default() };
                    for r in &rows {
                        let s = InvariantViolationStats {
                            id: r.try_get(0).map_err(db)?,
                            severity: r.try_get(1).map_err(db)?,
                            count: r.try_get::<i64, _>(2).map_err(db)?.max(0) as u64,
                            first_at: from_ms(r.try_get(3).map_err(db)?),
                            last_at: from_ms(r.try_get(4).map_err(db)?),
                        };
                        stats.total += s.count;
                        *stats.by_severity.entry(s.severity.clone()).or_default() += s.count;
                        stats.invariants.push(s);
                    }
                    Ok(stats)
                })
            }

            fn latest_outcomes(
                &self,
                per_invariant: u32,
            ) -> BoxFuture<'_, Result<BTreeMap<String, Vec<OutcomeAt>>>> {
                Box::pin(async move {
                    let mut out: BTreeMap<String, Vec<OutcomeAt>> = BTreeMap::new();
                    if per_invariant == 0 {
                        return Ok(out);
                    }
                    let n = i64::from(per_invariant.min(10_000));
                    // A window over the whole of `results` sorts every row ever kept (seconds
                    // at a million). Instead: the distinct invariants by a loose index scan
                    // (`inv`), each one's N-th newest start time by an index probe (`bound`),
                    // and the window only over the rows from there on — all through
                    // `results_invariant_started`.
                    let rows = sqlx::query(
                        "WITH RECURSIVE inv(id) AS ( \
                             SELECT min(invariant_id) FROM results \
                             UNION ALL \
                             SELECT (SELECT min(r.invariant_id) FROM results r WHERE r.invariant_id > inv.id) \
                             FROM inv WHERE inv.id IS NOT NULL \
                         ), bound(id, since) AS ( \
                             SELECT inv.id, COALESCE((SELECT x.started_at FROM results x \
                                 WHERE x.invariant_id = inv.id \
                                 ORDER BY x.started_at DESC LIMIT 1 OFFSET $1), $3) \
                             FROM inv WHERE inv.id IS NOT NULL \
                         ) \
                         SELECT invariant_id, run_id, started_at, outcome, reason, violations_total FROM ( \
                             SELECT r.invariant_id, r.run_id, r.started_at, r.outcome, r.reason, \
                                 r.violations_total, ROW_NUMBER() OVER (PARTITION BY r.invariant_id \
                                 ORDER BY r.started_at DESC, r.run_id DESC, r.seq DESC) AS rn \
                             FROM bound b JOIN results r \
                                 ON r.invariant_id = b.id AND r.started_at >= b.since \
                         ) c WHERE rn <= $2 ORDER BY invariant_id, rn",
                    )
                    .bind(n - 1)
                    .bind(n)
                    .bind(i64::MIN)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                    for r in &rows {
                        let id: String = r.try_get(0).map_err(db)?;
                        out.entry(id).or_default().push(OutcomeAt {
                            run_id: r.try_get(1).map_err(db)?,
                            started_at: from_ms(r.try_get(2).map_err(db)?),
                            outcome: r.try_get(3).map_err(db)?,
                            reason: r.try_get(4).map_err(db)?,
                            violations_total: r.try_get::<i64, _>(5).map_err(db)?.max(0) as u64,
                        });
                    }
                    Ok(out)
                })
            }

            fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts>> {
                Box::pin(async move {
                    let r = sqlx::query(
                        "SELECT (SELECT count(*) FROM outbox WHERE status = 'delivered'), \
                         (SELECT count(*) FROM delivery_attempts WHERE NOT ok), \
                         (SELECT count(*) FROM outbox WHERE status = 'pending')",
                    )
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db)?;
                    let n = |i: usize| -> Result<u64> {
                        Ok(r.try_get::<i64, _>(i).map_err(db)?.max(0) as u64)
                    };
                    Ok(DeliveryCounts { delivered: n(0)?, failed_attempts: n(1)?, pending: n(2)? })
                })
            }

            fn claim_tick<'a>(
                &'a self,
                suite: &'a str,
                tick: DateTime<Utc>,
                owner: &'a str,
                now: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<bool>> {
                Box::pin(async move {
                    let n = sqlx::query(
                        "INSERT INTO schedule_ticks (suite, tick, owner, claimed_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (suite, tick) DO NOTHING",
                    )
                    .bind(suite)
                    .bind(ms(tick))
                    .bind(owner)
                    .bind(ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                })
            }

            fn last_tick<'a>(&'a self, suite: &'a str) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>> {
                Box::pin(async move {
                    let r = sqlx::query("SELECT max(tick) FROM schedule_ticks WHERE suite = $1")
                        .bind(suite)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(r.try_get::<Option<i64>, _>(0).map_err(db)?.map(from_ms))
                })
            }

            fn reclaim_tick<'a>(
                &'a self,
                suite: &'a str,
                tick: DateTime<Utc>,
                owner: &'a str,
                now: DateTime<Utc>,
                stale_before: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<bool>> {
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE schedule_ticks SET owner = $1, claimed_at = $2 \
                         WHERE suite = $3 AND tick = $4 AND run_id IS NULL AND claimed_at < $5",
                    )
                    .bind(owner)
                    .bind(ms(now))
                    .bind(suite)
                    .bind(ms(tick))
                    .bind(ms(stale_before))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                })
            }

            fn renew_lease<'a>(
                &'a self,
                name: &'a str,
                owner: &'a str,
                until: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<bool>> {
                Box::pin(async move {
                    let n = sqlx::query(
                        "UPDATE leases SET expires_at = $1 WHERE name = $2 AND owner = $3",
                    )
                    .bind(ms(until))
                    .bind(name)
                    .bind(owner)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                })
            }

            fn finish_tick<'a>(
                &'a self,
                suite: &'a str,
                tick: DateTime<Utc>,
                run_id: &'a str,
            ) -> BoxFuture<'a, Result<()>> {
                Box::pin(async move {
                    sqlx::query("UPDATE schedule_ticks SET run_id = $1 WHERE suite = $2 AND tick = $3")
                        .bind(run_id)
                        .bind(suite)
                        .bind(ms(tick))
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                })
            }

            fn last_finished_tick<'a>(
                &'a self,
                suite: &'a str,
            ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>> {
                Box::pin(async move {
                    let r = sqlx::query(
                        "SELECT max(tick) FROM schedule_ticks WHERE suite = $1 AND run_id IS NOT NULL",
                    )
                    .bind(suite)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db)?;
                    Ok(r.try_get::<Option<i64>, _>(0).map_err(db)?.map(from_ms))
                })
            }

            fn acquire_lease<'a>(
                &'a self,
                name: &'a str,
                owner: &'a str,
                until: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<bool>> {
                Box::pin(async move {
                    // The conflict update's WHERE is evaluated on the row as it stands once
                    // locked (Postgres) or under the write lock (SQLite): zero rows means
                    // another owner holds an unexpired lease.
                    let n = sqlx::query(
                        "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE \
                         SET owner = excluded.owner, expires_at = excluded.expires_at \
                         WHERE leases.expires_at <= $4 OR leases.owner = excluded.owner",
                    )
                    .bind(name)
                    .bind(owner)
                    .bind(ms(until))
                    .bind(ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    Ok(n == 1)
                })
            }

            fn release_lease<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, Result<()>> {
                Box::pin(async move {
                    sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
                        .bind(name)
                        .bind(owner)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    Ok(())
                })
            }

            fn attempts<'a>(&'a self, delivery_id: &'a str) -> BoxFuture<'a, Result<Vec<AttemptRecord>>> {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT attempt, at, duration_ms, ok, code, error FROM delivery_attempts \
                         WHERE delivery_id = $1 ORDER BY attempt, id",
                    )
                    .bind(delivery_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| {
                        Ok(AttemptRecord {
                            delivery_id: delivery_id.to_string(),
                            attempt: r.try_get::<i64, _>(0).map_err(db)? as u32,
                            at: from_ms(r.try_get(1).map_err(db)?),
                            duration_ms: r.try_get::<i64, _>(2).map_err(db)? as u64,
                            ok: r.try_get(3).map_err(db)?,
                            code: r.try_get::<Option<i64>, _>(4).map_err(db)?.map(|c| c as i32),
                            error: r.try_get(5).map_err(db)?,
                            next_attempt_at: None,
                        })
                    })
                    .collect()
                })
            }
        }
    };
}

store_impl!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    insert_sqlite,
    resolve_sqlite
);
store_impl!(PgStore, sqlx::Postgres, "postgres", insert_pg, resolve_pg);
