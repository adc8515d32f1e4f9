//! Fused metrics: every `metrics` probe over the same source, table and `where` in one run is
//! computed by ONE `SELECT` of all their aggregates (identical aggregates computed once), so a
//! table is scanned once however many invariants measure it. Different tables are separate
//! queries and run concurrently, bounded by their source's pool.

use crate::sql::Dialect;
use invar_core::metrics::{Literal, MetricFn, MetricsProbe};
use invar_core::{Table, Value};

/// One fused query and how to cut each probe's one-row table out of its result.
#[derive(Debug, Clone)]
pub struct FusedQuery {
    pub sql: String,
    /// The distinct aggregates, in column order (`m0`, `m1`, …).
    pub aggregates: Vec<MetricFn>,
}

impl FusedQuery {
    /// Builds the query for probes sharing one fusion key (same source, table and filter).
    pub fn build(dialect: Dialect, probes: &[&MetricsProbe]) -> Option<FusedQuery> {
        let mut aggregates: Vec<MetricFn> = Vec::new();
        for p in probes {
            for (_, m) in &p.compute {
                if !aggregates.contains(m) {
                    aggregates.push(m.clone());
                }
            }
        }
        let first = probes.first()?;
        let cols = aggregates
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{} AS m{i}", aggregate_sql(dialect, m)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {cols} FROM {}", ident(dialect, &first.table));
        if let Some(f) = &first.filter {
            sql.push_str(&format!(" WHERE ({f}\n)"));
        }
        Some(FusedQuery { sql, aggregates })
    }

    /// The table of one probe: its named metrics, one row.
    pub fn project(&self, fused: &Table, probe: &MetricsProbe) -> Result<Table, String> {
        let row = fused
            .rows
            .first()
            .ok_or("the metrics query returned no row")?;
        let mut t = Table::new(probe.compute.iter().map(|(n, _)| n.clone()).collect());
        let values = probe
            .compute
            .iter()
            .map(|(_, m)| {
                // Every probe's metrics are in the fused query it was built from; one that is
                // not reads as NULL rather than a wrong column.
                let v = self
                    .aggregates
                    .iter()
                    .position(|a| a == m)
                    .and_then(|i| row.get(i).cloned())
                    .unwrap_or(Value::Null);
                // Counting aggregates of an empty table are 0, never NULL.
                match (m, v) {
                    (
                        MetricFn::Count
                        | MetricFn::Missing(_)
                        | MetricFn::Duplicates(_)
                        | MetricFn::Distinct(_)
                        | MetricFn::Invalid(..),
                        Value::Null,
                    ) => Value::Int(0),
                    (_, v) => v,
                }
            })
            .collect();
        t.rows.push(values);
        Ok(t)
    }
}

fn ident(d: Dialect, name: &str) -> String {
    name.split('.')
        .map(|part| match d {
            Dialect::Mysql => format!("`{part}`"),
            _ => format!("\"{part}\""),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Number(n) => n.clone(),
        Literal::Text(t) => format!("'{}'", t.replace('\'', "''")),
    }
}

fn aggregate_sql(d: Dialect, m: &MetricFn) -> String {
    match m {
        MetricFn::Count => "count(*)".into(),
        MetricFn::Missing(c) => format!("count(*) - count({})", ident(d, c)),
        MetricFn::Duplicates(c) => format!("count({0}) - count(DISTINCT {0})", ident(d, c)),
        MetricFn::Distinct(c) => format!("count(DISTINCT {})", ident(d, c)),
        MetricFn::Min(c) => format!("min({})", ident(d, c)),
        MetricFn::Max(c) => format!("max({})", ident(d, c)),
        MetricFn::Avg(c) => format!("avg({})", ident(d, c)),
        MetricFn::Sum(c) => format!("sum({})", ident(d, c)),
        MetricFn::Invalid(c, allowed) => {
            let list = allowed.iter().map(literal).collect::<Vec<_>>().join(", ");
            let c = ident(d, c);
            format!("sum(CASE WHEN {c} IS NOT NULL AND {c} NOT IN ({list}) THEN 1 ELSE 0 END)")
        }
        // Seconds since the newest value; zone-less timestamps are UTC on every backend.
        MetricFn::Age(c) => {
            let c = ident(d, c);
            match d {
                Dialect::Postgres => {
                    format!("EXTRACT(EPOCH FROM now()) - EXTRACT(EPOCH FROM max({c}))")
                }
                // The session time zone is UTC, so DATETIME and TIMESTAMP both read as UTC.
                Dialect::Mysql => format!("TIMESTAMPDIFF(SECOND, max({c}), UTC_TIMESTAMP())"),
                // Text timestamps or unix seconds.
                Dialect::Sqlite => format!(
                    "CAST(strftime('%s', 'now') AS INTEGER) - (CASE WHEN typeof(max({c})) IN ('integer', 'real') \
                     THEN max({c}) ELSE CAST(strftime('%s', max({c})) AS INTEGER) END)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use invar_core::metrics::parse_metric;

    fn probe(filter: Option<&str>, compute: &[(&str, &str)]) -> MetricsProbe {
        MetricsProbe {
            source: "app".into(),
            table: "public.orders".into(),
            filter: filter.map(str::to_string),
            compute: compute
                .iter()
                .map(|(n, f)| (n.to_string(), parse_metric(f).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn identical_aggregates_are_computed_once() {
        let a = probe(
            Some("status <> 'test'"),
            &[("rows", "count()"), ("no_email", "missing(email)")],
        );
        let b = probe(
            Some("status <> 'test'"),
            &[
                ("n", "count()"),
                ("bad", "invalid(status, [paid, \"it's\"])"),
            ],
        );
        let q = FusedQuery::build(Dialect::Postgres, &[&a, &b]).unwrap();
        assert_eq!(q.aggregates.len(), 3);
        assert_eq!(
            q.sql,
            "SELECT count(*) AS m0, count(*) - count(\"email\") AS m1, sum(CASE WHEN \"status\" IS NOT NULL AND \"status\" NOT IN ('paid', 'it''s') THEN 1 ELSE 0 END) AS m2 FROM \"public\".\"orders\" WHERE (status <> 'test'\n)"
        );
        let fused = Table {
            columns: vec!["m0".into(), "m1".into(), "m2".into()],
            rows: vec![vec![Value::Int(10), Value::Int(2), Value::Null]],
        };
        let t = q.project(&fused, &b).unwrap();
        assert_eq!(t.columns, vec!["n", "bad"]);
        assert_eq!(t.rows[0], vec![Value::Int(10), Value::Int(0)]);
    }
}
