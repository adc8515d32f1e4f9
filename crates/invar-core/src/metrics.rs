//! The `metrics` probe: named aggregates over one table (`count()`, `missing(c)`, …).
//! Parsing and validation are pure; the SQL is generated per dialect by `invar-sources`,
//! which fuses every metrics probe over the same source, table and `where` into one query.

use serde::Serialize;

/// One aggregate function applied to a column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricFn {
    /// `count()`: rows.
    Count,
    /// `missing(c)`: rows where `c` is NULL.
    Missing(String),
    /// `duplicates(c)`: non-NULL values minus distinct non-NULL values.
    Duplicates(String),
    /// `distinct(c)`: distinct non-NULL values.
    Distinct(String),
    Min(String),
    Max(String),
    Avg(String),
    Sum(String),
    /// `invalid(c, [a, b])`: non-NULL values not in the allowed list.
    Invalid(String, Vec<Literal>),
    /// `age(c)`: seconds since the newest value (freshness).
    Age(String),
}

/// A literal in an `invalid` list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Literal {
    Text(String),
    /// Kept as written (already checked to be a number).
    Number(String),
}

/// `{ source, metrics: { table, where, compute: { name: fn(col) } } }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MetricsProbe {
    pub source: String,
    /// A table name, optionally schema-qualified (`public.orders`).
    pub table: String,
    /// A SQL boolean expression, as written.
    pub filter: Option<String>,
    /// Output column name → aggregate, in file order.
    pub compute: Vec<(String, MetricFn)>,
}

impl MetricsProbe {
    /// Probes with the same fusion key are computed by one query.
    pub fn fusion_key(&self) -> (String, String, Option<String>) {
        (self.source.clone(), self.table.clone(), self.filter.clone())
    }
}

/// A (possibly dotted) SQL identifier: letters, digits and `_`, not starting with a digit.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

pub const FUNCTIONS: &[&str] = &[
    "count()",
    "missing(c)",
    "duplicates(c)",
    "distinct(c)",
    "min(c)",
    "max(c)",
    "avg(c)",
    "sum(c)",
    "invalid(c, [a, b])",
    "age(c)",
];

/// Parses `missing(email)`, `invalid(status, [paid, 'on hold', 3])`, `count()`.
pub fn parse_metric(src: &str) -> Result<MetricFn, String> {
    let s = src.trim();
    let open = s.find('(').ok_or_else(|| {
        format!("`{s}` is not a metric: expected a call such as `missing(email)`")
    })?;
    if !s.ends_with(')') {
        return Err(format!("`{s}` is missing its closing `)`"));
    }
    let name = s[..open].trim();
    let args = s[open + 1..s.len() - 1].trim();
    let column = |args: &str| -> Result<String, String> {
        if is_identifier(args) {
            Ok(args.to_string())
        } else {
            Err(format!("`{name}` takes one column name, got `{args}`"))
        }
    };
    Ok(match name {
        "count" if args.is_empty() => MetricFn::Count,
        "count" => {
            return Err(format!(
                "`count()` takes no argument, got `{args}`: use `count()` or `distinct({args})`"
            ));
        }
        "missing" => MetricFn::Missing(column(args)?),
        "duplicates" => MetricFn::Duplicates(column(args)?),
        "distinct" => MetricFn::Distinct(column(args)?),
        "min" => MetricFn::Min(column(args)?),
        "max" => MetricFn::Max(column(args)?),
        "avg" => MetricFn::Avg(column(args)?),
        "sum" => MetricFn::Sum(column(args)?),
        "age" => MetricFn::Age(column(args)?),
        "invalid" => {
            let comma = args.find(',').ok_or_else(|| {
                "`invalid` takes a column and a list: `invalid(status, [paid, pending])`"
                    .to_string()
            })?;
            let col = column(args[..comma].trim())?;
            let list = args[comma + 1..].trim();
            if !(list.starts_with('[') && list.ends_with(']')) {
                return Err(format!(
                    "`invalid` expects a list of allowed values in `[…]`, got `{list}`"
                ));
            }
            let items = split_list(&list[1..list.len() - 1])?;
            if items.is_empty() {
                return Err("`invalid` needs at least one allowed value".into());
            }
            MetricFn::Invalid(col, items)
        }
        other => {
            return Err(format!(
                "unknown metric function `{other}`: expected one of {}",
                FUNCTIONS.join(", ")
            ));
        }
    })
}

fn split_list(s: &str) -> Result<Vec<Literal>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '\'' || chars[i] == '"' {
            let q = chars[i];
            let mut j = i + 1;
            let mut text = String::new();
            while j < chars.len() && chars[j] != q {
                text.push(chars[j]);
                j += 1;
            }
            if j >= chars.len() {
                return Err("an allowed value's quote is not closed".into());
            }
            out.push(Literal::Text(text));
            i = j + 1;
        } else {
            let mut j = i;
            while j < chars.len() && chars[j] != ',' {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect::<String>().trim().to_string();
            if word.parse::<f64>().is_ok() {
                out.push(Literal::Number(word));
            } else {
                out.push(Literal::Text(word));
            }
            i = j;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_function() {
        assert_eq!(parse_metric("count()").unwrap(), MetricFn::Count);
        assert_eq!(
            parse_metric(" missing(email) ").unwrap(),
            MetricFn::Missing("email".into())
        );
        assert_eq!(
            parse_metric("age(o.updated_at)").unwrap(),
            MetricFn::Age("o.updated_at".into())
        );
        assert_eq!(
            parse_metric("invalid(status, [paid, 'on hold', 3, \"x,y\"])").unwrap(),
            MetricFn::Invalid(
                "status".into(),
                vec![
                    Literal::Text("paid".into()),
                    Literal::Text("on hold".into()),
                    Literal::Number("3".into()),
                    Literal::Text("x,y".into())
                ]
            )
        );
    }

    #[test]
    fn rejects_bad_calls() {
        assert!(
            parse_metric("count(x)")
                .unwrap_err()
                .contains("distinct(x)")
        );
        assert!(parse_metric("missing(lower(email))").is_err());
        assert!(
            parse_metric("median(x)")
                .unwrap_err()
                .contains("unknown metric function `median`")
        );
        assert!(parse_metric("invalid(status)").is_err());
        assert!(parse_metric("invalid(status, [])").is_err());
        assert!(parse_metric("missing email").is_err());
        assert!(
            !is_identifier("1abc") && !is_identifier("a;drop") && is_identifier("public.orders")
        );
    }
}
