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
    let text = |expr: String| match d {
        Dialect::Mysql => format!("CAST({expr} AS CHAR)"),
        _ => format!("CAST({expr} AS TEXT)"),
    };
    let strip = |s: &str| s.trim().trim_end_matches(';').trim().to_string();
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
                text(format!("invar_i.{}", q(c))),
                text(format!("invar_k.{k}"))
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
    let sql = format!(
        "WITH invar_e AS ({each}), invar_i AS ({inn}), \
         invar_k AS (SELECT DISTINCT {select_keys} FROM invar_e WHERE {not_null}), \
         invar_m AS (SELECT * FROM invar_k WHERE NOT EXISTS (SELECT 1 FROM invar_i WHERE {join_on})) \
         SELECT {out_cols}, invar_c.n AS __examined FROM (SELECT count(*) AS n FROM invar_k) invar_c \
         LEFT JOIN invar_m ON 1 = 1",
        each = strip(each_sql),
        inn = strip(in_sql),
    );
    Some(Probe::Sql {
        source: s1.clone(),
        sql,
    })
}
