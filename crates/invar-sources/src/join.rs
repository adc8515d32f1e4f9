//! `join`: the named probes' tables loaded into an embedded in-memory SQLite (one private
//! connection per join, `sqlite::memory:`), then the operator's SQL run there. The result
//! table goes back to the pure evaluator, which decides it as it decides a `probe` check.
//!
//! Types survive the trip so that numeric comparison, `count` and date functions work:
//!
//! | value in the probe's table | column declared as | stored as |
//! |---|---|---|
//! | integers (and booleans mixed in) | `INTEGER` | integer |
//! | only booleans | `BOOLEAN` | 0 / 1 (read back as booleans) |
//! | any float among the numbers | `REAL` | real |
//! | timestamps | `DATETIME` | UTC text `YYYY-MM-DD HH:MM:SS.SSS`, SQLite's own format, so `datetime()`, `julianday()` and text comparison with `datetime('now', '-5 minutes')` work |
//! | dates | `DATE` | text `YYYY-MM-DD` |
//! | lists and maps (JSON bodies) | `JSON` | JSON text (`json_extract` works) |
//! | text, or a mix of kinds | `TEXT` | text (numbers in it still compare as numbers against an `INTEGER` column, by SQLite's affinity rules) |
//!
//! Result columns read back by their runtime type; a column taken straight from a
//! `DATETIME`/`DATE`/`BOOLEAN`/`JSON` column comes back as that type, expressions as their
//! SQLite type (`datetime(…)` is text).

use chrono::{DateTime, NaiveDate, Utc};
use invar_core::value::parse_timestamp;
use invar_core::{Table, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{
    AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows per INSERT statement is bounded by SQLite's limit on bound parameters.
const MAX_PARAMS: usize = 30_000;
const MAX_ROWS_PER_INSERT: usize = 500;

/// A column's declared type, chosen from its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    Integer,
    Boolean,
    Real,
    Datetime,
    Date,
    Json,
    Text,
}

impl ColType {
    fn sql(self) -> &'static str {
        match self {
            ColType::Integer => "INTEGER",
            ColType::Boolean => "BOOLEAN",
            ColType::Real => "REAL",
            ColType::Datetime => "DATETIME",
            ColType::Date => "DATE",
            ColType::Json => "JSON",
            ColType::Text => "TEXT",
        }
    }
}

fn col_type(t: &Table, c: usize) -> ColType {
    let mut ty: Option<ColType> = None;
    for row in &t.rows {
        let v_ty = match row.get(c) {
            None | Some(Value::Null) => continue,
            Some(Value::Bool(_)) => ColType::Boolean,
            Some(Value::Int(_)) => ColType::Integer,
            Some(Value::Float(_)) => ColType::Real,
            Some(Value::Timestamp(_)) => ColType::Datetime,
            Some(Value::Date(_)) => ColType::Date,
            Some(Value::List(_) | Value::Map(_)) => ColType::Json,
            Some(Value::Text(_)) => ColType::Text,
        };
        ty = Some(match (ty, v_ty) {
            (None, v) => v,
            (Some(a), b) if a == b => a,
            (Some(ColType::Integer | ColType::Boolean), ColType::Integer | ColType::Boolean) => {
                ColType::Integer
            }
            (
                Some(ColType::Integer | ColType::Boolean | ColType::Real),
                ColType::Integer | ColType::Boolean | ColType::Real,
            ) => ColType::Real,
            (Some(ColType::Datetime | ColType::Date), ColType::Datetime | ColType::Date) => {
                ColType::Datetime
            }
            _ => ColType::Text,
        });
        if ty == Some(ColType::Text) {
            break;
        }
    }
    ty.unwrap_or(ColType::Text)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn ts_text(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Binds one value as the column's type wants it stored.
fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    v: &Value,
    ty: ColType,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(i64::from(*b)),
        Value::Int(i) if ty == ColType::Real => q.bind(*i as f64),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Text(s) => q.bind(s.clone()),
        Value::Timestamp(t) => q.bind(ts_text(t)),
        Value::Date(d) if ty == ColType::Datetime => q.bind(format!("{d} 00:00:00.000")),
        Value::Date(d) => q.bind(d.to_string()),
        Value::List(_) | Value::Map(_) => q.bind(v.to_json().to_string()),
    }
}

/// Loads `tables` into a fresh in-memory SQLite and runs `sql` there, within `timeout`.
pub async fn run_join(
    tables: &[(String, Arc<Table>)],
    sql: &str,
    timeout: Duration,
) -> Result<Table, String> {
    let deadline = Instant::now() + timeout;
    let work = async {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| format!("cannot open the in-memory database: {e}"))?;
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| format!("cannot open the in-memory database: {e}"))?;
        // Interrupt a runaway statement once the deadline has passed.
        conn.lock_handle()
            .await
            .map_err(|e| format!("cannot set up the in-memory database: {e}"))?
            .set_progress_handler(1_000, move || Instant::now() < deadline);
        for (name, t) in tables {
            load(&mut conn, name, t).await?;
        }
        let result = query(&mut conn, sql).await;
        let _ = conn.close().await;
        result
    };
    match tokio::time::timeout(timeout + Duration::from_millis(500), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the join timed out after {}",
            invar_core::units::format_duration(timeout)
        )),
    }
}

async fn load(conn: &mut SqliteConnection, name: &str, t: &Table) -> Result<(), String> {
    let types: Vec<ColType> = (0..t.columns.len()).map(|c| col_type(t, c)).collect();
    let cols: Vec<String> = t
        .columns
        .iter()
        .zip(&types)
        .map(|(c, ty)| format!("{} {}", quote_ident(c), ty.sql()))
        .collect();
    if cols.is_empty() {
        return Err(format!("table `{name}` has no columns"));
    }
    let create = format!("CREATE TABLE {} ({})", quote_ident(name), cols.join(", "));
    conn.execute(AssertSqlSafe(create))
        .await
        .map_err(|e| format!("cannot create table `{name}`: {e}"))?;
    if t.rows.is_empty() {
        return Ok(());
    }
    let width = t.columns.len();
    let per_stmt = (MAX_PARAMS / width).clamp(1, MAX_ROWS_PER_INSERT);
    let one = format!("({})", vec!["?"; width].join(", "));
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| format!("loading `{name}`: {e}"))?;
    for chunk in t.rows.chunks(per_stmt) {
        let insert = format!(
            "INSERT INTO {} VALUES {}",
            quote_ident(name),
            vec![one.as_str(); chunk.len()].join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(insert));
        for row in chunk {
            for (c, ty) in types.iter().enumerate() {
                q = bind(q, row.get(c).unwrap_or(&Value::Null), *ty);
            }
        }
        q.execute(&mut *tx)
            .await
            .map_err(|e| format!("loading `{name}`: {e}"))?;
    }
    tx.commit()
        .await
        .map_err(|e| format!("loading `{name}`: {e}"))?;
    Ok(())
}

async fn query(conn: &mut SqliteConnection, sql: &str) -> Result<Table, String> {
    let sql = sql.trim().trim_end_matches(';').to_string();
    let stmt = conn
        .prepare(AssertSqlSafe(sql.clone()).into_sql_str())
        .await
        .map_err(|e| format!("the join's sql: {}", describe(&e)))?;
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("the join's sql: {}", describe(&e)))?;
    let mut table = Table::new(columns);
    for row in &rows {
        table
            .rows
            .push((0..table.columns.len()).map(|i| decode(row, i)).collect());
    }
    Ok(table)
}

fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

fn decode(row: &SqliteRow, i: usize) -> Value {
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
        .map(|c| c.type_info().name().to_ascii_uppercase())
        .unwrap_or_default();
    match runtime.as_str() {
        "INTEGER" => match row.try_get::<i64, _>(i) {
            Ok(v) if declared == "BOOLEAN" => Value::Bool(v != 0),
            Ok(v) => Value::Int(v),
            Err(_) => Value::Null,
        },
        "REAL" => row.try_get::<f64, _>(i).map_or(Value::Null, Value::Float),
        "TEXT" => match row.try_get::<String, _>(i) {
            Ok(s) => match declared.as_str() {
                "DATETIME" => parse_timestamp(&s).map_or(Value::Text(s), Value::Timestamp),
                "DATE" => match NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                    Ok(d) => Value::Date(d),
                    Err(_) => Value::Text(s),
                },
                "JSON" => serde_json::from_str::<serde_json::Value>(&s)
                    .map(|j| Value::from_json(&j))
                    .unwrap_or(Value::Text(s)),
                _ => Value::Text(s),
            },
            Err(_) => Value::Null,
        },
        _ => row.try_get::<Vec<u8>, _>(i).map_or(Value::Null, |b| {
            Value::Text(String::from_utf8_lossy(&b).into_owned())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn t(cols: &[&str], rows: Vec<Vec<Value>>) -> Arc<Table> {
        Arc::new(Table {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows,
        })
    }

    #[tokio::test]
    async fn types_survive_for_counts_numbers_and_dates() {
        let now = Utc::now();
        let old = now - chrono::Duration::hours(2);
        let slots = t(
            &["key", "member", "score", "agent"],
            vec![
                vec![tx("k:a"), tx("1"), Value::Float(1.5), tx("a")],
                vec![tx("k:a"), tx("2"), Value::Float(2.0), tx("a")],
                vec![tx("k:b"), tx("3"), Value::Float(3.0), tx("b")],
            ],
        );
        let agents = t(
            &["name", "max", "since", "flag", "meta"],
            vec![
                vec![
                    tx("a"),
                    Value::Int(1),
                    Value::Timestamp(old),
                    Value::Bool(true),
                    Value::Map([("x".to_string(), Value::Int(1))].into()),
                ],
                vec![
                    tx("b"),
                    Value::Int(5),
                    Value::Timestamp(now),
                    Value::Bool(false),
                    Value::Null,
                ],
            ],
        );
        let tables = vec![("slots".to_string(), slots), ("agents".to_string(), agents)];
        let sql = "SELECT a.name, count(*) AS used, a.max, a.since, a.flag, \
                   json_extract(a.meta, '$.x') AS x, \
                   a.since < datetime('now', '-1 hour') AS stale, \
                   sum(s.score) AS total \
                   FROM slots s JOIN agents a ON a.name = s.agent \
                   GROUP BY a.name, a.max HAVING count(*) > a.max";
        let r = run_join(&tables, sql, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            r.columns,
            [
                "name", "used", "max", "since", "flag", "x", "stale", "total"
            ]
        );
        assert_eq!(r.rows.len(), 1, "{r:?}");
        let row = &r.rows[0];
        assert_eq!(row[0], tx("a"));
        assert_eq!(row[1], Value::Int(2));
        assert_eq!(row[2], Value::Int(1));
        assert!(matches!(row[3], Value::Timestamp(_)), "{:?}", row[3]);
        assert_eq!(row[4], Value::Bool(true));
        assert_eq!(row[5], Value::Int(1));
        assert_eq!(row[6], Value::Int(1));
        assert_eq!(row[7], Value::Float(3.5));
        // Zero rows still name the columns; a bad query is an error naming the problem.
        let r = run_join(
            &tables,
            "SELECT name FROM agents WHERE 0",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((r.columns.len(), r.rows.len()), (1, 0));
        let e = run_join(&tables, "SELECT nope FROM agents", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("no such column"), "{e}");
    }
}
