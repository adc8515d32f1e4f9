//! `invar history --invariant ID`'s measured series: the numeric values of each result's
//! `measured` map, oldest first, as a one-line sparkline per measure on a terminal, plain
//! numbers when piped, and as JSON or CSV.

use chrono::{DateTime, Utc};
use invar_store::ResultEntry;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The eight bars, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One bar per value, scaled from the series' min (▁) to its max (█); a flat series is all
/// `▄`; a missing (or non-finite) value is a space.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
    let (min, max) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() => {
                if max > min {
                    let i = ((v - min) / (max - min) * 7.0).round() as usize;
                    BARS[i.min(7)]
                } else {
                    BARS[3]
                }
            }
            _ => ' ',
        })
        .collect()
}

/// The label of the outcomes' line.
const OUTCOME: &str = "(outcome)";

/// One character per outcome, under a sparkline's bars.
fn outcome_mark(outcome: &str) -> char {
    match outcome {
        "pass" => '✓',
        "warn" => '!',
        "fail" => '✗',
        "skip" => '-',
        _ => 'E',
    }
}

/// A number as the store holds it: integers without a decimal point.
fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "-".to_string(),
    }
}

/// The series of one invariant: its results oldest first and the numeric measures among
/// their `measured` maps (by name).
pub struct Series<'a> {
    /// Oldest first.
    pub points: Vec<&'a ResultEntry>,
    pub measures: Vec<String>,
}

impl<'a> Series<'a> {
    /// From results newest first (as the store lists them).
    pub fn new(newest_first: &'a [ResultEntry]) -> Series<'a> {
        let points: Vec<&ResultEntry> = newest_first.iter().rev().collect();
        let measures: BTreeSet<&String> = points
            .iter()
            .flat_map(|r| r.measured.iter())
            .filter(|(_, v)| v.is_number())
            .map(|(k, _)| k)
            .collect();
        Series {
            points,
            measures: measures.into_iter().cloned().collect(),
        }
    }

    /// The measure's value in each result (`Null` where it is missing or not a number).
    pub fn values(&self, measure: &str) -> Vec<Value> {
        self.points
            .iter()
            .map(|r| {
                r.measured
                    .get(measure)
                    .filter(|v| v.is_number())
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect()
    }

    /// `measures, oldest first`: the outcomes, then one line per measure — a sparkline (with
    /// min, max and last) on a terminal, the numbers otherwise (`-` where missing).
    pub fn table(&self, terminal: bool) -> String {
        let mut out = String::new();
        if self.measures.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "measures, oldest first ({} results)",
            self.points.len()
        );
        let width = self
            .measures
            .iter()
            .map(String::len)
            .chain([OUTCOME.len()])
            .max()
            .unwrap_or(0);
        // The outcomes first, one mark per result under the bars (words when piped).
        let outcomes: Vec<&str> = self.points.iter().map(|r| r.outcome.as_str()).collect();
        let outcomes = if terminal {
            outcomes.iter().map(|o| outcome_mark(o)).collect::<String>()
        } else {
            outcomes.join(" ")
        };
        let _ = writeln!(out, "  {OUTCOME:<width$}  {outcomes}");
        for m in &self.measures {
            let values = self.values(m);
            let floats: Vec<Option<f64>> = values.iter().map(Value::as_f64).collect();
            let line = if terminal {
                let nums = values.iter().filter(|v| v.is_number());
                let pick = |better: fn(f64, f64) -> bool| {
                    nums.clone()
                        .filter_map(|v| Some((v.as_f64()?, v)))
                        .reduce(|a, b| if better(b.0, a.0) { b } else { a })
                        .map_or("-".to_string(), |(_, v)| number(v))
                };
                let last = values
                    .iter()
                    .rev()
                    .find(|v| v.is_number())
                    .map_or("-".to_string(), number);
                format!(
                    "{}  min {}  max {}  last {last}",
                    sparkline(&floats),
                    pick(|a, b| a < b),
                    pick(|a, b| a > b)
                )
            } else {
                values.iter().map(number).collect::<Vec<_>>().join(" ")
            };
            let _ = writeln!(out, "  {m:<width$}  {line}");
        }
        out
    }

    /// `{invariant, results (newest first), series: {at, run_id, outcome, measures}}`, the
    /// series' arrays oldest first and aligned (`null` where a measure is missing).
    pub fn json(&self, invariant: &str, newest_first: &[ResultEntry]) -> Value {
        let at: Vec<DateTime<Utc>> = self.points.iter().map(|r| r.started_at).collect();
        let measures: serde_json::Map<String, Value> = self
            .measures
            .iter()
            .map(|m| (m.clone(), Value::Array(self.values(m))))
            .collect();
        json!({
            "invariant": invariant,
            "results": newest_first,
            "series": {
                "at": at,
                "run_id": self.points.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
                "outcome": self.points.iter().map(|r| &r.outcome).collect::<Vec<_>>(),
                "measures": measures,
            },
        })
    }

    /// One row per result, oldest first: `started_at,run_id,suite,outcome,violations_total,
    /// reason`, then one column per measure (empty where it is missing).
    pub fn csv(&self) -> String {
        let mut out = String::from("started_at,run_id,suite,outcome,violations_total,reason");
        for m in &self.measures {
            out.push(',');
            out.push_str(&csv_field(m));
        }
        out.push('\n');
        let columns: Vec<Vec<Value>> = self.measures.iter().map(|m| self.values(m)).collect();
        for (i, r) in self.points.iter().enumerate() {
            let _ = write!(
                out,
                "{},{},{},{},{},{}",
                r.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                csv_field(&r.run_id),
                csv_field(&r.suite),
                csv_field(&r.outcome),
                r.violations_total,
                csv_field(r.reason.as_deref().unwrap_or(""))
            );
            for col in &columns {
                out.push(',');
                if let Some(v @ Value::Number(_)) = col.get(i) {
                    out.push_str(&number(v));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// RFC 4180: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sparkline_scales_min_to_max() {
        let v = |xs: &[f64]| xs.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        assert_eq!(sparkline(&v(&[0.0, 7.0, 1.0, 6.0])), "▁█▂▇");
        assert_eq!(sparkline(&v(&[10.0, 20.0, 30.0])), "▁▅█");
        assert_eq!(sparkline(&v(&[-5.0, 5.0])), "▁█");
    }

    #[test]
    fn sparkline_flat_missing_and_empty() {
        assert_eq!(sparkline(&[Some(3.0), Some(3.0), Some(3.0)]), "▄▄▄");
        assert_eq!(sparkline(&[Some(1.0), None, Some(2.0)]), "▁ █");
        assert_eq!(sparkline(&[Some(1.0), Some(f64::NAN), Some(2.0)]), "▁ █");
        assert_eq!(sparkline(&[None, None]), "  ");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[Some(4.0)]), "▄");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
