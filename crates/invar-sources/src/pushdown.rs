//! Set checks pushed down into the database: when both sides of a `subset` are SQL on the
//! same source, one anti-join query returns only the missing keys, so neither side's rows
//! cross the wire. Keys compare exactly as in memory: natively when both key columns have the
//! same integer/text/uuid/date type (so the database can hash- or index-join), else through a
//! normalised text expression.

use crate::sql::Dialect;
use invar_core::{Check, Probe, SubsetCheck};

/// Both sides of a subset that can be pushed down: one SQL source, no grace, named keys.
pub struct Candidate<'a> {
    pub source: &'a str,
    pub each_sql: &'a str,
    pub in_sql: &'a str,
    pub each_key: &'a [String],
    pub in_key: &'a [String],
}

pub fn candidate(check: &Check) -> Option<Candidate<'_>> {
    let Check::Subset(SubsetCheck {
        each,
        within,
        grace: None,
    }) = check
    else {
        return None;
    };
    let (
        Probe::Sql {
            source: s1,
            sql: each_sql,
        },
        Probe::Sql {
            source: s2,
            sql: in_sql,
        },
    ) = (&each.probe, &within.probe)
    else {
        return None;
    };
    if s1 != s2 || each.key.is_empty() || each.key.len() != within.key.len() {
        return None;
    }
    Some(Candidate {
        source: s1,
        each_sql,
        in_sql,
        each_key: &each.key,
        in_key: &within.key,
    })
}

/// Whether two key columns of these (database) types compare natively exactly as invar
/// compares keys in memory (by text, case- and space-sensitive): then the database can use
/// its own join (hash or index) instead of comparing computed text.
pub fn native_equal(d: Dialect, left: &str, right: &str) -> bool {
    fn class(d: Dialect, t: &str) -> Option<&'static str> {
        let t = t.to_ascii_uppercase();
        let t = t.trim_end_matches(" UNSIGNED");
        match d {
            Dialect::Postgres => match t {
                "INT2" | "INT4" | "INT8" => Some("int"),
                "TEXT" | "VARCHAR" | "NAME" => Some("text"),
                "UUID" => Some("uuid"),
                "DATE" => Some("date"),
                _ => None,
            },
            Dialect::Mysql => match t {
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Some("int"),
                _ => None,
            },
            Dialect::Sqlite => None,
        }
    }
    matches!((class(d, left), class(d, right)), (Some(a), Some(b)) if a == b)
}

/// The pushed-down query: the rows of `each` whose key is not found `in` the other side
/// (an anti-join the database plans as it likes), plus `__examined`, the number of `each`
/// rows with a complete key. `native[i]` says key pair `i` may use the database's `=`.
pub fn subset_pushdown(check: &Check, d: Dialect, native: &[bool]) -> Option<Probe> {
    let Candidate {
        source,
        each_sql,
        in_sql,
        each_key,
        in_key,
    } = candidate(check)?;
    let q = |name: &str| match d {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    };
    // User SQL goes on its own lines so a trailing `-- comment` cannot swallow the wrapper.
    let strip = |s: &str| s.trim().trim_end_matches(';').trim_end().to_string();
    let (each_sql, in_sql) = (strip(each_sql), strip(in_sql));
    let not_null = each_key
        .iter()
        .map(|c| format!("invar_e.{} IS NOT NULL", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let join_on = in_key
        .iter()
        .zip(each_key)
        .enumerate()
        .map(|(i, (ic, ec))| {
            let (l, r) = (format!("invar_i.{}", q(ic)), format!("invar_e.{}", q(ec)));
            if native.get(i).copied().unwrap_or(false) {
                format!("{l} = {r}")
            } else {
                format!("{} = {}", key_text(d, &l), key_text(d, &r))
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let keys = each_key
        .iter()
        .map(|c| format!("invar_e.{0} AS {0}", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let out_cols = each_key
        .iter()
        .map(|c| format!("invar_m.{}", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {out_cols}, invar_c.n AS __examined\n\
         FROM (SELECT count(*) AS n FROM (\n{each_sql}\n) invar_e WHERE {not_null}) invar_c\n\
         LEFT JOIN (SELECT {keys} FROM (\n{each_sql}\n) invar_e WHERE {not_null} AND NOT EXISTS (\n\
         SELECT 1 FROM (\n{in_sql}\n) invar_i WHERE {join_on})) invar_m ON 1 = 1"
    );
    Some(Probe::Sql {
        source: source.to_string(),
        sql,
    })
}

/// The SQL for a key's comparison text, matching `Value::key_text` for the common types:
/// exact (binary, case- and space-sensitive) text, with numerics that have a fractional part
/// of zeros written as integers (`5.00` = `5`), as in memory.
fn key_text(d: Dialect, x: &str) -> String {
    match d {
        Dialect::Postgres => format!(
            "(CASE WHEN pg_typeof({x}) = 'numeric'::regtype AND ({x})::text LIKE '%.%' \
             THEN rtrim(rtrim(({x})::text, '0'), '.') ELSE ({x})::text END)"
        ),
        Dialect::Mysql => format!(
            "CAST((CASE WHEN CAST({x} AS CHAR) REGEXP '^-?[0-9]+[.][0-9]+$' \
             THEN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({x} AS CHAR))) \
             ELSE CAST({x} AS CHAR) END) AS BINARY)"
        ),
        Dialect::Sqlite => format!(
            "(CASE WHEN typeof({x}) = 'real' AND {x} = CAST({x} AS INTEGER) \
             THEN CAST(CAST({x} AS INTEGER) AS TEXT) ELSE CAST({x} AS TEXT) END)"
        ),
    }
}
