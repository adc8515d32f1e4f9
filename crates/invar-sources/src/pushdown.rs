//! Set checks pushed down into the database: when both sides of a `subset` are SQL on the
//! same source, one anti-join query returns only the missing keys, so neither side's rows
//! cross the wire.
//!
//! **One definition of key equality.** In memory, keys compare by `Value::key_text` of the
//! decoded values (`7` = `"7"` = `7.0`; text case- and space-sensitive; `char(n)` padding is
//! dropped when decoded, as Postgres' own cast to text does). The pushed-down query must give
//! exactly the same answer, so this module decides, from the key columns' database types
//! (learned by preparing both queries), how the database compares a pair of keys:
//!
//! - both columns of one [`KeyClass`]: the class's exact comparison (native `=` for integers,
//!   uuids, dates and booleans; binary text; one instant for timestamps; doubles for floats
//!   and numerics, which are decoded as doubles);
//! - different classes: both sides as SQL text built to equal `key_text` byte for byte —
//!   possible for every class but floats, whose shortest decimal form SQL cannot write;
//! - a type that cannot be mirrored (floats across classes, json, bytes, arrays, SQLite's
//!   dates) is not pushed down: the check runs in memory and gives the same answer by
//!   construction.
//!
//! SQLite types belong to values, not columns: its keys are pushed down only when a guard
//! query finds no REAL or BLOB key on either side (see [`sqlite_guard`]).
//!
//! Counts are of **distinct** keys on both paths: `each_keys` is the number of distinct
//! complete keys of `each`, and each missing key is reported once.

use crate::sql::Dialect;
use invar_core::{Check, Probe, SubsetCheck};

/// How values of one database column type compare as keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Int,
    /// NUMERIC/DECIMAL: decoded as an integer when integral and within i64, else a double.
    Numeric,
    /// Decoded as a double.
    Float,
    Text,
    Bool,
    Uuid,
    Date,
    Timestamp,
    /// A zone-less timestamp (read as UTC).
    LocalTimestamp,
}

/// The key class of a column type, or `None` when keys of this type cannot be compared in
/// the database exactly as in memory (the check then runs in memory).
pub fn key_class(d: Dialect, ty: &str) -> Option<KeyClass> {
    let t = ty.to_ascii_uppercase();
    match d {
        Dialect::Postgres => match t.as_str() {
            "INT2" | "INT4" | "INT8" | "OID" => Some(KeyClass::Int),
            "NUMERIC" => Some(KeyClass::Numeric),
            "FLOAT4" | "FLOAT8" => Some(KeyClass::Float),
            "BOOL" => Some(KeyClass::Bool),
            "UUID" => Some(KeyClass::Uuid),
            "DATE" => Some(KeyClass::Date),
            "TIMESTAMPTZ" => Some(KeyClass::Timestamp),
            "TIMESTAMP" => Some(KeyClass::LocalTimestamp),
            "JSON" | "JSONB" | "BYTEA" | "VOID" | "RECORD" => None,
            _ if t.ends_with("[]") => None,
            // text, varchar, name, bpchar, "char", citext, enums, intervals…: decoded as
            // their text form, which `::text` writes.
            _ => Some(KeyClass::Text),
        },
        Dialect::Mysql => match t.as_str() {
            "BOOLEAN" => Some(KeyClass::Bool),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => Some(KeyClass::Int),
            // Above i64 a BIGINT UNSIGNED is decoded as a double.
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => {
                Some(KeyClass::Int)
            }
            "DECIMAL" => Some(KeyClass::Numeric),
            "FLOAT" | "DOUBLE" => Some(KeyClass::Float),
            "DATE" => Some(KeyClass::Date),
            "TIMESTAMP" | "DATETIME" => Some(KeyClass::LocalTimestamp),
            "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" | "TIME" => Some(KeyClass::Text),
            _ => None,
        },
        // Declared types only; the guard query rules out REAL and BLOB values.
        Dialect::Sqlite => match t.as_str() {
            // Text in a DATE/DATETIME column is parsed into a date or instant in memory.
            "DATE" | "DATETIME" => None,
            "BOOLEAN" => Some(KeyClass::Bool),
            "INTEGER" => Some(KeyClass::Int),
            _ => Some(KeyClass::Text),
        },
    }
}

/// How pair `i` of key columns is compared in the pushed-down query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPair {
    pub each: KeyClass,
    pub within: KeyClass,
}

impl KeyPair {
    /// The pair's comparison, or `None` when it cannot be exact in the database.
    pub fn new(each: KeyClass, within: KeyClass) -> Option<KeyPair> {
        use KeyClass::{Float, Int, Numeric};
        let ok = match (each, within) {
            (a, b) if a == b => true,
            // A non-integral numeric never equals an integer's digits; an integral one is
            // decoded as that integer: the database's `=` decides the same.
            (Int, Numeric) | (Numeric, Int) => true,
            // A double's shortest decimal form, which SQL cannot write.
            (Float | Numeric, _) | (_, Float | Numeric) => false,
            _ => true,
        };
        ok.then_some(KeyPair { each, within })
    }
}

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

/// The SQL text of a key, byte for byte `Value::key_text` of the value as decoded.
fn mirror(d: Dialect, c: KeyClass, x: &str) -> String {
    match d {
        Dialect::Postgres => {
            let stamp = |y: &str| {
                format!(
                    "to_char({y}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || (CASE \
                     WHEN extract(microseconds FROM {y})::bigint % 1000000 = 0 THEN '' \
                     WHEN extract(microseconds FROM {y})::bigint % 1000 = 0 \
                     THEN '.' || lpad((extract(microseconds FROM {y})::bigint % 1000000 / 1000)::text, 3, '0') \
                     ELSE '.' || lpad((extract(microseconds FROM {y})::bigint % 1000000)::text, 6, '0') END) || 'Z'"
                )
            };
            let body = match c {
                KeyClass::Date => format!(
                    "CASE WHEN isfinite({x}) THEN to_char({x}, 'YYYY-MM-DD') ELSE ({x})::text END"
                ),
                KeyClass::Timestamp => format!(
                    "CASE WHEN isfinite({x}) THEN {} ELSE ({x})::text END",
                    stamp(&format!("({x} AT TIME ZONE 'UTC')"))
                ),
                KeyClass::LocalTimestamp => format!(
                    "CASE WHEN isfinite({x}) THEN {} ELSE ({x})::text END",
                    stamp(x)
                ),
                _ => format!("({x})::text"),
            };
            format!("(({body}) COLLATE \"C\")")
        }
        Dialect::Mysql => {
            let body = match c {
                KeyClass::Bool => format!("(CASE WHEN {x} <> 0 THEN 'true' ELSE 'false' END)"),
                KeyClass::Date => format!("DATE_FORMAT({x}, '%Y-%m-%d')"),
                KeyClass::LocalTimestamp | KeyClass::Timestamp => format!(
                    "CONCAT(DATE_FORMAT({x}, '%Y-%m-%dT%H:%i:%s'), CASE \
                     WHEN MICROSECOND({x}) = 0 THEN '' \
                     WHEN MICROSECOND({x}) % 1000 = 0 THEN CONCAT('.', LPAD(MICROSECOND({x}) DIV 1000, 3, '0')) \
                     ELSE CONCAT('.', LPAD(MICROSECOND({x}), 6, '0')) END, 'Z')"
                ),
                KeyClass::Int => format!("CAST({x} AS CHAR)"),
                _ => format!("CONVERT({x} USING utf8mb4)"),
            };
            format!("CAST({body} AS BINARY)")
        }
        // The guard rules out REAL and BLOB values, so a key is an integer or text.
        Dialect::Sqlite => match c {
            KeyClass::Bool => format!(
                "(CASE typeof({x}) WHEN 'integer' THEN (CASE WHEN {x} <> 0 THEN 'true' ELSE 'false' END) \
                 ELSE {x} END COLLATE BINARY)"
            ),
            _ => format!(
                "(CASE typeof({x}) WHEN 'integer' THEN CAST({x} AS TEXT) ELSE {x} END COLLATE BINARY)"
            ),
        },
    }
}

/// The expression a key column is compared (and counted distinct) by, given its pair.
fn key_expr(d: Dialect, pair: KeyPair, mine: KeyClass, x: &str) -> String {
    if matches!(mine, KeyClass::Int | KeyClass::Numeric)
        && d != Dialect::Sqlite
        && (pair.each == KeyClass::Numeric || pair.within == KeyClass::Numeric)
    {
        return x.to_string();
    }
    if pair.each != pair.within {
        return mirror(d, mine, x);
    }
    match (d, mine) {
        (Dialect::Sqlite, _) => mirror(d, mine, x),
        // Decoded as doubles from their text: equal as doubles (NaN = NaN, -0 = 0 in SQL, as
        // their key texts are equal).
        (Dialect::Postgres, KeyClass::Float) => format!("(({x})::text)::float8"),
        (Dialect::Mysql, KeyClass::Float) => format!("CAST(CAST({x} AS CHAR) AS DOUBLE)"),
        (
            Dialect::Postgres,
            KeyClass::Int
            | KeyClass::Uuid
            | KeyClass::Date
            | KeyClass::Bool
            | KeyClass::Timestamp
            | KeyClass::LocalTimestamp,
        ) => x.to_string(),
        (Dialect::Mysql, KeyClass::Int | KeyClass::Date | KeyClass::LocalTimestamp) => {
            x.to_string()
        }
        _ => mirror(d, mine, x),
    }
}

/// Whether a NUMERIC/DECIMAL value is decoded as an integer (integral, within i64).
fn fits_int(d: Dialect, x: &str) -> String {
    let trunc = match d {
        Dialect::Mysql => format!("TRUNCATE({x}, 0)"),
        _ => format!("trunc({x})"),
    };
    format!("({x} = {trunc} AND {x} BETWEEN -9223372036854775808 AND 9223372036854775807)")
}

fn as_double(d: Dialect, x: &str) -> String {
    match d {
        Dialect::Mysql => format!("CAST(CAST({x} AS CHAR) AS DOUBLE)"),
        _ => format!("(({x})::text)::float8"),
    }
}

/// The join condition of key pair `i` (each side's column as `e` and `i`).
fn key_equal(d: Dialect, pair: KeyPair, e: &str, i: &str) -> String {
    if pair.each == KeyClass::Numeric && pair.within == KeyClass::Numeric {
        // Integers by value; the rest as the doubles they are decoded as.
        let (fe, fi) = (fits_int(d, e), fits_int(d, i));
        return format!(
            "(CASE WHEN {fe} AND {fi} THEN {e} = {i} WHEN NOT {fe} AND NOT {fi} THEN {} = {} ELSE 1 = 0 END)",
            as_double(d, e),
            as_double(d, i)
        );
    }
    format!(
        "{} = {}",
        key_expr(d, pair, pair.within, i),
        key_expr(d, pair, pair.each, e)
    )
}

/// The expressions that tell `each`'s distinct keys apart exactly as in memory.
fn distinct_exprs(d: Dialect, pair: KeyPair, x: &str) -> Vec<String> {
    match (d, pair.each) {
        (Dialect::Postgres | Dialect::Mysql, KeyClass::Numeric) => {
            let int = match d {
                Dialect::Mysql => format!("CAST({x} AS SIGNED)"),
                _ => format!("({x})::int8"),
            };
            let fits = fits_int(d, x);
            vec![
                format!("CASE WHEN {fits} THEN {int} END"),
                format!("CASE WHEN {fits} THEN NULL ELSE {} END", as_double(d, x)),
            ]
        }
        (Dialect::Postgres | Dialect::Mysql, KeyClass::Int) => vec![x.to_string()],
        _ => vec![key_expr(d, pair, pair.each, x)],
    }
}

/// The guard that makes SQLite keys safe to push down: the number of REAL or BLOB keys on
/// either side (at most one per side is looked for). Non-zero: the check runs in memory,
/// where such keys compare by their decoded form.
pub fn sqlite_guard(c: &Candidate<'_>) -> String {
    let side = |sql: &str, keys: &[String]| {
        let cond = keys
            .iter()
            .map(|k| {
                format!(
                    "typeof(invar_g.{}) IN ('real', 'blob')",
                    quote(Dialect::Sqlite, k)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        format!(
            "(SELECT count(*) FROM (SELECT 1 FROM (\n{}\n) invar_g WHERE {cond} LIMIT 1))",
            strip(sql)
        )
    };
    format!(
        "SELECT {} + {} AS n",
        side(c.each_sql, c.each_key),
        side(c.in_sql, c.in_key)
    )
}

fn quote(d: Dialect, name: &str) -> String {
    match d {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

// User SQL goes on its own lines so a trailing `-- comment` cannot swallow the wrapper.
fn strip(s: &str) -> String {
    s.trim().trim_end_matches(';').trim_end().to_string()
}

/// The pushed-down query: the distinct keys of `each` not found `in` the other side (an
/// anti-join the database plans as it likes), plus `__examined`, the number of distinct
/// complete keys of `each`. `pairs[i]` says how key pair `i` compares.
pub fn subset_pushdown(check: &Check, d: Dialect, pairs: &[KeyPair]) -> Option<Probe> {
    let Candidate {
        source,
        each_sql,
        in_sql,
        each_key,
        in_key,
    } = candidate(check)?;
    if pairs.len() != each_key.len() {
        return None;
    }
    let q = |name: &str| quote(d, name);
    let (each_sql, in_sql) = (strip(each_sql), strip(in_sql));
    let not_null = each_key
        .iter()
        .map(|c| format!("invar_e.{} IS NOT NULL", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let join_on = in_key
        .iter()
        .zip(each_key)
        .zip(pairs)
        .map(|((ic, ec), p)| {
            let (e, i) = (format!("invar_e.{}", q(ec)), format!("invar_i.{}", q(ic)));
            key_equal(d, *p, &e, &i)
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let distinct = each_key
        .iter()
        .zip(pairs)
        .flat_map(|(c, p)| distinct_exprs(d, *p, &format!("invar_e.{}", q(c))))
        .enumerate()
        .map(|(n, e)| format!("{e} AS invar_k{n}"))
        .collect::<Vec<_>>()
        .join(", ");
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
    // Missing rows may repeat a key: the core reports each distinct key once. The anti-join
    // is a LEFT JOIN, not NOT EXISTS: MariaDB's subquery cache matches a correlated key by
    // the column's collation (`'A'` reuses the answer for `'a'`) whatever the expression.
    let sql = format!(
        "SELECT {out_cols}, invar_c.n AS __examined\n\
         FROM (SELECT count(*) AS n FROM (SELECT DISTINCT {distinct} FROM (\n{each_sql}\n) invar_e \
         WHERE {not_null}) invar_d) invar_c\n\
         LEFT JOIN (SELECT {keys} FROM (\n{each_sql}\n) invar_e LEFT JOIN (SELECT 1 AS invar_hit, invar_s.* \
         FROM (\n{in_sql}\n) invar_s) invar_i ON {join_on}\n\
         WHERE {not_null} AND invar_i.invar_hit IS NULL) invar_m ON 1 = 1"
    );
    Some(Probe::Sql {
        source: source.to_string(),
        sql,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use invar_core::{KeyedProbe, SubsetCheck};

    fn subset(each: &str, within: &str) -> Check {
        let side = |sql: &str| KeyedProbe {
            probe: Probe::Sql {
                source: "app".into(),
                sql: sql.into(),
            },
            key: vec!["k".into()],
            age: None,
        };
        Check::Subset(SubsetCheck {
            each: side(each),
            within: side(within),
            grace: None,
        })
    }

    #[test]
    fn text_keys_compare_as_bytes_in_mysql() {
        let c = subset("SELECT k FROM a", "SELECT k FROM b");
        let pair = KeyPair::new(KeyClass::Text, KeyClass::Text).unwrap();
        let Some(Probe::Sql { sql, .. }) = subset_pushdown(&c, Dialect::Mysql, &[pair]) else {
            panic!("not pushed down")
        };
        assert!(
            sql.contains("CAST(CONVERT(invar_i.`k` USING utf8mb4) AS BINARY)"),
            "{sql}"
        );
    }
}
