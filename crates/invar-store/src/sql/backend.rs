//! What differs between SQLite and Postgres, and nothing else: opening, the serialised write
//! transaction, bulk inserts (SQLite: multi-row `VALUES`; Postgres: `UNNEST` of arrays) and
//! the migrations' DDL.

use super::{Arg, CHUNK, Exec, Insert, PgStore, SqlStore, SqliteStore, Stmt, Tx, db};
use crate::migrate::{self, Migration};
use crate::{Result, StoreError};
use futures::future::BoxFuture;
use invar_core::Secret;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Pool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

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

/// A database [`SqlStore`] runs on: only what differs between SQLite and Postgres. Sealed:
/// implemented by [`SqliteBackend`] and [`PgBackend`] only.
pub trait Backend: sealed::Sealed + Send + Sync + Sized + 'static {
    type DB: sqlx::Database<Connection = Self::Conn>;
    /// The backend's connection; runs the shared statements.
    type Conn: Exec + sqlx::Connection<Database = Self::DB>;

    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// Append only; never edit a released migration.
    const MIGRATIONS: &'static [Migration];

    /// Begins a transaction that writers across every process take one at a time.
    fn begin_write(pool: &Pool<Self::DB>) -> BoxFuture<'_, Result<Tx<Self>>>;

    /// Inserts `rows` (each `insert.cols` values) into `insert.head`'s table.
    fn insert<'a>(
        conn: &'a mut Self::Conn,
        insert: Insert,
        rows: Vec<Vec<Arg>>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Marks the incidents `ids` resolved at `at` by `run_id`.
    fn resolve<'a>(
        conn: &'a mut Self::Conn,
        at: i64,
        run_id: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Embedded SQLite: WAL, writers serialised by `BEGIN IMMEDIATE`.
pub struct SqliteBackend;

/// Postgres: writers serialised by an advisory transaction lock.
pub struct PgBackend;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SqliteBackend {}
    impl Sealed for super::PgBackend {}
}

impl Backend for SqliteBackend {
    type DB = sqlx::Sqlite;
    type Conn = SqliteConnection;
    const NAME: &'static str = "sqlite";
    const MIGRATIONS: &'static [Migration] = migrate::SQLITE;

    fn begin_write(pool: &Pool<sqlx::Sqlite>) -> BoxFuture<'_, Result<Tx<Self>>> {
        // IMMEDIATE takes the write lock up front: a reader upgrading later could fail.
        Box::pin(async move { pool.begin_with("BEGIN IMMEDIATE").await.map_err(db) })
    }

    fn insert<'a>(
        conn: &'a mut SqliteConnection,
        insert: Insert,
        rows: Vec<Vec<Arg>>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<Vec<Arg>> = rows.by_ref().take(CHUNK).collect();
                let sql = values_sql(insert.head, insert.cols, chunk.len(), insert.tail);
                let args = chunk.into_iter().flatten().collect();
                conn.execute(Stmt::built(sql).bind_all(args)).await?;
            }
            Ok(())
        })
    }

    fn resolve<'a>(
        conn: &'a mut SqliteConnection,
        at: i64,
        run_id: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE incidents SET resolved_at = ?, resolved_run_id = ? WHERE id IN ({})",
                    vec!["?"; chunk.len()].join(",")
                );
                let stmt = Stmt::built(sql)
                    .bind(at)
                    .bind(run_id)
                    .bind_all(chunk.iter().map(Arg::from).collect());
                conn.execute(stmt).await?;
            }
            Ok(())
        })
    }
}

/// `INSERT … VALUES (?,?),(?,?)…` for `rows` rows of `cols` columns. Anonymous placeholders:
/// SQLite looks numbered names up linearly, which makes a 6,000-parameter statement quadratic.
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    format!("{head} VALUES {} {tail}", vec![row; rows].join(","))
}

impl Backend for PgBackend {
    type DB = sqlx::Postgres;
    type Conn = PgConnection;
    const NAME: &'static str = "postgres";
    const MIGRATIONS: &'static [Migration] = migrate::POSTGRES;

    fn begin_write(pool: &Pool<sqlx::Postgres>) -> BoxFuture<'_, Result<Tx<Self>>> {
        Box::pin(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            tx.execute(Stmt::new("SELECT pg_advisory_xact_lock($1)").bind(PG_RECORD_LOCK))
                .await?;
            Ok(tx)
        })
    }

    /// `head SELECT * FROM UNNEST($1::text[], …) tail` — one array per column, prepared once
    /// whatever the number of rows, in batches of at most [`PG_BATCH_BYTES`].
    fn insert<'a>(
        conn: &'a mut PgConnection,
        insert: Insert,
        rows: Vec<Vec<Arg>>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for row in rows {
                let size = pg_row_bytes(&row);
                if !batch.is_empty() && bytes + size > PG_BATCH_BYTES {
                    insert_pg_batch(conn, &insert, std::mem::take(&mut batch)).await?;
                    bytes = 0;
                }
                bytes += size;
                batch.push(row);
            }
            insert_pg_batch(conn, &insert, batch).await
        })
    }

    fn resolve<'a>(
        conn: &'a mut PgConnection,
        at: i64,
        run_id: &'a str,
        ids: Vec<String>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Batched like `insert`, for the same reason.
            let mut batches: Vec<Vec<String>> = Vec::new();
            let (mut current, mut bytes) = (Vec::new(), 0);
            for id in ids {
                let size = 4 + id.len();
                if bytes + size > PG_BATCH_BYTES && !current.is_empty() {
                    batches.push(std::mem::take(&mut current));
                    bytes = 0;
                }
                bytes += size;
                current.push(id);
            }
            if !current.is_empty() {
                batches.push(current);
            }
            for batch in batches {
                sqlx::query(
                    "UPDATE incidents SET resolved_at = $1, resolved_run_id = $2 \
                     WHERE id = ANY($3::text[])",
                )
                .bind(at)
                .bind(run_id)
                .bind(batch)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
            Ok(())
        })
    }
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
    conn: &mut PgConnection,
    insert: &Insert,
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
    debug_assert_eq!(columns.len(), insert.cols);
    for row in rows {
        for (c, a) in columns.iter_mut().zip(row) {
            match (c, a) {
                (Col::I(v), Arg::I(x)) => v.push(Some(x)),
                (Col::I(v), Arg::NI(x)) => v.push(x),
                (Col::S(v), Arg::S(x)) => v.push(Some(x)),
                (Col::S(v), Arg::N(x)) => v.push(x),
                (Col::B(v), Arg::B(x)) => v.push(x),
                _ => return Err(StoreError::Invalid("internal: mixed column types".into())),
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
    let sql = format!(
        "{} SELECT * FROM UNNEST({}) {}",
        insert.head,
        casts.join(", "),
        insert.tail
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in columns {
        q = match c {
            Col::I(v) => q.bind(v),
            Col::S(v) => q.bind(v),
            Col::B(v) => q.bind(v),
        };
    }
    q.execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

impl SqlStore<SqliteBackend> {
    /// Opens (creating and migrating) the SQLite store at `path`; its directory is created.
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
            .busy_timeout(SQLITE_BUSY_WAIT)
            .foreign_keys(true)
            // sqlx hands SQLite rows across a channel from its worker thread; the default 50
            // parks that thread several times for one API page of up to 1,000 rows.
            .row_buffer_size(1024);
        // Two processes opening a new file at once: switching it to WAL needs the file to
        // itself, and SQLite answers SQLITE_BUSY there without waiting on the busy handler.
        // Retried for as long as the busy timeout would have waited.
        let t0 = std::time::Instant::now();
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.clone())
                .await
            {
                Err(e) if is_busy(&e) && t0.elapsed() < SQLITE_BUSY_WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => {
                    break r.map_err(|e| {
                        let full = full_file_system(path).unwrap_or_default();
                        StoreError::Open(format!("`{}`: {e}{full}", path.display()))
                    })?;
                }
            }
        };
        let store = SqlStore::new(pool);
        store.migrate().await?;
        Ok(store)
    }
}

/// `: the file system holding DIR is full (N bytes free)` when the store's directory has
/// (next to) no space left: SQLite reports a full disk at open as `disk I/O error` (it cannot
/// grow the shared-memory file), which does not say what to fix.
fn full_file_system(path: &Path) -> Option<String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    free_bytes(dir)
        .filter(|free| *free < 64 * 1024)
        .map(|free| {
            format!(
                ": the file system holding `{}` is full ({free} bytes free)",
                dir.display()
            )
        })
}

#[cfg(unix)]
#[allow(clippy::useless_conversion)] // u64 on Linux, u32 on macOS (fsblkcnt_t)
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// How long opening a SQLite store waits out another process's lock.
const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(10);

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), with or without an extended code.
fn is_busy(e: &sqlx::Error) -> bool {
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

impl SqlStore<PgBackend> {
    /// Connects (and migrates) a Postgres store; `schema` (created if missing) sets the
    /// `search_path`. Errors are scrubbed of the URL's password.
    pub async fn connect(url: &Secret, schema: Option<&str>) -> Result<PgStore> {
        let scrub = |e: sqlx::Error| StoreError::Open(url.scrub(&e.to_string()));
        let mut opts = PgConnectOptions::from_str(url.expose()).map_err(scrub)?;
        // Same rule as the SQL sources: no TLS to a loopback server unless the URL asks.
        if invar_core::secret::loopback_without_tls_request(opts.get_host(), url.expose()) {
            opts = opts.ssl_mode(PgSslMode::Disable);
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
        let store = SqlStore::new(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Drops a schema (tests use one per run).
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        let ident = schema.replace('"', "\"\"");
        let sql = format!("DROP SCHEMA IF EXISTS \"{ident}\" CASCADE");
        self.execute(Stmt::built(sql)).await?;
        Ok(())
    }
}
