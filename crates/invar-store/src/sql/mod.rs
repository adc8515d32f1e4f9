//! The SQL store, written once: [`SqlStore`] over a [`Backend`]. Every statement is shared
//! (timestamps are BIGINT unix milliseconds, JSON is text, placeholders are `$N` — SQLite reads
//! `$N` as the N-th argument too) and every row is read by column name ([`rows`]). A backend
//! only says how to open, how to begin a serialised write, how to insert many rows and which
//! migrations it runs.

mod backend;
mod coordination;
mod history;
mod outbox;
mod rows;

pub use backend::{Backend, PgBackend, SqliteBackend};

use crate::migrate::VERSIONS;
use crate::{Result, Store, StoreError};
use chrono::Utc;
use futures::future::BoxFuture;
use rows::Cols;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// Rows per multi-row INSERT: 400 rows × at most 16 columns stays under every backend's limit
/// on bound parameters.
const CHUNK: usize = 400;
const DEFAULT_LIMIT: u32 = 50;

/// The store on one backend: a pool and the statements every backend shares.
pub struct SqlStore<B: Backend> {
    pool: sqlx::Pool<B::DB>,
}

/// The embedded SQLite store (WAL, `synchronous = NORMAL`, 10 s busy timeout).
pub type SqliteStore = SqlStore<SqliteBackend>;

/// The Postgres store.
pub type PgStore = SqlStore<PgBackend>;

/// A row as the backend returns it.
type RowOf<B> = <<B as Backend>::Conn as Exec>::Row;

/// A write transaction of the backend.
type Tx<B> = sqlx::Transaction<'static, <B as Backend>::DB>;

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Db(e)
}

pub(crate) fn decode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Decode(e.to_string())
}

/// A bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    I(i64),
    S(String),
    N(Option<String>),
    NI(Option<i64>),
    B(bool),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::NI(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::S(v.to_string())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::S(v.clone())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::S(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::N(v.map(str::to_string))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::N(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::B(v)
    }
}

/// One statement and its arguments, run by [`Exec`].
pub struct Stmt {
    sql: SqlStr,
    args: Vec<Arg>,
}

impl Stmt {
    pub(crate) fn new(sql: &'static str) -> Stmt {
        Stmt {
            sql: sql.into_sql_str(),
            args: Vec::new(),
        }
    }

    /// A statement built at run time from the store's own fragments (never from input).
    pub(crate) fn built(sql: String) -> Stmt {
        Stmt {
            sql: AssertSqlSafe(sql).into_sql_str(),
            args: Vec::new(),
        }
    }

    pub(crate) fn bind(mut self, a: impl Into<Arg>) -> Stmt {
        self.args.push(a.into());
        self
    }

    pub(crate) fn bind_all(mut self, args: Vec<Arg>) -> Stmt {
        self.args.extend(args);
        self
    }

    fn query<DB>(self) -> sqlx::query::Query<'static, DB, DB::Arguments>
    where
        DB: sqlx::Database,
        DB::Arguments: sqlx::IntoArguments<DB>,
        for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> Option<i64>: sqlx::Encode<'q, DB>,
        for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> Option<String>: sqlx::Encode<'q, DB>,
        for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut q = sqlx::query(self.sql);
        for a in self.args {
            q = match a {
                Arg::I(v) => q.bind(v),
                Arg::S(s) => q.bind(s),
                Arg::N(s) => q.bind(s),
                Arg::NI(v) => q.bind(v),
                Arg::B(b) => q.bind(b),
            };
        }
        q
    }
}

/// The rows a statement changed, whatever the backend's result type.
pub trait Affected {
    fn affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// Runs statements on a connection (pooled or in a transaction). Implemented once, for every
/// sqlx connection that can bind the store's values.
pub trait Exec: Send {
    type Row: Cols + Send + Sync + 'static;

    /// The rows affected.
    fn execute(&mut self, s: Stmt) -> BoxFuture<'_, Result<u64>>;
    fn fetch_all(&mut self, s: Stmt) -> BoxFuture<'_, Result<Vec<Self::Row>>>;
    fn fetch_optional(&mut self, s: Stmt) -> BoxFuture<'_, Result<Option<Self::Row>>>;
    /// Several statements, unprepared (a migration).
    fn raw(&mut self, sql: &'static str) -> BoxFuture<'_, std::result::Result<(), sqlx::Error>>;
}

impl<C, DB> Exec for C
where
    C: sqlx::Connection<Database = DB>,
    DB: sqlx::Database<Connection = C>,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = DB>,
    DB::QueryResult: Affected,
    DB::Row: Cols,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    type Row = DB::Row;

    fn execute(&mut self, s: Stmt) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let done = s.query::<DB>().execute(&mut *self).await.map_err(db)?;
            Ok(done.affected())
        })
    }

    fn fetch_all(&mut self, s: Stmt) -> BoxFuture<'_, Result<Vec<DB::Row>>> {
        Box::pin(async move { s.query::<DB>().fetch_all(&mut *self).await.map_err(db) })
    }

    fn fetch_optional(&mut self, s: Stmt) -> BoxFuture<'_, Result<Option<DB::Row>>> {
        Box::pin(async move { s.query::<DB>().fetch_optional(&mut *self).await.map_err(db) })
    }

    fn raw(&mut self, sql: &'static str) -> BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
        Box::pin(async move { sqlx::raw_sql(sql).execute(&mut *self).await.map(|_| ()) })
    }
}

/// A bulk insert: `head` names the table and its `cols` columns, `tail` follows the rows
/// (`ON CONFLICT …`).
pub struct Insert {
    pub head: &'static str,
    pub tail: &'static str,
    pub cols: usize,
}

/// WHERE clauses with numbered placeholders.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// `clause` has `{}` where the placeholder goes (every `{}` is the same argument).
    fn add(&mut self, clause: &str, arg: impl Into<Arg>) {
        let n = self.args.len() + 1;
        self.clauses.push(clause.replace("{}", &format!("${n}")));
        self.args.push(arg.into());
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

impl<B: Backend> SqlStore<B> {
    fn new(pool: sqlx::Pool<B::DB>) -> SqlStore<B> {
        SqlStore { pool }
    }

    async fn execute(&self, s: Stmt) -> Result<u64> {
        let mut c = self.pool.acquire().await.map_err(db)?;
        c.execute(s).await
    }

    async fn fetch_all(&self, s: Stmt) -> Result<Vec<RowOf<B>>> {
        let mut c = self.pool.acquire().await.map_err(db)?;
        c.fetch_all(s).await
    }

    async fn fetch_optional(&self, s: Stmt) -> Result<Option<RowOf<B>>> {
        let mut c = self.pool.acquire().await.map_err(db)?;
        c.fetch_optional(s).await
    }

    async fn fetch_one(&self, s: Stmt) -> Result<RowOf<B>> {
        self.fetch_optional(s)
            .await?
            .ok_or_else(|| db(sqlx::Error::RowNotFound))
    }

    /// Creates the version table, applies each migration not yet applied (each in its own
    /// serialised transaction with its version row) and refuses a store migrated by a newer
    /// invar.
    async fn migrate(&self) -> Result<()> {
        let mut tx = B::begin_write(&self.pool).await?;
        tx.execute(Stmt::new(VERSIONS)).await?;
        tx.commit().await.map_err(db)?;
        for &(version, name, sql) in B::MIGRATIONS {
            let mut tx = B::begin_write(&self.pool).await?;
            let row = tx
                .fetch_optional(
                    Stmt::new("SELECT count(*) AS n FROM invar_migrations WHERE version = $1")
                        .bind(version),
                )
                .await?
                .ok_or_else(|| db(sqlx::Error::RowNotFound))?;
            if row.get::<i64>("n")? > 0 {
                continue;
            }
            let fail = |source: sqlx::Error| StoreError::Migrate {
                version,
                name: name.to_string(),
                source,
            };
            tx.raw(sql).await.map_err(fail)?;
            let insert = Stmt::new(
                "INSERT INTO invar_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name)
            .bind(Utc::now().timestamp_millis());
            tx.execute(insert).await.map_err(|e| match e {
                StoreError::Db(e) => fail(e),
                other => other,
            })?;
            tx.commit().await.map_err(fail)?;
            tracing::debug!(backend = B::NAME, version, name, "history store migrated");
        }
        self.refuse_newer().await
    }

    async fn refuse_newer(&self) -> Result<()> {
        let row = self
            .fetch_one(Stmt::new("SELECT max(version) AS v FROM invar_migrations"))
            .await?;
        let max: Option<i64> = row.get("v")?;
        let ours = B::MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
        match max {
            Some(v) if v > ours => Err(StoreError::Open(format!(
                "the store is at schema version {v}, this invar knows up to {ours}: upgrade invar"
            ))),
            _ => Ok(()),
        }
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        B::NAME
    }
}
