//! The keys of one side of a set check (`same`, `subset`, `disjoint`), compact and compared
//! by one merge: what the engine reads large sides into, and what the evaluator compares.

use crate::model::{KeyedProbe, Probe};
use crate::value::{Table, Value};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// What a set check reads of one side's probe: its key columns (empty: every column, or
/// `value` for a `values` probe) and its age column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub key: Vec<String>,
    pub age: Option<String>,
}

impl KeySpec {
    pub fn of(kp: &KeyedProbe) -> KeySpec {
        KeySpec {
            key: kp.key.clone(),
            age: kp.age.clone(),
        }
    }
}

/// The key sets read from one probe (one per distinct [`KeySpec`] of the checks reading it),
/// each, or why its columns do not fit; or why the probe could not be read.
pub type KeyedResult = Result<Arc<HashMap<KeySpec, Result<KeySet, String>>>, String>;

/// The keys of one side of a set check, compact: no table, no per-key allocation.
///
/// Keys are compared by the text of each column, kept apart (never joined into one string, so
/// `("a\u{1f}b", "c")` and `("a", "b\u{1f}c")` stay different keys); `7`, `"7"` and `7.0` are
/// the same key. Each distinct key keeps the form shown in violations (of several forms, the
/// smallest JSON, whatever the row order) and its newest `age`.
///
/// Layout: every key's components are appended to `bytes` (per component: a type tag, for a
/// float its bits, the text's length as u32 and the text); `entries` holds one entry per
/// distinct key, sorted by the hash of its texts, so two sets are compared by one merge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySet {
    names: Vec<String>,
    bytes: Vec<u8>,
    entries: Vec<KeyEntry>,
    pub(crate) null_keys: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KeyEntry {
    hash: u64,
    /// Offset of the key's shown form in `bytes`.
    pub(crate) at: usize,
    pub(crate) age: Option<DateTime<Utc>>,
}

const TAG_TEXT: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_BOOL: u8 = 3;
const TAG_STAMP: u8 = 4;
const TAG_JSON: u8 = 5;

/// One component of a stored key.
struct Component<'a> {
    tag: u8,
    float: f64,
    text: &'a str,
}

impl KeySet {
    /// The key set of a whole table (what the engine builds while reading, for a table read
    /// whole).
    pub fn of(kp: &KeyedProbe, t: &Table) -> Result<KeySet, String> {
        let mut b = KeySetBuilder::new(kp);
        b.begin(&t.columns);
        for row in &t.rows {
            b.push(row);
        }
        b.finish()
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rows whose key had a NULL component (ignored).
    pub fn null_keys(&self) -> u64 {
        self.null_keys
    }

    fn components(&self, at: usize) -> impl Iterator<Item = Component<'_>> + '_ {
        let mut pos = at;
        (0..self.names.len()).map(move |_| {
            let tag = self.bytes[pos];
            pos += 1;
            let mut float = 0.0;
            if tag == TAG_FLOAT {
                let bits: [u8; 8] = std::array::from_fn(|i| self.bytes[pos + i]);
                float = f64::from_bits(u64::from_le_bytes(bits));
                pos += 8;
            }
            let len: [u8; 4] = std::array::from_fn(|i| self.bytes[pos + i]);
            let len = u32::from_le_bytes(len) as usize;
            pos += 4;
            // Written from `&str`s only, so always UTF-8.
            let text = std::str::from_utf8(&self.bytes[pos..pos + len]).unwrap_or_default();
            pos += len;
            Component { tag, float, text }
        })
    }

    /// The key texts at `at`, for ordering violations.
    fn texts(&self, at: usize) -> Vec<&str> {
        self.components(at).map(|c| c.text).collect()
    }

    /// The text bytes of each component of the key at `at`.
    fn raw(&self, at: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let mut pos = at;
        (0..self.names.len()).map(move |_| {
            let (text, next) = self.component_at(pos);
            pos = next;
            text
        })
    }

    /// The text of the component stored at `pos`, and where the next one starts.
    fn component_at(&self, pos: usize) -> (&[u8], usize) {
        let tag = self.bytes[pos];
        let pos = pos + 1 + if tag == TAG_FLOAT { 8 } else { 0 };
        let len = u32::from_le_bytes(std::array::from_fn(|i| self.bytes[pos + i]));
        let start = pos + 4;
        let end = start + len as usize;
        (&self.bytes[start..end], end)
    }

    /// Where the key stored at `at` ends.
    fn key_end(&self, at: usize) -> usize {
        (0..self.names.len()).fold(at, |pos, _| self.component_at(pos).1)
    }

    /// Whether the key at `a` here and the key at `b` in `other` are the same key.
    fn same_key(&self, a: usize, other: &KeySet, b: usize) -> bool {
        self.raw(a).eq(other.raw(b))
    }

    /// Whether the key at `a` and the one at `b` are stored in the same form (same JSON).
    fn same_form(&self, a: usize, b: usize) -> bool {
        self.components(a).zip(self.components(b)).all(|(x, y)| {
            x.tag == y.tag && x.text == y.text && x.float.to_bits() == y.float.to_bits()
        })
    }

    /// The key at `at` as a JSON object of its key columns (as [`Value::to_json`] gives).
    pub(crate) fn obj(&self, at: usize) -> serde_json::Value {
        use serde_json::Value as J;
        let mut obj = serde_json::Map::new();
        for (name, c) in self.names.iter().zip(self.components(at)) {
            let v = match c.tag {
                TAG_INT => c.text.parse::<i64>().map(J::from).unwrap_or(J::Null),
                TAG_FLOAT => crate::value::float_json(c.float),
                TAG_BOOL => J::Bool(c.text == "true"),
                TAG_JSON => serde_json::from_str(c.text).unwrap_or(J::Null),
                _ => J::String(c.text.to_string()),
            };
            obj.insert(name.clone(), v);
        }
        J::Object(obj)
    }

    /// The entries of `self` that have (`wanted`) or have not a match in `other`, each with
    /// its match, in key order (only these few are sorted, never the whole set).
    pub(crate) fn matched<'s, 'o>(
        &'s self,
        other: &'o KeySet,
        wanted: bool,
    ) -> Vec<(&'s KeyEntry, Option<&'o KeyEntry>)> {
        let mut out = Vec::new();
        let mut j = 0;
        for e in &self.entries {
            while j < other.entries.len() && other.entries[j].hash < e.hash {
                j += 1;
            }
            let found = other.entries[j..]
                .iter()
                .take_while(|o| o.hash == e.hash)
                .find(|o| self.same_key(e.at, other, o.at));
            if found.is_some() == wanted {
                out.push((e, found));
            }
        }
        out.sort_unstable_by(|a, b| self.texts(a.0.at).cmp(&self.texts(b.0.at)));
        out
    }
}

/// Builds a [`KeySet`] row by row, so a probe's rows can be turned into keys as they are
/// read (the table is never held whole).
#[derive(Debug, Clone)]
pub struct KeySetBuilder {
    kp: KeyedProbe,
    /// Key columns and age column in the current result, or why they do not fit.
    cols: Result<(Vec<usize>, Option<usize>), String>,
    set: KeySet,
    text: String,
}

impl KeySetBuilder {
    pub fn new(kp: &KeyedProbe) -> KeySetBuilder {
        KeySetBuilder {
            kp: kp.clone(),
            cols: Err(format!("probe ({}) was not read", kp.probe.describe())),
            set: KeySet::default(),
            text: String::new(),
        }
    }

    /// A result with these columns starts; keys pushed before are dropped.
    pub fn begin(&mut self, columns: &[String]) {
        self.set = KeySet::default();
        self.cols = key_columns(&self.kp, columns).and_then(|cols| {
            let age = match &self.kp.age {
                Some(a) => Some(columns.iter().position(|c| c == a).ok_or_else(|| {
                    format!(
                        "age column `{a}` is not in the result of {} (columns: {})",
                        self.kp.probe.describe(),
                        columns.join(", ")
                    )
                })?),
                None => None,
            };
            Ok((cols, age))
        });
        if let Ok((cols, _)) = &self.cols {
            self.set.names = cols.iter().map(|&c| columns[c].clone()).collect();
        }
    }

    pub fn push(&mut self, row: &[Value]) {
        use std::fmt::Write;
        use std::hash::Hasher;
        let Ok((cols, age_col)) = &self.cols else {
            return;
        };
        if cols.iter().any(|&c| cell(row, c).is_null()) {
            self.set.null_keys += 1;
            return;
        }
        let at = self.set.bytes.len();
        let mut h = std::hash::DefaultHasher::new();
        for &c in cols {
            let v = cell(row, c);
            self.text.clear();
            let (tag, text): (u8, &str) = match v {
                Value::Text(s) => (TAG_TEXT, s),
                Value::Int(i) => {
                    let _ = write!(self.text, "{i}");
                    (TAG_INT, &self.text)
                }
                other => {
                    self.text = other.key_text();
                    let tag = match other {
                        Value::Float(_) => TAG_FLOAT,
                        Value::Bool(_) => TAG_BOOL,
                        Value::List(_) | Value::Map(_) => TAG_JSON,
                        _ => TAG_STAMP,
                    };
                    (tag, &self.text)
                }
            };
            let bytes = &mut self.set.bytes;
            bytes.push(tag);
            if let Value::Float(f) = v {
                bytes.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            h.write(text.as_bytes());
            // Never in UTF-8: ends each component, so ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0xff);
        }
        let age = age_col.and_then(|c| cell(row, c).as_timestamp());
        self.set.entries.push(KeyEntry {
            hash: h.finish(),
            at,
            age,
        });
    }

    /// The set: one entry per distinct key (the smallest JSON form shown, the newest age).
    pub fn finish(self) -> Result<KeySet, String> {
        self.cols?;
        let mut set = self.set;
        set.entries.sort_unstable_by_key(|e| e.hash);
        let mut w = 0;
        let mut r = 0;
        let n = set.entries.len();
        let mut run: Vec<KeyEntry> = Vec::new();
        while r < n {
            let hash = set.entries[r].hash;
            let end = r + set.entries[r..]
                .iter()
                .take_while(|e| e.hash == hash)
                .count();
            if end == r + 1 {
                set.entries[w] = set.entries[r];
                w += 1;
            } else {
                // The same key more than once (or a hash shared by different keys).
                run.clear();
                run.extend_from_slice(&set.entries[r..end]);
                while let Some(first) = run.pop() {
                    let mut keep = first;
                    let mut shown: Option<String> = None;
                    let mut i = 0;
                    while i < run.len() {
                        let e = run[i];
                        if !set.same_key(keep.at, &set, e.at) {
                            i += 1;
                            continue;
                        }
                        run.swap_remove(i);
                        keep.age = match (keep.age, e.age) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (a, b) => a.or(b),
                        };
                        if !set.same_form(keep.at, e.at) {
                            // `7` and `"7"`: show the smaller JSON, whatever the order.
                            let current = shown.get_or_insert_with(|| set.obj(keep.at).to_string());
                            let candidate = set.obj(e.at).to_string();
                            if candidate < *current {
                                keep.at = e.at;
                                *current = candidate;
                            }
                        }
                    }
                    set.entries[w] = keep;
                    w += 1;
                }
            }
            r = end;
        }
        set.entries.truncate(w);
        // The keys' bytes in entry (hash) order, so comparing two sets reads both in order
        // (and duplicates' bytes are gone).
        let mut bytes = Vec::with_capacity(set.bytes.len());
        for i in 0..set.entries.len() {
            let from = set.entries[i].at;
            let end = set.key_end(from);
            set.entries[i].at = bytes.len();
            bytes.extend_from_slice(&set.bytes[from..end]);
        }
        set.bytes = bytes;
        Ok(set)
    }
}

static NULL: Value = Value::Null;

/// A row's cell; a row shorter than the header reads as NULL there.
pub(crate) fn cell(row: &[Value], c: usize) -> &Value {
    row.get(c).unwrap_or(&NULL)
}

/// Of two JSON forms of one key (`7` and `"7"` are the same key), the one shown: the smaller
/// serialization, so the violation does not depend on which row came first.
pub(crate) fn keep_smaller(current: &mut serde_json::Value, candidate: serde_json::Value) {
    if *current == candidate {
        return;
    }
    let (new, old) = (candidate.to_string(), current.to_string());
    if new < old {
        *current = candidate;
    }
}

pub(crate) fn key_columns(kp: &KeyedProbe, columns: &[String]) -> Result<Vec<usize>, String> {
    let names: Vec<String> = if !kp.key.is_empty() {
        kp.key.clone()
    } else if matches!(kp.probe, Probe::Values(_)) {
        vec!["value".into()]
    } else {
        columns.to_vec()
    };
    names
        .iter()
        .map(|n| {
            columns.iter().position(|c| c == n).ok_or_else(|| {
                format!(
                    "key column `{n}` is not in the result of {} (columns: {})",
                    kp.probe.describe(),
                    columns.join(", ")
                )
            })
        })
        .collect()
}
