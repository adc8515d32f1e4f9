//! Set checks pushed down into the database: when both sides of a `subset` are SQL on the
//! same source, one anti-join query returns only the missing keys, so neither side's rows
//! cross the wire. Keys are compared as text, as in memory.

use crate::sql::Dialect;
use invar_core::{Check, Probe, SubsetCheck};

/// The pushed-down query for `check`, when it can and should be pushed down.
pub fn subset_pushdown(
    check: &Check,
    dialect_of: impl Fn(&str) -> Option<Dialect>,
) -> Option<Probe> {
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
    let d = dialect_of(s1)?;
    let q = |name: &str| match d {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    };
    // User SQL goes on its own lines so a trailing `-- comment` cannot swallow the wrapper.
    let strip = |s: &str| s.trim().trim_end_matches(';').trim_end().to_string();
    let keys: Vec<String> = (0..each.key.len()).map(|i| format!("invar_k{i}")).collect();
    let select_keys = each
        .key
        .iter()
        .zip(&keys)
        .map(|(c, k)| format!("{} AS {k}", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let not_null = each
        .key
        .iter()
        .map(|c| format!("{} IS NOT NULL", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let join_on = within
        .key
        .iter()
        .zip(&keys)
        .map(|(c, k)| {
            format!(
                "{} = {}",
                key_text(d, &format!("invar_i.{}", q(c))),
                key_text(d, &format!("invar_k.{k}"))
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let out_cols = each
        .key
        .iter()
        .zip(&keys)
        .map(|(c, k)| format!("invar_m.{k} AS {}", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    // MySQL's DISTINCT follows the (case-insensitive) collation: keep every row and count
    // distinct binary keys instead; duplicates are folded by the evaluator.
    let (distinct, count) = match d {
        Dialect::Mysql => (
            "",
            format!(
                "count(DISTINCT {})",
                keys.iter()
                    .map(|k| key_text(d, k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        _ => ("DISTINCT ", "count(*)".to_string()),
    };
    let sql = format!(
        "WITH invar_e AS (\n{each}\n), invar_i AS (\n{inn}\n),\n\
         invar_k AS (SELECT {distinct}{select_keys} FROM invar_e WHERE {not_null}),\n\
         invar_m AS (SELECT * FROM invar_k WHERE NOT EXISTS (SELECT 1 FROM invar_i WHERE {join_on}))\n\
         SELECT {out_cols}, invar_c.n AS __examined FROM (SELECT {count} AS n FROM invar_k) invar_c\n\
         LEFT JOIN invar_m ON 1 = 1",
        each = strip(each_sql),
        inn = strip(in_sql),
    );
    Some(Probe::Sql {
        source: s1.clone(),
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
