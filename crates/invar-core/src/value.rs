//! Typed values and tables: what every probe yields, whatever its source.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

/// One cell of a probe's table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Always UTC; zone-less source timestamps are taken as UTC.
    Timestamp(DateTime<Utc>),
    Date(NaiveDate),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The text a key is compared by: `7` and `"7"` are the same key.
    pub fn key_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    format!("{}", *f as i64)
                } else {
                    f.to_string()
                }
            }
            Value::Text(s) => s.clone(),
            Value::Timestamp(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            Value::Date(d) => d.to_string(),
            Value::List(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Reads a value as a point in time: a timestamp, a date, unix seconds, or RFC 3339 text.
    pub fn as_timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::Timestamp(t) => Some(*t),
            Value::Date(d) => d.and_hms_opt(0, 0, 0).map(|n| n.and_utc()),
            Value::Int(i) => DateTime::from_timestamp(*i, 0),
            Value::Float(f) => DateTime::from_timestamp_millis((*f * 1000.0) as i64),
            Value::Text(s) => parse_timestamp(s),
            _ => None,
        }
    }

    /// JSON for reports and stores. Timestamps become RFC 3339 strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => float_json(*f),
            Value::Text(s) => J::String(s.clone()),
            Value::Timestamp(_) | Value::Date(_) => J::String(self.key_text()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Parsed JSON becomes nested lists and maps; integers stay integers.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map(Value::Int)
                .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
            J::String(s) => Value::Text(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The CEL value conditions see. Numbers are doubles (so `missing / sample` works).
    pub fn to_cel(&self) -> cel::Value {
        match self {
            Value::Null => cel::Value::Null,
            Value::Bool(b) => cel::Value::Bool(*b),
            Value::Int(i) => cel::Value::Float(*i as f64),
            Value::Float(f) => cel::Value::Float(*f),
            Value::Text(s) => cel::Value::String(Arc::new(s.clone())),
            Value::Timestamp(t) => cel::Value::Timestamp(t.fixed_offset()),
            Value::Date(d) => {
                cel::Value::Timestamp(d.and_time(chrono::NaiveTime::MIN).and_utc().fixed_offset())
            }
            Value::List(l) => cel::Value::List(Arc::new(l.iter().map(Value::to_cel).collect())),
            Value::Map(m) => {
                let hm: HashMap<cel::objects::Key, cel::Value> = m
                    .iter()
                    .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), v.to_cel()))
                    .collect();
                cel::Value::Map(cel::objects::Map { map: Arc::new(hm) })
            }
        }
    }
}

/// A double as JSON. JSON has no NaN or infinities: they are the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (as JavaScript and Postgres write them), never `null`,
/// which would read as SQL NULL.
pub fn float_json(f: f64) -> serde_json::Value {
    use serde_json::Value as J;
    match serde_json::Number::from_f64(f) {
        Some(n) => J::Number(n),
        None if f.is_nan() => J::String("NaN".into()),
        None if f > 0.0 => J::String("Infinity".into()),
        None => J::String("-Infinity".into()),
    }
}

/// RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f]` / `YYYY-MM-DDTHH:MM:SS` without a zone (taken as UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// A probe's result: named columns and rows of values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: Vec<String>) -> Self {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// One row as a JSON object (for violations).
    pub fn row_json(&self, i: usize) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, v) in self.columns.iter().zip(&self.rows[i]) {
            m.insert(c.clone(), v.to_json());
        }
        serde_json::Value::Object(m)
    }

    /// One row as a CEL map.
    pub fn row_cel(&self, i: usize) -> cel::Value {
        let hm: HashMap<cel::objects::Key, cel::Value> = self
            .columns
            .iter()
            .zip(&self.rows[i])
            .map(|(c, v)| (cel::objects::Key::String(Arc::new(c.clone())), v.to_cel()))
            .collect();
        cel::Value::Map(cel::objects::Map { map: Arc::new(hm) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_makes_numbers_and_strings_equal() {
        assert_eq!(Value::Int(7).key_text(), Value::Text("7".into()).key_text());
        assert_eq!(Value::Float(7.0).key_text(), "7");
        assert_eq!(Value::Float(7.5).key_text(), "7.5");
    }

    #[test]
    fn nan_and_infinities_are_named_not_null() {
        assert_eq!(Value::Float(f64::NAN).to_json(), serde_json::json!("NaN"));
        assert_eq!(
            Value::Float(f64::INFINITY).to_json(),
            serde_json::json!("Infinity")
        );
        assert_eq!(
            Value::Float(f64::NEG_INFINITY).to_json(),
            serde_json::json!("-Infinity")
        );
        assert_eq!(Value::Float(1.5).to_json(), serde_json::json!(1.5));
    }

    #[test]
    fn timestamps_without_zone_are_utc() {
        let t = parse_timestamp("2026-03-01 10:00:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T10:00:00+00:00");
        let t = parse_timestamp("2026-03-01T10:00:00+09:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-01T01:00:00+00:00");
        assert_eq!(Value::Int(0).as_timestamp().unwrap().timestamp(), 0);
    }
}
