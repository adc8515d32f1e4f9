//! SQL sources — PostgreSQL, MySQL/MariaDB and SQLite: a small, read-only, bounded pool per
//! source; user SQL run with `raw_sql`; every column decoded by its type name into a [`Value`].
//!
//! Why not `AnyPool`: it cannot decode timestamps, numerics or JSON. Each backend here has its
//! own decoder instead, and all three end in the same typed [`Table`].
//!
//! Guarantees, per connection:
//! - read-only by default: Postgres `default_transaction_read_only = on`, MySQL/MariaDB
//!   `SET SESSION TRANSACTION READ ONLY`, SQLite opened with `SQLITE_OPEN_READONLY` (and a
//!   missing SQLite file is an error, never created). This guards against mistakes, not
//!   against SQL that deliberately re-enables writes: use a read-only role for that.
//! - a statement timeout: Postgres `statement_timeout`, MariaDB `max_statement_time` (MySQL
//!   `max_execution_time`), SQLite a progress handler that interrupts the statement; and
//!   every query is also bounded on our side, so a hang always ends in an error.
//! - secrets: every error string passes through [`Secret::scrub`], so neither the URL nor its
//!   password ever appears in a message.
//!
//! Decoding, by the column's type name (never panics, never fails a query for one odd value):
//! integers → `Int` (an unsigned too large for i64 → `Float`); floats and NUMERIC/DECIMAL →
//! `Float`; BOOL (MySQL `TINYINT(1)`) → `Bool`; TIMESTAMPTZ/TIMESTAMP/DATETIME → `Timestamp`
//! (zone-less taken as UTC); DATE → `Date`; JSON/JSONB → parsed; Postgres arrays → `List`
//! (nested for more dimensions); bytes → `Text` when UTF-8, else `0x…` hex; everything else
//! (TIME, UUID, INTERVAL, enums, user types) → its text. SQLite goes by each value's runtime
//! type, reading text in DATETIME/TIMESTAMP/DATE columns as dates and BOOLEAN integers as
//! booleans.
//!
//! Limits: a query that returns no rows gets its column names by preparing the statement
//! (not running it) — for multi-statement SQL with no rows at all, the columns are empty.
//! MariaDB's `JSON` is an alias of `LONGTEXT` and arrives as text.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sink::RowSink;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::StreamExt;
use invar_core::secret::loopback_without_tls_request;
use invar_core::units::format_duration;
use invar_core::value::parse_timestamp;
use invar_core::{Secret, SqlSource, SqliteSource, Table, Value};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Database, Decode, Either, Executor, Pool,
    Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
};

/// Connections are opened within this, at most (or the statement timeout, if shorter).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Our own bound on a query is the statement timeout plus this, so the server's own
/// cancellation (which keeps the connection usable) normally comes first.
const CLIENT_GRACE: Duration = Duration::from_millis(500);

/// Which SQL backend a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
enum Backend {
    Postgres(Pool<Postgres>, PgConnectOptions),
    Mysql(Pool<MySql>, MySqlConnectOptions),
    Sqlite(Pool<Sqlite>, SqliteConnectOptions),
}

/// A bounded pool for one SQL source. Cloning shares the pool.
#[derive(Clone)]
pub struct SqlPool {
    backend: Backend,
    /// The URL (empty for SQLite): every error string is scrubbed with it.
    secret: Secret,
    /// What to name in messages: the redacted URL, or the SQLite path.
    target: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_connections: u32,
    /// Statements sent through `query`, for the run's statistics (and the fusion tests).
    queries: Arc<AtomicU64>,
}

impl fmt::Debug for SqlPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPool")
            .field("dialect", &self.dialect())
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl SqlPool {
    /// The result columns of `sql` and their type names, by preparing it (nothing runs).
    /// Used to compare pushed-down keys natively when both sides have the same type.
    pub async fn column_types(&self, sql: &str) -> Result<Vec<(String, String)>, String> {
        async fn prep<DB: Database>(
            conn: &mut DB::Connection,
            sql: &str,
        ) -> Result<Vec<(String, String)>, sqlx::Error>
        where
            for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        {
            let stmt = conn
                .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
                .await?;
            Ok(stmt
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
                .collect())
        }
        let r = match &self.backend {
            Backend::Postgres(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                prep::<Postgres>(&mut conn, sql).await
            }
            Backend::Mysql(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                prep::<MySql>(&mut conn, sql).await
            }
            Backend::Sqlite(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                prep::<Sqlite>(&mut conn, sql).await
            }
        };
        r.map_err(|e| {
            self.secret.scrub(&format!(
                "cannot prepare on {}: {}",
                self.target,
                describe(&e)
            ))
        })
    }

    /// How many statements `query` has sent through this pool.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Checks that the server answers (one connection, then closed) and returns a lazy pool.
    pub async fn connect_postgres(src: &SqlSource) -> Result<SqlPool, String> {
        let secret = src.url.clone();
        let target = secret.redacted();
        let mut opts = PgConnectOptions::from_str(secret.expose()).map_err(|e| {
            secret.scrub(&format!(
                "invalid postgres url `{target}`: {}",
                describe(&e)
            ))
        })?;
        if opts.get_application_name().is_none() {
            opts = opts.application_name("invar");
        }
        let timeout_ms = src.timeout.as_millis().max(1).to_string();
        let mut settings = vec![("statement_timeout", timeout_ms)];
        if src.read_only {
            settings.push(("default_transaction_read_only", "on".to_string()));
        }
        let mut opts = opts.options(settings);
        // TLS to a loopback server protects nothing and costs two round trips (plus Nagle
        // delays) per connection; an explicit `sslmode` in the URL still wins.
        if loopback_without_tls_request(opts.get_host(), secret.expose()) {
            opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
        }
        let connect_timeout = connect_timeout(src.timeout);

        let pool = pool_options::<Postgres>(src.max_connections, connect_timeout)
            .connect_lazy_with(opts.clone());
        // The first pooled connection proves the server answers and stays for the first
        // query; only when it fails does a direct attempt name the cause.
        if pool.acquire().await.is_err() {
            check_connect(&secret, &target, connect_timeout, async {
                PgConnection::connect_with(&opts).await?.close().await
            })
            .await?;
        }
        Ok(SqlPool {
            queries: Arc::default(),
            backend: Backend::Postgres(pool, opts),
            secret,
            target,
            timeout: src.timeout,
            connect_timeout,
            max_connections: src.max_connections,
        })
    }

    /// Checks that the server answers and accepts the session settings, and returns a lazy pool.
    pub async fn connect_mysql(src: &SqlSource) -> Result<SqlPool, String> {
        let secret = src.url.clone();
        let target = secret.redacted();
        let mut opts = MySqlConnectOptions::from_str(secret.expose()).map_err(|e| {
            secret.scrub(&format!("invalid mysql url `{target}`: {}", describe(&e)))
        })?;
        if loopback_without_tls_request(opts.get_host(), secret.expose()) {
            opts = opts.ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
        }
        let (read_only, timeout) = (src.read_only, src.timeout);
        let connect_timeout = connect_timeout(timeout);

        let pool = pool_options::<MySql>(src.max_connections, connect_timeout)
            .after_connect(move |conn, _meta| Box::pin(mysql_session(conn, read_only, timeout)))
            .connect_lazy_with(opts.clone());
        if pool.acquire().await.is_err() {
            check_connect(&secret, &target, connect_timeout, async {
                let mut conn = MySqlConnection::connect_with(&opts).await?;
                mysql_session(&mut conn, read_only, timeout).await?;
                conn.close().await
            })
            .await?;
        }
        Ok(SqlPool {
            queries: Arc::default(),
            backend: Backend::Mysql(pool, opts),
            secret,
            target,
            timeout,
            connect_timeout,
            max_connections: src.max_connections,
        })
    }

    /// Opens an existing SQLite file (read-only unless `read_only: false`); never creates one.
    pub async fn connect_sqlite(src: &SqliteSource) -> Result<SqlPool, String> {
        let target = src.path.display().to_string();
        check_sqlite_file(&src.path)?;
        let opts = SqliteConnectOptions::new()
            .filename(&src.path)
            .read_only(src.read_only)
            .create_if_missing(false)
            .busy_timeout(src.timeout);
        let connect_timeout = connect_timeout(src.timeout);
        let secret = Secret::new("");

        check_connect(&secret, &target, connect_timeout, async {
            SqliteConnection::connect_with(&opts).await?.close().await
        })
        .await?;

        let pool = pool_options::<Sqlite>(src.max_connections, connect_timeout)
            .connect_lazy_with(opts.clone());
        Ok(SqlPool {
            queries: Arc::default(),
            backend: Backend::Sqlite(pool, opts),
            secret,
            target,
            timeout: src.timeout,
            connect_timeout,
            max_connections: src.max_connections,
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Postgres(..) => Dialect::Postgres,
            Backend::Mysql(..) => Dialect::Mysql,
            Backend::Sqlite(..) => Dialect::Sqlite,
        }
    }

    /// Runs user SQL with `raw_sql` and returns the rows of the last statement that returned
    /// rows, every value typed.
    pub async fn query(&self, sql: &str) -> Result<Table, String> {
        let sink = self.query_into(sql, RowSink::table()).await?;
        Ok(sink.into_table().unwrap_or_default())
    }

    /// [`SqlPool::query`], each row decoded into `sink` as it arrives (the driver's rows are
    /// never all held at once).
    pub async fn query_into(&self, sql: &str, mut sink: RowSink) -> Result<RowSink, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        match &self.backend {
            Backend::Postgres(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                let run = stream::<Postgres>(&mut conn, sql, &mut sink, pg_value);
                self.bounded(run).await?;
                Ok(sink)
            }
            Backend::Mysql(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                let run = stream::<MySql>(&mut conn, sql, &mut sink, mysql_value);
                self.bounded(run).await?;
                Ok(sink)
            }
            Backend::Sqlite(pool, opts) => {
                let mut conn = self.acquire(pool, opts).await?;
                // SQLite has no statement timeout of its own: interrupt it from a progress
                // handler once the deadline has passed. Set before every query, so a handler
                // left behind by a cancelled query is always replaced.
                let deadline = Instant::now() + self.timeout;
                conn.lock_handle()
                    .await
                    .map_err(|e| self.error("cannot set up the sqlite connection", &e))?
                    .set_progress_handler(1_000, move || Instant::now() < deadline);
                let result = self
                    .bounded(stream::<Sqlite>(&mut conn, sql, &mut sink, sqlite_value))
                    .await;
                if let Ok(mut handle) = conn.lock_handle().await {
                    handle.remove_progress_handler();
                }
                result?;
                Ok(sink)
            }
        }
    }

    /// The database's size in bytes, for the `skip_if` cost guard.
    pub async fn size_bytes(&self) -> Result<u64, String> {
        let sql = match self.dialect() {
            Dialect::Postgres => "SELECT pg_database_size(current_database())::bigint AS bytes",
            Dialect::Mysql => {
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) AS bytes \
                 FROM information_schema.tables WHERE table_schema = DATABASE()"
            }
            Dialect::Sqlite => {
                "SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()"
            }
        };
        let t = self.query(sql).await?;
        match t.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => Ok((*n).max(0) as u64),
            Some(Value::Float(f)) if *f >= 0.0 => Ok(*f as u64),
            Some(Value::Null) | None => Ok(0),
            Some(other) => Err(format!(
                "cannot read the size of {}: unexpected value `{}`",
                self.target,
                other.key_text()
            )),
        }
    }

    /// A connection from the pool; when that fails, one direct attempt names the cause (the
    /// pool itself retries refused connections until its deadline and then only says
    /// "timed out").
    async fn acquire<DB: Database>(
        &self,
        pool: &Pool<DB>,
        opts: &<DB::Connection as Connection>::Options,
    ) -> Result<PoolConnection<DB>, String> {
        let err = match pool.acquire().await {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        let cause = match err {
            sqlx::Error::PoolTimedOut => {
                match tokio::time::timeout(self.connect_timeout, opts.connect()).await {
                    Ok(Err(e)) => describe(&e),
                    Err(_) => format!("timed out after {}", format_duration(self.connect_timeout)),
                    Ok(Ok(conn)) => {
                        let _ = conn.close().await;
                        format!(
                            "no connection free within {} (pool of {})",
                            format_duration(self.connect_timeout),
                            self.max_connections
                        )
                    }
                }
            }
            other => describe(&other),
        };
        Err(self
            .secret
            .scrub(&format!("cannot connect to {}: {cause}", self.target)))
    }

    /// Bounds a query by the statement timeout and turns its error into a message.
    async fn bounded<T>(
        &self,
        run: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout + CLIENT_GRACE, run).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) if is_timeout(&e) => {
                let what = format!(
                    "statement timed out after {}",
                    format_duration(self.timeout)
                );
                Err(self.error(&what, &e))
            }
            Ok(Err(e)) => Err(self.error("query failed", &e)),
            Err(_) => Err(self.secret.scrub(&format!(
                "statement timed out after {} on {}",
                format_duration(self.timeout),
                self.target
            ))),
        }
    }

    fn error(&self, what: &str, e: &sqlx::Error) -> String {
        self.secret
            .scrub(&format!("{what} on {}: {}", self.target, describe(e)))
    }
}

fn connect_timeout(timeout: Duration) -> Duration {
    timeout.clamp(Duration::from_secs(1), MAX_CONNECT_TIMEOUT)
}

fn pool_options<DB: Database>(max_connections: u32, connect_timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::<DB>::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(connect_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
}

/// One direct connection attempt, so a wrong URL or a down server fails at once with its cause.
async fn check_connect(
    secret: &Secret,
    target: &str,
    connect_timeout: Duration,
    attempt: impl Future<Output = Result<(), sqlx::Error>>,
) -> Result<(), String> {
    let cause = match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => describe(&e),
        Err(_) => format!("timed out after {}", format_duration(connect_timeout)),
    };
    Err(secret.scrub(&format!("cannot connect to {target}: {cause}")))
}

fn check_sqlite_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "sqlite database `{}` is not a file",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "sqlite database `{}` does not exist",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot open sqlite database `{}`: {e}",
            path.display()
        )),
    }
}

/// Session settings for a MySQL/MariaDB connection.
async fn mysql_session(
    conn: &mut MySqlConnection,
    read_only: bool,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    if read_only {
        conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
    }
    // MariaDB: seconds (fractions allowed); MySQL: `max_execution_time` in ms, SELECT only.
    let mariadb = format!("SET SESSION max_statement_time = {}", timeout.as_secs_f64());
    if conn.execute(AssertSqlSafe(mariadb)).await.is_err() {
        let mysql = format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis().max(1)
        );
        conn.execute(AssertSqlSafe(mysql)).await?;
    }
    Ok(())
}

/// Runs `sql` and keeps the rows of the last statement that returned rows, decoding each row
/// into `sink` as it arrives (a later statement's rows replace an earlier one's). With no rows
/// at all from a single statement, the column names come from preparing it (not running it).
async fn stream<DB: Database>(
    conn: &mut DB::Connection,
    sql: &str,
    sink: &mut RowSink,
    decode: fn(&DB::Row, usize) -> Value,
) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut statements = 0usize;
    let mut in_result = false;
    let mut any = false;
    {
        let mut stream = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_many(&mut *conn);
        while let Some(item) = stream.next().await {
            match item? {
                Either::Right(row) => {
                    if !in_result {
                        in_result = true;
                        any = true;
                        sink.begin(row.columns().iter().map(|c| c.name().to_string()).collect());
                    }
                    sink.push((0..row.len()).map(|i| decode(&row, i)).collect());
                }
                Either::Left(_) => {
                    statements += 1;
                    in_result = false;
                }
            }
        }
    }
    if !any {
        let columns = if statements <= 1 {
            match conn
                .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
                .await
            {
                Ok(stmt) => stmt
                    .columns()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect(),
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        sink.begin(columns);
    }
    Ok(())
}

/// The whole message of a sqlx error, lower-case first, with the database's error code.
fn describe(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    lower_first(&text)
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_uppercase() && !chars.clone().next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => s.to_string(),
    }
}

/// Whether the server (or SQLite's progress handler) cancelled the statement for its timeout.
fn is_timeout(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    match &*code {
        // Postgres query_canceled: statement_timeout (not a user's cancel request).
        "57014" => db.message().contains("statement timeout"),
        // MariaDB max_statement_time; MySQL max_execution_time.
        "70100" | "HY000" => {
            let m = db.message();
            m.contains("max_statement_time") || m.contains("execution time exceeded")
        }
        // SQLITE_INTERRUPT
        "9" => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding. Never panics and never fails the query: an odd value becomes text.

/// `Option<T>` decoded without sqlx's type check (we chose `T` from the type name already).
fn get<'r, R, T>(row: &'r R, i: usize) -> Option<T>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    T: Decode<'r, R::Database>,
{
    row.try_get_unchecked::<T, usize>(i).ok()
}

fn int_from_u64(u: u64) -> Value {
    i64::try_from(u)
        .map(Value::Int)
        .unwrap_or(Value::Float(u as f64))
}

/// NUMERIC/DECIMAL: an integer when integral and within i64, else a float from the text when
/// there is one (the nearest f64, and no
/// range limit), else through `rust_decimal`.
fn decimal<'r, R>(row: &'r R, i: usize, text: Option<&str>) -> Option<Value>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Decimal: Decode<'r, R::Database>,
{
    if let Some(n) = text.and_then(integral_decimal) {
        return Some(Value::Int(n));
    }
    match text.map(str::trim).map(str::parse::<f64>) {
        Some(Ok(f)) => Some(Value::Float(f)),
        _ => get::<R, Decimal>(row, i)
            .and_then(|d| d.to_f64())
            .map(Value::Float),
    }
}

/// An integral NUMERIC/DECIMAL (`5`, `-12.000`) that fits i64: exact as an integer, where a
/// double would lose digits past 2^53 (sums of bigints are NUMERIC in Postgres).
fn integral_decimal(s: &str) -> Option<i64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b == b'0') {
        return None;
    }
    let digits = int.strip_prefix('-').unwrap_or(int);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    int.parse().ok()
}

fn float_text(s: &str) -> Value {
    s.trim()
        .parse::<f64>()
        .map(Value::Float)
        .unwrap_or_else(|_| Value::Text(s.to_string()))
}

fn json_text(s: &str) -> Value {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|j| Value::from_json(&j))
        .unwrap_or_else(|_| Value::Text(s.to_string()))
}

fn bytes_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Text(s.to_string()),
        Err(_) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::Text(format!("0x{hex}"))
        }
    }
}

fn utc(n: NaiveDateTime) -> Value {
    Value::Timestamp(n.and_utc())
}

/// When nothing else fits: the value as text, or a description of what it was.
fn fallback<R>(row: &R, i: usize, type_name: &str) -> Value
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database>,
{
    if let Some(s) = get::<R, String>(row, i) {
        return Value::Text(s);
    }
    if let Some(b) = get::<R, Vec<u8>>(row, i) {
        return bytes_value(&b);
    }
    Value::Text(format!("<undecodable {type_name}>"))
}

/// Postgres (`raw_sql` uses the simple query protocol: every value arrives as text).
fn pg_value(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let info = raw.type_info();
    let ty = info.name();
    let text = || get::<_, &str>(row, i);
    let decoded = match ty {
        "BOOL" => get::<_, bool>(row, i).map(Value::Bool),
        "INT2" => get::<_, i16>(row, i).map(|v| Value::Int(v.into())),
        "INT4" => get::<_, i32>(row, i).map(|v| Value::Int(v.into())),
        "INT8" => get::<_, i64>(row, i).map(Value::Int),
        "OID" => text().and_then(|s| s.parse::<i64>().ok()).map(Value::Int),
        // Parsed from the text, so a FLOAT4 `0.1` stays 0.1 rather than widening noise.
        "FLOAT4" | "FLOAT8" => text().map(float_text),
        "NUMERIC" => decimal(row, i, text()),
        // `char(n)` padding is not part of the value (Postgres' own `::text` drops it).
        "CHAR" | "BPCHAR" => text().map(|s| Value::Text(s.trim_end_matches(' ').to_string())),
        // The ISO text read by hand first (chrono's format parser dominates a million-row
        // read); anything unusual (BC, infinity, another DateStyle) goes to the driver.
        "TIMESTAMPTZ" => text()
            .and_then(|s| pg_iso_timestamp(s, true))
            .map(Value::Timestamp)
            .or_else(|| get::<_, DateTime<Utc>>(row, i).map(Value::Timestamp)),
        "TIMESTAMP" => text()
            .and_then(|s| pg_iso_timestamp(s, false))
            .map(Value::Timestamp)
            .or_else(|| get::<_, NaiveDateTime>(row, i).map(utc)),
        "DATE" => get::<_, NaiveDate>(row, i).map(Value::Date),
        "UUID" => get::<_, uuid::Uuid>(row, i).map(|u| Value::Text(u.to_string())),
        "JSON" | "JSONB" => text().map(json_text),
        "BYTEA" => get::<_, Vec<u8>>(row, i).map(|b| bytes_value(&b)),
        t if t.ends_with("[]") => text().and_then(|s| pg_array(&t[..t.len() - 2], s)),
        _ => None,
    };
    decoded.unwrap_or_else(|| match text() {
        Some(s) => pg_text(ty, s),
        None => fallback(row, i, ty),
    })
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` then, with `zone`, `±HH[:MM[:SS]]` — Postgres' ISO output.
/// None for anything else (the caller falls back to the driver's decoding).
fn pg_iso_timestamp(s: &str, zone: bool) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        d.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut pos = 19;
    let mut nanos = 0u32;
    if b.get(pos) == Some(&b'.') {
        let digits = b[pos + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(pos + 1..pos + 1 + digits)? * 10u32.pow((9 - digits) as u32);
        pos += 1 + digits;
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?;
    let local = NaiveDateTime::new(date, time);
    let mut offset = 0i64;
    if zone {
        let sign = match b.get(pos)? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let mut parts = s.get(pos + 1..)?.split(':');
        let mut secs = 0i64;
        for (i, unit) in [3600i64, 60, 1].iter().enumerate() {
            match parts.next() {
                Some(p) if p.len() == 2 => secs += i64::from(num_str(p)?) * unit,
                None if i > 0 => break,
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        offset = sign * secs;
    } else if pos != b.len() {
        return None;
    }
    let utc = local.checked_sub_signed(chrono::TimeDelta::seconds(offset))?;
    Some(utc.and_utc())
}

fn num_str(s: &str) -> Option<u32> {
    s.bytes().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// A Postgres value from its text form (array elements, and scalars whose decoder failed).
fn pg_text(ty: &str, s: &str) -> Value {
    let parsed = match ty {
        "BOOL" => match s {
            "t" | "true" => Some(Value::Bool(true)),
            "f" | "false" => Some(Value::Bool(false)),
            _ => None,
        },
        "INT2" | "INT4" | "INT8" | "OID" => s.parse::<i64>().ok().map(Value::Int),
        "FLOAT4" | "FLOAT8" | "NUMERIC" => Some(float_text(s)),
        "TIMESTAMPTZ" | "TIMESTAMP" => parse_timestamp(s).map(Value::Timestamp),
        "DATE" => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(Value::Date),
        "JSON" | "JSONB" => Some(json_text(s)),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::Text(s.to_string()))
}

/// A Postgres array from its text form (`{1,NULL,"a \"b\""}`, nested for more dimensions, maybe
/// with a `[0:2]=` bounds prefix) as a list, each element read by [`pg_text`]. `None` when the
/// text is not an array literal (the caller keeps it as text).
fn pg_array(elem: &str, s: &str) -> Option<Value> {
    let s = match s.find('=') {
        Some(eq) if s.starts_with('[') => &s[eq + 1..],
        _ => s,
    };
    let mut chars = s.chars().peekable();
    let v = pg_array_level(elem, &mut chars)?;
    chars.next().is_none().then_some(v)
}

fn pg_array_level(
    elem: &str,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Option<Value> {
    if chars.next()? != '{' {
        return None;
    }
    let mut items = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(Value::List(items));
    }
    loop {
        match chars.peek()? {
            '{' => items.push(pg_array_level(elem, chars)?),
            '"' => {
                chars.next();
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '\\' => item.push(chars.next()?),
                        '"' => break,
                        c => item.push(c),
                    }
                }
                items.push(pg_text(elem, &item));
            }
            _ => {
                let mut item = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    item.push(c);
                    chars.next();
                }
                let item = item.trim();
                items.push(if item.eq_ignore_ascii_case("NULL") {
                    Value::Null
                } else {
                    pg_text(elem, item)
                });
            }
        }
        match chars.next()? {
            ',' => continue,
            '}' => return Some(Value::List(items)),
            _ => return None,
        }
    }
}

/// MySQL/MariaDB (`raw_sql` uses the text protocol). `TINYINT(1)` is named `BOOLEAN`.
/// MariaDB's `JSON` is a `LONGTEXT` alias and arrives as text.
fn mysql_value(row: &MySqlRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let ty = raw.type_info().name().to_string();
    let text = || get::<_, &str>(row, i);
    let decoded = match ty.as_str() {
        "BOOLEAN" => get::<_, i64>(row, i).map(|v| Value::Bool(v != 0)),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            get::<_, i64>(row, i).map(Value::Int)
        }
        t if t.ends_with(" UNSIGNED") => get::<_, u64>(row, i).map(int_from_u64),
        "FLOAT" | "DOUBLE" => text().map(float_text),
        "DECIMAL" => decimal(row, i, text()),
        // The session time zone is UTC (sqlx sets `time_zone = '+00:00'`).
        "TIMESTAMP" => get::<_, DateTime<Utc>>(row, i).map(Value::Timestamp),
        "DATETIME" => get::<_, NaiveDateTime>(row, i).map(utc),
        "DATE" => get::<_, NaiveDate>(row, i).map(Value::Date),
        "JSON" => text().map(json_text),
        "BIT" => get::<_, Vec<u8>>(row, i)
            .map(|b| int_from_u64(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))),
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            get::<_, Vec<u8>>(row, i).map(|b| bytes_value(&b))
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| fallback(row, i, &ty))
}

/// SQLite: by the value's runtime type, helped by the declared column type (which may be
/// missing, for expressions).
fn sqlite_value(row: &SqliteRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let runtime = raw.type_info().name().to_string();
    let declared = row
        .columns()
        .get(i)
        .map(|c| c.type_info().name().to_string())
        .unwrap_or_default();
    let decoded = match runtime.as_str() {
        "INTEGER" => get::<_, i64>(row, i).map(|v| match declared.as_str() {
            "BOOLEAN" => Value::Bool(v != 0),
            _ => Value::Int(v),
        }),
        "REAL" => get::<_, f64>(row, i).map(Value::Float),
        "TEXT" => get::<_, String>(row, i).map(|s| match declared.as_str() {
            "DATETIME" => parse_timestamp(&s).map_or(Value::Text(s), Value::Timestamp),
            "DATE" => match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                Ok(d) => Value::Date(d),
                Err(_) => parse_timestamp(&s).map_or(Value::Text(s), Value::Timestamp),
            },
            _ => Value::Text(s),
        }),
        "BLOB" => get::<_, Vec<u8>>(row, i).map(|b| bytes_value(&b)),
        _ => None,
    };
    decoded.unwrap_or_else(|| fallback(row, i, &runtime))
}

/// SQL sources read `sql` probes and (normally fused by the engine) `metrics` probes.
impl crate::SourceDriver for SqlPool {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::PerSource(self.max_connections.max(1) as usize)
    }

    fn size_bytes(&self) -> futures::future::BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            match self.dialect() {
                // The file, not its pages: what the disk holds (a WAL included in neither).
                Dialect::Sqlite => std::fs::metadata(&self.target).ok().map(|m| m.len()),
                _ => SqlPool::size_bytes(self).await.ok(),
            }
        })
    }

    fn read(
        self: Arc<Self>,
        probe: &invar_core::Probe,
        sink: RowSink,
        _cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        use invar_core::Probe;
        match probe {
            Probe::Sql { source, sql } => {
                let (source, sql) = (source.clone(), sql.clone());
                Box::pin(async move {
                    let sink = self
                        .query_into(&sql, sink)
                        .await
                        .map_err(|e| format!("`{source}`: {e}"))?;
                    Ok(sink.finish_blocking().await?)
                })
            }
            // The engine fuses metrics probes; one read alone is a fused query of one.
            Probe::Metrics(m) => {
                let m = m.clone();
                Box::pin(async move {
                    let q = crate::fusion::FusedQuery::build(self.dialect(), &[&m]).ok_or_else(
                        || crate::ReadError::from("a metrics probe without metrics".to_string()),
                    )?;
                    let t = self
                        .query(&q.sql)
                        .await
                        .map_err(|e| format!("`{}`: {e}", m.source))?;
                    Ok(sink.fill(q.project(&t, &m)?))
                })
            }
            other => crate::not_mine(other, "an sql"),
        }
    }

    fn sql(&self) -> Option<&SqlPool> {
        Some(self)
    }

    fn count(&self, name: &str, stats: &mut crate::RunStats) {
        stats.queries.insert(name.to_string(), self.queries());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_decimals_are_exact_integers() {
        // sum(bigint) is NUMERIC in Postgres: past 2^53 a double would lose the last digit.
        assert_eq!(
            integral_decimal("9007199254740993"),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(integral_decimal("-12.000"), Some(-12));
        assert_eq!(integral_decimal("5.00"), Some(5));
        assert_eq!(integral_decimal("5.50"), None);
        assert_eq!(integral_decimal("99999999999999999999"), None);
        assert_eq!(integral_decimal("NaN"), None);
        assert_eq!(integral_decimal("-"), None);
    }

    #[test]
    fn pg_iso_timestamps_read_by_hand_match_chrono() {
        for s in [
            "2023-11-14 22:13:20+00",
            "2023-11-14 22:13:20.5+00",
            "2023-11-14 22:13:20.123456+05:30",
            "1999-01-08 04:05:06-08",
            "2024-02-29 00:00:00.000001-03:30:15",
            "0001-01-01 00:00:00+00",
        ] {
            let want = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
                .or_else(|_| {
                    DateTime::parse_from_str(&format!("{s}:00"), "%Y-%m-%d %H:%M:%S%.f%:z")
                })
                .map(|t| t.with_timezone(&Utc))
                .ok();
            let got = pg_iso_timestamp(s, true);
            if s.ends_with(":15") {
                // chrono has no `±HH:MM:SS` offset format: check it by hand.
                let t = NaiveDateTime::parse_from_str(
                    "2024-02-29 03:30:15.000001",
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .unwrap();
                assert_eq!(got, Some(t.and_utc()), "{s}");
            } else {
                assert_eq!(got, want, "{s}");
            }
        }
        let naive = pg_iso_timestamp("2023-11-14 22:13:20.25", false).unwrap();
        assert_eq!(naive.to_rfc3339(), "2023-11-14T22:13:20.250+00:00");
        for bad in [
            "infinity",
            "2023-11-14 22:13:20+00 BC",
            "12023-11-14 22:13:20+00",
            "2023-11-14 22:13:20",
            "2023-02-30 22:13:20+00",
            "2023-11-14 22:13:20.+00",
        ] {
            assert_eq!(pg_iso_timestamp(bad, true), None, "{bad}");
        }
        assert_eq!(pg_iso_timestamp("2023-11-14 22:13:20+00", false), None);
    }

    #[test]
    fn pg_text_parses_array_elements() {
        assert_eq!(pg_text("INT4", "7"), Value::Int(7));
        assert_eq!(pg_text("BOOL", "t"), Value::Bool(true));
        assert_eq!(pg_text("FLOAT8", "1.5"), Value::Float(1.5));
        assert_eq!(pg_text("TEXT", "a,b"), Value::Text("a,b".into()));
        assert_eq!(pg_text("INT4", "x"), Value::Text("x".into()));
        assert_eq!(
            pg_text("TIMESTAMPTZ", "2026-03-01 10:00:00+00"),
            Value::Timestamp(parse_timestamp("2026-03-01T10:00:00Z").unwrap())
        );
    }

    #[test]
    fn pg_arrays_nest_quote_and_keep_nulls() {
        let int = Value::Int;
        assert_eq!(pg_array("INT4", "{}"), Some(Value::List(vec![])));
        assert_eq!(
            pg_array("INT4", "{1,NULL,3}"),
            Some(Value::List(vec![int(1), Value::Null, int(3)]))
        );
        assert_eq!(
            pg_array("INT4", "{{1,2},{3,4}}"),
            Some(Value::List(vec![
                Value::List(vec![int(1), int(2)]),
                Value::List(vec![int(3), int(4)])
            ]))
        );
        assert_eq!(
            pg_array("INT4", "[0:1]={5,6}"),
            Some(Value::List(vec![int(5), int(6)]))
        );
        assert_eq!(
            pg_array("TEXT", r#"{"a,b","c\"d","NULL",NULL, x y }"#),
            Some(Value::List(vec![
                Value::Text("a,b".into()),
                Value::Text("c\"d".into()),
                Value::Text("NULL".into()),
                Value::Null,
                Value::Text("x y".into()),
            ]))
        );
        assert_eq!(pg_array("INT4", "{1,2"), None);
        assert_eq!(pg_array("INT4", "{1}x"), None);
        assert_eq!(pg_array("INT4", "(1,2)"), None);
    }

    #[test]
    fn bytes_are_text_when_utf8_else_hex() {
        assert_eq!(bytes_value(b"abc"), Value::Text("abc".into()));
        assert_eq!(bytes_value(&[0xff, 0x00]), Value::Text("0xff00".into()));
    }

    #[test]
    fn unsigned_too_large_becomes_float() {
        assert_eq!(int_from_u64(5), Value::Int(5));
        assert_eq!(int_from_u64(u64::MAX), Value::Float(u64::MAX as f64));
    }

    #[test]
    fn messages_start_lower_case_but_keep_acronyms() {
        assert_eq!(lower_first("Connection refused"), "connection refused");
        assert_eq!(lower_first("SSL error"), "SSL error");
    }

    #[test]
    fn sqlite_file_must_exist() {
        let err = check_sqlite_file(Path::new("/nonexistent/invar.db")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
