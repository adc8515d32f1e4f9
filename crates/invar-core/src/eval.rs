//! Verdicts: an invariant plus the snapshot it needs → an outcome with violations.
//!
//! Pure and deterministic: the same tables give the same verdict, whatever the row order
//! (set-check violations are sorted by key).

use crate::condition::Condition;
use crate::hist::{PastRun, Summary};
use crate::model::{
    Anomaly, Check, HistorySpec, Invariant, JoinCheck, JoinRelation, KeyedProbe, OnEmpty,
    PairCheck, Probe, ProbeCheck, Remembered, SubsetCheck, TransitionsCheck,
};
use crate::report::{Outcome, Verdict};
use crate::value::{Table, Value};
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// A probe's table, or why it could not be read (already redacted).
pub type ProbeResult = Result<Arc<Table>, String>;

/// All probes of one run, each read once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The run's start: `now` in conditions, the reference for `grace`.
    pub now: DateTime<Utc>,
    pub probes: HashMap<Probe, ProbeResult>,
    /// The result table of each `join` relation, computed by the engine from the probes.
    pub joins: HashMap<JoinRelation, ProbeResult>,
    /// Probes read only by set checks, read straight into their key sets (no table): the
    /// engine's choice for large sides. A probe absent here is read from `probes`.
    pub keyed: HashMap<Probe, KeyedResult>,
    /// The remembered states of each `transitions` invariant (by id) as of the previous runs.
    /// An invariant with no entry (or an empty one) has never been seen: its run is a baseline.
    pub remembered: HashMap<String, Vec<Remembered>>,
    /// The earlier runs each invariant with `history:` sees (by id), already cut to its
    /// window; an invariant with no entry has none.
    pub history: HashMap<String, Vec<PastRun>>,
    /// For each invariant whose every run for its `vacuous_after` was a vacuous pass: when it
    /// last examined anything (or first ran).
    pub vacuous_since: HashMap<String, DateTime<Utc>>,
}

impl Snapshot {
    pub fn new(now: DateTime<Utc>) -> Snapshot {
        Snapshot {
            now,
            probes: HashMap::new(),
            joins: HashMap::new(),
            keyed: HashMap::new(),
            remembered: HashMap::new(),
            history: HashMap::new(),
            vacuous_since: HashMap::new(),
        }
    }
    fn get(&self, p: &Probe) -> Result<&Arc<Table>, String> {
        match self.probes.get(p) {
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("probe ({}) was not read", p.describe())),
        }
    }
    /// Why `p` could not be read, if it was not (as a table or as key sets).
    fn read_error(&self, p: &Probe) -> Option<String> {
        match (self.probes.get(p), self.keyed.get(p)) {
            (Some(Ok(_)), _) | (None, Some(Ok(_))) => None,
            (Some(Err(e)), _) | (None, Some(Err(e))) => Some(e.clone()),
            (None, None) => Some(format!("probe ({}) was not read", p.describe())),
        }
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn now_cel(now: DateTime<Utc>) -> cel::Value {
    cel::Value::Timestamp(now.fixed_offset())
}

/// Decides the cost guard before probing. `facts` is the `source` map (`name`, `type`,
/// `size_bytes`…) of each source the invariant reads. Some(reason) means skip.
///
/// A source for which the guard holds skips the check even when the guard could not be
/// evaluated for another source (a postgres source has no `size_bytes`): the decision does not
/// depend on the order of the sources. Only when it holds for none is an evaluation error
/// returned.
pub fn skip_if_decision(
    cond: &Condition,
    facts: &[BTreeMap<String, Value>],
    now: DateTime<Utc>,
) -> Result<Option<String>, String> {
    let mut first_error = None;
    for f in facts {
        let mut ctx = crate::condition::context();
        ctx.add_variable_from_value("source", Value::Map(f.clone()).to_cel());
        ctx.add_variable_from_value("now", now_cel(now));
        let held = match cond.eval_bool(&ctx) {
            Ok(h) => h,
            Err(e) => {
                first_error.get_or_insert(e);
                false
            }
        };
        if held {
            let name = f.get("name").map(|v| v.key_text()).unwrap_or_default();
            let size = f
                .get("size_bytes")
                .and_then(|v| v.as_f64())
                .map(|s| format!(" (size_bytes = {})", s as u64))
                .unwrap_or_default();
            return Ok(Some(format!(
                "cost guard: `{}` held for source `{name}`{size}",
                cond.source
            )));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Evaluates one invariant over the snapshot. Never panics; an unreadable probe is `error`.
pub fn evaluate(inv: &Invariant, snap: &Snapshot) -> Verdict {
    evaluate_with_memory(inv, snap).0
}

/// [`evaluate`], plus — for a `transitions` invariant that was decided (not `error`) — the
/// states to remember from this run: every key seen now, with `seen_at` = the snapshot's
/// `now`. None: nothing to store (keep what is remembered untouched).
pub fn evaluate_with_memory(
    inv: &Invariant,
    snap: &Snapshot,
) -> (Verdict, Option<Vec<Remembered>>) {
    let mut errors = Vec::new();
    for p in inv.check.probes() {
        if let Some(e) = snap.read_error(p) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        return (Verdict::error(errors.join("; ")), None);
    }
    let v = match &inv.check {
        Check::Probe(pc) => {
            let summary = inv.history.as_ref().map(|h| {
                let past = snap.history.get(&inv.id).map(Vec::as_slice);
                (h, Summary::of(past.unwrap_or_default()))
            });
            eval_probe(pc, snap, summary.as_ref().map(|(h, s)| (*h, s)))
        }
        Check::Same(pair) => eval_pair(pair, snap, PairKind::Same),
        Check::Disjoint(pair) => eval_pair(pair, snap, PairKind::Disjoint),
        Check::Subset(sub) => eval_subset(sub, snap),
        Check::Join(jc) => eval_join(jc, snap),
        Check::Transitions(tc) => {
            let table = match snap.get(&tc.probe) {
                Ok(t) => t,
                Err(e) => return (Verdict::error(e), None),
            };
            let previous = snap
                .remembered
                .get(&inv.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            return match transitions_step(tc, previous, table, snap.now) {
                Ok((v, states)) => (v, Some(states)),
                Err(e) => (Verdict::error(e), None),
            };
        }
    };
    (persistently_vacuous(inv, snap, v), None)
}

/// A vacuous pass that has been one for the invariant's whole `vacuous_after` (the caller
/// says since when, in the snapshot) is a `warn`: a check that examines nothing for a week is
/// a hidden green.
fn persistently_vacuous(inv: &Invariant, snap: &Snapshot, v: Verdict) -> Verdict {
    match snap.vacuous_since.get(&inv.id) {
        Some(since) if v.vacuous && v.outcome == Outcome::Pass => {
            let reason = format!(
                "examined nothing since {} (a vacuous pass in every run since)",
                since.format("%Y-%m-%d %H:%M UTC")
            );
            v.into_outcome(Outcome::Warn).with_reason(reason)
        }
        _ => v,
    }
}

/// The key text of a `transitions` row: the column's text for one key column, a JSON array of
/// the texts for several (the arity is fixed per invariant, so the two never collide).
fn transition_key(texts: Vec<String>) -> String {
    match <[String; 1]>::try_from(texts) {
        Ok([one]) => one,
        Err(many) => serde_json::Value::from(many).to_string(),
    }
}

/// Decides one run of a `transitions` check from the states remembered by earlier runs, the
/// current rows and `now`; returns the verdict and the states to remember (every key seen now,
/// `seen_at = now`, in key order).
///
/// - a key seen for the first time (or whose memory is older than `remember`) is a baseline;
/// - a key whose state changed along an edge of `allowed` is fine, as is one that stayed put;
/// - any other change is a violation `{key, from, to}`;
/// - remembered keys not seen now are kept until `remember` has passed (not violations);
/// - with no live memory at all the run is a baseline pass (`measured.baseline = true`).
///
/// A key returned with several states is checked for each of them and remembered with the
/// first in text order, so the outcome never depends on the order of the rows. Rows with a
/// NULL key or state are ignored (counted in `null_rows_ignored`).
pub fn transitions_step(
    tc: &TransitionsCheck,
    previous: &[Remembered],
    table: &Table,
    now: DateTime<Utc>,
) -> Result<(Verdict, Vec<Remembered>), String> {
    let col = |name: &str| {
        table.column(name).ok_or_else(|| {
            format!(
                "column `{name}` is not in the result of {} (columns: {})",
                tc.probe.describe(),
                table.columns.join(", ")
            )
        })
    };
    let key_cols: Vec<usize> = tc.key.iter().map(|k| col(k)).collect::<Result<_, _>>()?;
    let state_col = col(&tc.state)?;
    let horizon = chrono::Duration::from_std(tc.remember).unwrap_or(chrono::Duration::MAX);
    let live: BTreeMap<&str, &Remembered> = previous
        .iter()
        .filter(|r| now.signed_duration_since(r.seen_at) <= horizon)
        .map(|r| (r.key.as_str(), r))
        .collect();
    let forgotten = previous.len() - live.len();
    let baseline = live.is_empty();

    // Key text → (key as JSON, every state seen now).
    let mut current: BTreeMap<String, (serde_json::Value, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    let mut null_rows = 0u64;
    for row in &table.rows {
        let st = cell(row, state_col);
        if st.is_null() || key_cols.iter().any(|&c| cell(row, c).is_null()) {
            null_rows += 1;
            continue;
        }
        let texts: Vec<String> = key_cols.iter().map(|&c| cell(row, c).key_text()).collect();
        let json = if key_cols.len() == 1 {
            cell(row, key_cols[0]).to_json()
        } else {
            let mut obj = serde_json::Map::new();
            for &c in &key_cols {
                obj.insert(table.columns[c].clone(), cell(row, c).to_json());
            }
            serde_json::Value::Object(obj)
        };
        let entry = current
            .entry(transition_key(texts))
            .or_insert_with(|| (json.clone(), Default::default()));
        keep_smaller(&mut entry.0, json);
        entry.1.insert(st.key_text());
    }

    let mut v = Verdict::new(Outcome::Pass);
    v.examined = current.len() as u64;
    let (mut new_keys, mut changed, mut illegal) = (0u64, 0u64, 0u64);
    let mut states = Vec::with_capacity(current.len());
    for (key, (json, seen)) in &current {
        match live.get(key.as_str()) {
            None => new_keys += 1,
            Some(prev) => {
                for to in seen {
                    if *to == prev.state {
                        continue;
                    }
                    if tc.allows(&prev.state, to) {
                        changed += 1;
                    } else {
                        illegal += 1;
                        v.push_violation(serde_json::json!({
                            "key": json,
                            "from": prev.state,
                            "to": to,
                        }));
                    }
                }
            }
        }
        let state = seen.iter().next().cloned().unwrap_or_default();
        states.push(Remembered {
            key: key.clone(),
            state,
            seen_at: now,
        });
    }
    v.measure("keys", current.len() as u64);
    v.measure("remembered", live.len() as u64);
    v.measure("new_keys", new_keys);
    v.measure("allowed_changes", changed);
    v.measure("illegal_changes", illegal);
    if forgotten > 0 {
        v.measure("forgotten", forgotten as u64);
    }
    if null_rows > 0 {
        v.measure("null_rows_ignored", null_rows);
    }
    if baseline {
        v.measure("baseline", true);
        v.reason = Some(format!(
            "baseline: {} {} remembered, nothing to compare yet",
            current.len(),
            plural(current.len() as u64, "key", "keys")
        ));
    } else if illegal > 0 {
        v.outcome = Outcome::Fail;
        v.reason = Some(format!(
            "{illegal} {} outside the allowed graph",
            plural(illegal, "state change", "state changes")
        ));
    } else if current.is_empty() {
        v.vacuous = true;
        v.reason = Some("vacuous: the probe returned no keys".into());
    }
    Ok((v, states))
}

/// The conditions of a row-deciding check (`probe` and `join` share them).
struct RowConditions<'a> {
    skip_when: Option<&'a Condition>,
    fail_when: Option<&'a Condition>,
    warn_when: Option<&'a Condition>,
    every_row: Option<&'a Condition>,
    on_empty: OnEmpty,
    /// The invariant's `history:` and what its window holds.
    hist: Option<(&'a HistorySpec, &'a Summary)>,
    anomaly: Option<&'a Anomaly>,
}

fn eval_probe(pc: &ProbeCheck, snap: &Snapshot, hist: Option<(&HistorySpec, &Summary)>) -> Verdict {
    let table = match snap.get(&pc.probe) {
        Ok(t) => t,
        Err(e) => return Verdict::error(e),
    };
    let conds = RowConditions {
        skip_when: pc.skip_when.as_ref(),
        fail_when: pc.fail_when.as_ref(),
        warn_when: pc.warn_when.as_ref(),
        every_row: pc.every_row.as_ref(),
        on_empty: pc.on_empty,
        hist,
        anomaly: pc.anomaly.as_ref(),
    };
    eval_rows(&conds, table, snap.now)
}

/// A join: its probes were readable (checked by `evaluate`); its result table is decided
/// exactly as a `probe` check's rows are.
fn eval_join(jc: &JoinCheck, snap: &Snapshot) -> Verdict {
    let table = match snap.joins.get(&jc.relation()) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return Verdict::error(format!("join: {e}")),
        None => return Verdict::error("join: the joined table was not computed"),
    };
    let conds = RowConditions {
        skip_when: jc.skip_when.as_ref(),
        fail_when: jc.fail_when.as_ref(),
        warn_when: jc.warn_when.as_ref(),
        every_row: jc.every_row.as_ref(),
        on_empty: jc.on_empty,
        hist: None,
        anomaly: None,
    };
    eval_rows(&conds, table, snap.now)
}

/// No rows: `on_empty: skip` and `fail` decide here (`true`); `pass` goes on with `v`.
fn on_empty(on_empty: OnEmpty, v: Verdict) -> (Verdict, bool) {
    match on_empty {
        OnEmpty::Skip => (
            Verdict {
                reason: Some("probe returned no rows (on_empty: skip)".into()),
                ..v.into_outcome(Outcome::Skip)
            },
            true,
        ),
        OnEmpty::Fail => {
            let mut v = v.into_outcome(Outcome::Fail);
            v.reason = Some("probe returned no rows (on_empty: fail)".into());
            v.push_violation(serde_json::json!({"empty": true}));
            (v, true)
        }
        OnEmpty::Pass => (v, false),
    }
}

/// A table-level condition that reads a NaN has no answer: the error naming the column, never
/// a pass.
fn nan_read(pc: &RowConditions<'_>, table: &Table) -> Option<String> {
    let count = table.len();
    [pc.skip_when, pc.fail_when, pc.warn_when]
        .into_iter()
        .flatten()
        .find_map(|c| {
            let rows = if c.reads_all_rows() {
                count
            } else {
                count.min(1)
            };
            c.nan_read(table, 0..rows).map(|(_, reason)| reason)
        })
}

fn eval_rows(pc: &RowConditions<'_>, table: &Table, now: DateTime<Utc>) -> Verdict {
    let count = table.len();
    let mut v = Verdict::new(Outcome::Pass);
    v.examined = count as u64;
    v.measure("count", count as u64);
    if count == 1 {
        for (c, val) in table.columns.iter().zip(&table.rows[0]) {
            v.measure(c, val.to_json());
        }
    }

    // Thin history: measured (so this run adds to the history) but never decided.
    if let Some((h, sum)) = pc.hist
        && sum.runs < h.min_runs as usize
    {
        return v
            .into_outcome(Outcome::Skip)
            .with_reason(format!("thin history: {} of {} runs", sum.runs, h.min_runs));
    }
    if count == 0 {
        let (after, decided) = on_empty(pc.on_empty, v);
        if decided {
            return after;
        }
        v = after;
    }

    let has_conditions = pc.fail_when.is_some()
        || pc.every_row.is_some()
        || pc.skip_when.is_some()
        || pc.warn_when.is_some()
        || pc.anomaly.is_some();
    let need_table_ctx = pc.skip_when.is_some() || pc.fail_when.is_some() || pc.warn_when.is_some();
    let mut ctx = crate::condition::context();
    ctx.add_variable_from_value("now", now_cel(now));
    if need_table_ctx {
        let rows: Vec<cel::Value> = (0..count).map(|i| table.row_cel(i)).collect();
        let row = rows
            .first()
            .cloned()
            .unwrap_or_else(|| Value::Map(BTreeMap::new()).to_cel());
        ctx.add_variable_from_value("rows", cel::Value::List(Arc::new(rows)));
        ctx.add_variable_from_value("row", row);
        ctx.add_variable_from_value("count", cel::Value::Float(count as f64));
        if let Some((_, sum)) = pc.hist {
            ctx.add_variable_from_value("hist", sum.to_cel());
        }
    }

    if let Some(reason) = nan_read(pc, table) {
        return Verdict {
            measured: v.measured,
            ..Verdict::error(reason)
        };
    }
    if let Some(c) = pc.skip_when {
        match c.eval_bool_over(&ctx, count == 0) {
            Ok(true) => {
                return v
                    .into_outcome(Outcome::Skip)
                    .with_reason(format!("skip_when held: `{}`", c.source));
            }
            Ok(false) => {}
            Err(e) => {
                return Verdict {
                    measured: v.measured,
                    ..Verdict::error(e)
                };
            }
        }
    }
    if let Some(c) = pc.fail_when {
        match c.eval_bool_over(&ctx, count == 0) {
            Ok(true) => {
                let mut v = v
                    .into_outcome(Outcome::Fail)
                    .with_reason(format!("fail_when held: `{}`", c.source));
                if count == 0 {
                    v.push_violation(serde_json::json!({"count": 0}));
                }
                for i in 0..count {
                    v.push_violation(table.row_json(i));
                }
                return v;
            }
            Ok(false) => {}
            Err(e) => {
                return Verdict {
                    measured: v.measured,
                    ..Verdict::error(e)
                };
            }
        }
    }
    if let Some(c) = pc.every_row {
        v = match every_row(c, table, &ctx, v) {
            ControlFlow::Continue(v) => v,
            ControlFlow::Break(decided) => return decided,
        };
    }
    if let (Some(a), Some((h, sum))) = (pc.anomaly, pc.hist) {
        v = match anomaly(a, h, sum, v) {
            ControlFlow::Continue(v) => v,
            ControlFlow::Break(decided) => return decided,
        };
    }
    if !has_conditions || (pc.fail_when.is_none() && pc.every_row.is_none() && pc.anomaly.is_none())
    {
        // Without `fail_when` or `every_row`, every returned row is a violation.
        if count > 0 {
            let mut v = v.into_outcome(Outcome::Fail).with_reason(format!(
                "{count} violating {} returned",
                plural(count as u64, "row", "rows")
            ));
            for i in 0..count {
                v.push_violation(table.row_json(i));
            }
            return v;
        }
    }
    if let Some(c) = pc.warn_when {
        match c.eval_bool_over(&ctx, count == 0) {
            Ok(true) => {
                return v
                    .into_outcome(Outcome::Warn)
                    .with_reason(format!("warn_when held: `{}`", c.source));
            }
            Ok(false) => {}
            Err(e) => {
                return Verdict {
                    measured: v.measured,
                    ..Verdict::error(e)
                };
            }
        }
    }
    // A condition-style check that looked at no rows proved nothing: say so.
    if count == 0 && (pc.fail_when.is_some() || pc.every_row.is_some()) {
        v.vacuous = true;
        v.reason = Some("vacuous: the probe returned no rows".into());
    }
    v
}

/// `every_row`: each row as `r`; the rows that break it are the violations. `Break` is the
/// decided verdict (a failure or an error), `Continue` the verdict to go on with.
fn every_row(
    c: &Condition,
    table: &Table,
    ctx: &cel::Context<'_, '_>,
    mut v: Verdict,
) -> ControlFlow<Verdict, Verdict> {
    let count = table.len();
    // Looked for once, before any row is evaluated.
    if let Some((row, reason)) = c.nan_read(table, 0..count) {
        return ControlFlow::Break(Verdict {
            measured: v.measured,
            ..Verdict::error(format!("row {}: {reason}", row + 1))
        });
    }
    let mut broken = Vec::new();
    for i in 0..count {
        let mut rctx = ctx.new_inner_scope();
        rctx.add_variable_from_value("r", table.row_cel(i));
        match c.eval_bool(&rctx) {
            Ok(true) => {}
            Ok(false) => broken.push(i),
            Err(e) => {
                return ControlFlow::Break(Verdict {
                    measured: v.measured,
                    ..Verdict::error(format!("row {}: {e}", i + 1))
                });
            }
        }
    }
    v.measure("rows_breaking", broken.len() as u64);
    if !broken.is_empty() {
        let mut v = v.into_outcome(Outcome::Fail).with_reason(format!(
            "{} of {count} {} `{}`",
            broken.len(),
            plural(count as u64, "row breaks", "rows break"),
            c.source
        ));
        for i in broken {
            v.push_violation(table.row_json(i));
        }
        return ControlFlow::Break(v);
    }
    ControlFlow::Continue(v)
}

/// `anomaly`: the run's value of the measure against the window's median and MAD. `Break`
/// is a decided fail (or error); a warn, or nothing, goes on as `Continue`.
fn anomaly(
    a: &Anomaly,
    h: &HistorySpec,
    sum: &Summary,
    mut v: Verdict,
) -> ControlFlow<Verdict, Verdict> {
    let Some(x) = v
        .measured
        .get(&a.measure)
        .and_then(serde_json::Value::as_f64)
    else {
        let known = v.measured.keys().cloned().collect::<Vec<_>>().join(", ");
        return ControlFlow::Break(Verdict {
            measured: v.measured,
            ..Verdict::error(format!(
                "anomaly: `{}` is not a number this run (measured: {known})",
                a.measure
            ))
        });
    };
    let Some(stats) = sum.measures.get(&a.measure) else {
        return ControlFlow::Break(Verdict {
            measured: v.measured,
            ..Verdict::error(format!(
                "anomaly: no earlier run measured `{}` as a number",
                a.measure
            ))
        });
    };
    let score = crate::hist::Score::of(x, stats);
    v.measure("anomaly_x", x);
    v.measure("anomaly_median", score.median);
    v.measure("anomaly_mad", score.mad);
    // ±∞ (a constant history that moved) is not JSON: shown as a string.
    v.measure(
        "anomaly_score",
        if score.z.is_finite() {
            serde_json::json!(score.z)
        } else {
            serde_json::json!(if score.z > 0.0 { "inf" } else { "-inf" })
        },
    );
    v.measure(
        "anomaly_window",
        format!(
            "{}, {} runs",
            crate::units::format_duration(h.window),
            stats.count
        ),
    );
    let says = |level: &str, t: f64| {
        format!(
            "anomaly: `{}` = {x} is {} from the median {} (MAD {}, robust z {}), past the {level} threshold {t}",
            a.measure,
            if x >= score.median { "up" } else { "down" },
            score.median,
            score.mad,
            if score.z.is_finite() {
                format!("{:.2}", score.z)
            } else {
                "∞ (the history is constant)".into()
            },
        )
    };
    if score.beyond(a, a.threshold) {
        let reason = says("fail", a.threshold);
        return ControlFlow::Break(v.into_outcome(Outcome::Fail).with_reason(reason));
    }
    if let Some(w) = a.warn_threshold
        && score.beyond(a, w)
    {
        let reason = says("warn", w);
        return ControlFlow::Break(v.into_outcome(Outcome::Warn).with_reason(reason));
    }
    ControlFlow::Continue(v)
}

impl Verdict {
    fn into_outcome(mut self, o: Outcome) -> Verdict {
        self.outcome = o;
        self
    }
}

pub use crate::keyset::{KeySet, KeySetBuilder, KeySpec, KeyedResult};
use crate::keyset::{cell, keep_smaller};

/// One side's key set: as read by the engine, or built from the probe's table.
fn key_set<'s>(snap: &'s Snapshot, kp: &KeyedProbe) -> Result<Cow<'s, KeySet>, String> {
    if let Some(Ok(sets)) = snap.keyed.get(&kp.probe)
        && let Some(set) = sets.get(&KeySpec::of(kp))
    {
        return set.as_ref().map(Cow::Borrowed).map_err(Clone::clone);
    }
    let t = snap.get(&kp.probe)?;
    KeySet::of(kp, t).map(Cow::Owned)
}

fn young(age: Option<DateTime<Utc>>, grace: Option<Duration>, now: DateTime<Utc>) -> bool {
    match (age, grace) {
        (Some(a), Some(g)) => now
            .signed_duration_since(a)
            .to_std()
            .map(|d| d < g)
            .unwrap_or(true),
        _ => false,
    }
}

#[derive(PartialEq)]
enum PairKind {
    Same,
    Disjoint,
}

fn eval_pair(pair: &PairCheck, snap: &Snapshot, kind: PairKind) -> Verdict {
    let (left, right) = match (key_set(snap, &pair.left), key_set(snap, &pair.right)) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return Verdict::error(e),
    };
    let mut v = Verdict::new(Outcome::Pass);
    v.examined = (left.len() + right.len()) as u64;
    v.measure("left_keys", left.len() as u64);
    v.measure("right_keys", right.len() as u64);
    if left.null_keys + right.null_keys > 0 {
        v.measure("null_keys_ignored", left.null_keys + right.null_keys);
    }
    let mut in_grace = 0u64;
    match kind {
        PairKind::Same => {
            let mut only_left = 0u64;
            let mut only_right = 0u64;
            for (e, _) in left.matched(&right, false) {
                if young(e.age, pair.grace, snap.now) {
                    in_grace += 1;
                } else {
                    only_left += 1;
                    v.push_violation(
                        serde_json::json!({"side": "only_left", "key": left.obj(e.at)}),
                    );
                }
            }
            for (e, _) in right.matched(&left, false) {
                if young(e.age, pair.grace, snap.now) {
                    in_grace += 1;
                } else {
                    only_right += 1;
                    v.push_violation(
                        serde_json::json!({"side": "only_right", "key": right.obj(e.at)}),
                    );
                }
            }
            v.measure("only_left", only_left);
            v.measure("only_right", only_right);
            if only_left + only_right > 0 {
                v.outcome = Outcome::Fail;
                v.reason = Some(format!(
                    "{only_left} {} only on the left, {only_right} only on the right",
                    plural(only_left, "key", "keys")
                ));
            }
        }
        PairKind::Disjoint => {
            let mut both = 0u64;
            for (e, other) in left.matched(&right, true) {
                let rage = other.and_then(|o| o.age);
                if young(e.age, pair.grace, snap.now) || young(rage, pair.grace, snap.now) {
                    in_grace += 1;
                } else {
                    both += 1;
                    v.push_violation(serde_json::json!({"key": left.obj(e.at)}));
                }
            }
            v.measure("in_both", both);
            if both > 0 {
                v.outcome = Outcome::Fail;
                v.reason = Some(format!(
                    "{both} {} on both sides",
                    plural(both, "key is", "keys are")
                ));
            }
        }
    }
    if pair.grace.is_some() {
        v.measure("within_grace", in_grace);
    }
    if v.outcome == Outcome::Pass && left.is_empty() && right.is_empty() {
        v.vacuous = true;
        v.reason = Some("vacuous: both sides are empty".into());
    }
    v
}

fn eval_subset(sub: &SubsetCheck, snap: &Snapshot) -> Verdict {
    let (each, within) = match (key_set(snap, &sub.each), key_set(snap, &sub.within)) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return Verdict::error(e),
    };
    let mut v = Verdict::new(Outcome::Pass);
    v.examined = each.len() as u64;
    v.measure("each_keys", each.len() as u64);
    v.measure("in_keys", within.len() as u64);
    let mut missing = 0u64;
    let mut in_grace = 0u64;
    for (e, _) in each.matched(&within, false) {
        if young(e.age, sub.grace, snap.now) {
            in_grace += 1;
        } else {
            missing += 1;
            v.push_violation(serde_json::json!({"missing": each.obj(e.at)}));
        }
    }
    v.measure("missing", missing);
    if sub.grace.is_some() {
        v.measure("within_grace", in_grace);
    }
    if missing > 0 {
        v.outcome = Outcome::Fail;
        v.reason = Some(format!(
            "{missing} of {} {} missing",
            each.len(),
            plural(each.len() as u64, "key is", "keys are")
        ));
    } else if each.is_empty() {
        v.vacuous = true;
        v.reason = Some("vacuous: no keys to check".into());
    }
    v
}

/// The verdict of a subset check pushed down into the database: `missing` holds the keys
/// of `each` not found `in` the other side, and column `__examined` the number of keys.
pub fn subset_from_pushdown(missing: &Table) -> Verdict {
    let ex_col = missing.column("__examined");
    let examined = ex_col
        .and_then(|c| {
            missing
                .rows
                .first()
                .map(|r| cell(r, c).as_f64().unwrap_or(0.0) as u64)
        })
        .unwrap_or(0);
    let mut v = Verdict::new(Outcome::Pass);
    let mut keys: BTreeMap<Vec<String>, serde_json::Value> = BTreeMap::new();
    for row in &missing.rows {
        if (0..missing.columns.len()).any(|i| Some(i) != ex_col && cell(row, i).is_null()) {
            continue; // the examined-count row of an empty anti-join
        }
        let mut obj = serde_json::Map::new();
        let mut text = Vec::new();
        for (i, c) in missing.columns.iter().enumerate() {
            if Some(i) != ex_col {
                obj.insert(c.clone(), cell(row, i).to_json());
                text.push(cell(row, i).key_text());
            }
        }
        let obj = serde_json::Value::Object(obj);
        match keys.entry(text) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(obj);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => keep_smaller(e.get_mut(), obj),
        }
    }
    // The keys examined are at least the keys found missing (were `__examined` lost).
    let examined = examined.max(keys.len() as u64);
    v.examined = examined;
    v.measure("each_keys", examined);
    v.measure("missing", keys.len() as u64);
    v.measure("pushed_down", true);
    let n = keys.len();
    for k in keys.into_values() {
        v.push_violation(serde_json::json!({"missing": k}));
    }
    if n > 0 {
        v.outcome = Outcome::Fail;
        v.reason = Some(format!(
            "{n} of {examined} {} missing",
            plural(examined, "key is", "keys are")
        ));
    } else if examined == 0 {
        v.vacuous = true;
        v.reason = Some("vacuous: no keys to check".into());
    }
    v
}

#[cfg(test)]
mod join_tests {
    use super::*;
    use crate::condition::Scope;
    use crate::model::Severity;

    fn inv(check: Check) -> Invariant {
        Invariant {
            id: "S-02".into(),
            title: "t".into(),
            severity: Severity::Critical,
            tags: vec![],
            runbook: None,
            owner: None,
            timeout: None,
            skip_if: None,
            fire_after: 1,
            resolve_after: 1,
            alerts: vec![],
            check,
            history: None,
            vacuous_after: None,
            defined_at: "x:1".into(),
        }
    }

    fn join(fail_when: Option<&str>) -> JoinCheck {
        JoinCheck {
            tables: vec![("t".into(), Probe::Values(vec!["a".into()]))],
            sql: "SELECT 1".into(),
            skip_when: None,
            fail_when: fail_when.map(|c| Condition::compile(c, Scope::Probe).unwrap()),
            warn_when: None,
            every_row: None,
            on_empty: OnEmpty::Pass,
        }
    }

    fn snap(jc: &JoinCheck, joined: ProbeResult) -> Snapshot {
        let mut s = Snapshot::new(Utc::now());
        s.probes.insert(
            jc.tables[0].1.clone(),
            Ok(Arc::new(Table::new(vec!["value".into()]))),
        );
        s.joins.insert(jc.relation(), joined);
        s
    }

    #[test]
    fn a_join_is_decided_like_a_probe() {
        let rows = Table {
            columns: vec!["name".into(), "used".into()],
            rows: vec![vec![Value::Text("a".into()), Value::Int(3)]],
        };
        // Default mode: every row is a violation.
        let jc = join(None);
        let v = evaluate(
            &inv(Check::Join(jc.clone())),
            &snap(&jc, Ok(Arc::new(rows.clone()))),
        );
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(
            v.violations,
            vec![serde_json::json!({"name": "a", "used": 3})]
        );
        // fail_when over the joined rows.
        let jc = join(Some("row.used > 5.0"));
        let v = evaluate(
            &inv(Check::Join(jc.clone())),
            &snap(&jc, Ok(Arc::new(rows))),
        );
        assert_eq!(v.outcome, Outcome::Pass);
        // The join's SQL failed: error with its reason.
        let v = evaluate(
            &inv(Check::Join(jc.clone())),
            &snap(&jc, Err("no such column".into())),
        );
        assert_eq!(v.outcome, Outcome::Error);
        assert!(v.reason.unwrap().contains("no such column"));
        // A table's probe unreadable: error naming it, before the join is looked at.
        let mut s = snap(&jc, Ok(Arc::new(Table::default())));
        s.probes.insert(
            jc.tables[0].1.clone(),
            Err("source `cache` is unavailable".into()),
        );
        let v = evaluate(&inv(Check::Join(jc)), &s);
        assert_eq!(v.outcome, Outcome::Error);
        assert!(v.reason.unwrap().contains("cache"));
    }
}

#[cfg(test)]
mod transitions_tests {
    use super::*;
    use proptest::prelude::*;

    fn check() -> TransitionsCheck {
        let mut allowed = BTreeMap::new();
        allowed.insert(
            "queued".to_string(),
            vec!["running".into(), "cancelled".into()],
        );
        allowed.insert(
            "running".to_string(),
            vec!["success".into(), "failed".into(), "cancelled".into()],
        );
        allowed.insert("success".to_string(), vec![]);
        TransitionsCheck {
            probe: Probe::Values(vec![]),
            key: vec!["id".into()],
            state: "status".into(),
            allowed,
            remember: Duration::from_secs(86_400),
        }
    }

    fn table(rows: &[(&str, &str)]) -> Table {
        Table {
            columns: vec!["id".into(), "status".into()],
            rows: rows
                .iter()
                .map(|(k, s)| vec![Value::Text(k.to_string()), Value::Text(s.to_string())])
                .collect(),
        }
    }

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_first_run_is_a_baseline_and_remembers_every_key() {
        let (v, states) = transitions_step(
            &check(),
            &[],
            &table(&[("1", "success"), ("2", "queued")]),
            t0(),
        )
        .unwrap();
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!(v.measured["baseline"], serde_json::json!(true));
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].key, "1");
        assert_eq!(states[0].state, "success");
        assert_eq!(states[0].seen_at, t0());
    }

    #[test]
    fn a_terminal_state_that_moves_is_a_violation_naming_key_from_and_to() {
        let c = check();
        let (_, prev) =
            transitions_step(&c, &[], &table(&[("1", "success"), ("2", "queued")]), t0()).unwrap();
        let later = t0() + chrono::Duration::minutes(5);
        let (v, states) = transitions_step(
            &c,
            &prev,
            &table(&[("1", "running"), ("2", "running")]),
            later,
        )
        .unwrap();
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(
            v.violations,
            vec![serde_json::json!({"key": "1", "from": "success", "to": "running"})]
        );
        assert_eq!(v.measured["allowed_changes"], serde_json::json!(1));
        assert!(!v.measured.contains_key("baseline"));
        assert!(states.iter().all(|s| s.seen_at == later));
    }

    #[test]
    fn allowed_changes_same_states_and_new_keys_pass() {
        let c = check();
        let (_, prev) = transitions_step(&c, &[], &table(&[("1", "queued")]), t0()).unwrap();
        let (v, _) = transitions_step(
            &c,
            &prev,
            &table(&[("1", "running"), ("9", "success")]),
            t0() + chrono::Duration::minutes(1),
        )
        .unwrap();
        assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.violations);
        assert_eq!(v.measured["new_keys"], serde_json::json!(1));
        // A state without an entry in `allowed` may not move either.
        let prev = vec![Remembered {
            key: "1".into(),
            state: "skipped".into(),
            seen_at: t0(),
        }];
        let (v, _) = transitions_step(&c, &prev, &table(&[("1", "queued")]), t0()).unwrap();
        assert_eq!(v.outcome, Outcome::Fail);
        let (v, _) = transitions_step(&c, &prev, &table(&[("1", "skipped")]), t0()).unwrap();
        assert_eq!(v.outcome, Outcome::Pass);
    }

    #[test]
    fn keys_unseen_for_longer_than_remember_are_forgotten() {
        let c = check();
        let prev = vec![Remembered {
            key: "1".into(),
            state: "success".into(),
            seen_at: t0(),
        }];
        let later = t0() + chrono::Duration::hours(25);
        let (v, states) = transitions_step(&c, &prev, &table(&[("1", "running")]), later).unwrap();
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!(v.measured["forgotten"], serde_json::json!(1));
        assert_eq!(v.measured["baseline"], serde_json::json!(true));
        assert_eq!(states[0].state, "running");
        // Missing keys are not violations.
        let (v, states) = transitions_step(&c, &prev, &table(&[]), t0()).unwrap();
        assert_eq!(v.outcome, Outcome::Pass);
        assert!(states.is_empty());
    }

    #[test]
    fn composite_keys_and_missing_columns() {
        let mut c = check();
        c.key = vec!["id".into(), "status".into()];
        c.state = "status".into();
        let (_, states) = transitions_step(&c, &[], &table(&[("a", "queued")]), t0()).unwrap();
        assert_eq!(states[0].key, r#"["a","queued"]"#);
        c.state = "nope".into();
        let e = transitions_step(&c, &[], &table(&[("a", "queued")]), t0()).unwrap_err();
        assert!(e.contains("`nope`"), "{e}");
    }

    #[test]
    fn evaluate_reads_the_memory_from_the_snapshot_and_errors_keep_it() {
        use crate::model::Severity;
        let c = check();
        let inv = Invariant {
            id: "E-02".into(),
            title: "t".into(),
            severity: Severity::Critical,
            tags: vec![],
            runbook: None,
            owner: None,
            timeout: None,
            skip_if: None,
            fire_after: 1,
            resolve_after: 1,
            alerts: vec![],
            check: Check::Transitions(c.clone()),
            history: None,
            vacuous_after: None,
            defined_at: "x:1".into(),
        };
        let mut s = Snapshot::new(t0());
        s.probes
            .insert(c.probe.clone(), Ok(Arc::new(table(&[("1", "running")]))));
        s.remembered.insert(
            "E-02".into(),
            vec![Remembered {
                key: "1".into(),
                state: "failed".into(),
                seen_at: t0(),
            }],
        );
        let (v, states) = evaluate_with_memory(&inv, &s);
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(states.unwrap().len(), 1);
        s.probes
            .insert(c.probe.clone(), Err("source `app` is unavailable".into()));
        let (v, states) = evaluate_with_memory(&inv, &s);
        assert_eq!(v.outcome, Outcome::Error);
        assert!(states.is_none());
    }

    proptest! {
        #[test]
        fn row_order_does_not_matter(
            rows in proptest::collection::vec((0u8..6, 0u8..5), 0..20),
            prev in proptest::collection::vec((0u8..6, 0u8..5), 0..8),
            seed in any::<u64>(),
        ) {
            const S: [&str; 5] = ["queued", "running", "success", "failed", "skipped"];
            let c = check();
            let previous: Vec<Remembered> = prev
                .iter()
                .map(|(k, s)| (k.to_string(), Remembered { key: k.to_string(), state: S[*s as usize].into(), seen_at: t0() }))
                .collect::<BTreeMap<_, _>>() // one state per key, as the store keeps it
                .into_values()
                .collect();
            let mut t = Table { columns: vec!["id".into(), "status".into()], rows: vec![] };
            for (k, s) in &rows {
                t.rows.push(vec![Value::Int(*k as i64), Value::Text(S[*s as usize].into())]);
            }
            let mut shuffled = t.clone();
            let n = shuffled.rows.len();
            let mut x = seed;
            for i in (1..n).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.rows.swap(i, (x >> 33) as usize % (i + 1));
            }
            let mut rev_prev = previous.clone();
            rev_prev.reverse();
            let a = transitions_step(&c, &previous, &t, t0()).unwrap();
            let b = transitions_step(&c, &rev_prev, &shuffled, t0()).unwrap();
            prop_assert_eq!(a.0.outcome, b.0.outcome);
            prop_assert_eq!(&a.0.violations, &b.0.violations);
            prop_assert_eq!(&a.0.measured, &b.0.measured);
            prop_assert_eq!(a.1, b.1);
        }
    }
}

#[cfg(test)]
mod keyset_tests {
    use super::*;

    fn kp(source: &str, key: &[&str], age: Option<&str>) -> KeyedProbe {
        KeyedProbe {
            probe: Probe::Sql {
                source: source.into(),
                sql: "SELECT".into(),
            },
            key: key.iter().map(|k| k.to_string()).collect(),
            age: age.map(str::to_string),
        }
    }

    fn ts(s: i64) -> Value {
        Value::Timestamp(DateTime::from_timestamp(s, 0).unwrap())
    }

    /// Reading a probe straight into key sets (in pieces, after a discarded first result)
    /// decides exactly as the table does.
    #[test]
    fn keyed_reads_decide_like_tables() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let left = kp("l", &["k", "n"], Some("at"));
        let right = kp("r", &["id", "n"], None);
        let lt = Table {
            columns: vec!["k".into(), "n".into(), "at".into()],
            rows: vec![
                vec![Value::Int(7), Value::Text("a".into()), ts(10)],
                vec![Value::Text("7".into()), Value::Text("a".into()), ts(20)],
                vec![Value::Float(8.0), Value::Text("b".into()), ts(999_999)],
                vec![
                    Value::Text("a\u{1f}b".into()),
                    Value::Text("c".into()),
                    ts(5),
                ],
                vec![Value::Null, Value::Text("x".into()), ts(5)],
                vec![Value::Bool(true), Value::Text("d".into()), Value::Null],
            ],
        };
        let rt = Table {
            columns: vec!["id".into(), "n".into()],
            rows: vec![
                vec![Value::Int(8), Value::Text("b".into())],
                vec![Value::Text("a".into()), Value::Text("b\u{1f}c".into())],
                vec![Value::Text("true".into()), Value::Text("d".into())],
            ],
        };
        let pair = PairCheck {
            left: left.clone(),
            right: right.clone(),
            grace: Some(Duration::from_secs(60)),
        };
        let mut by_table = Snapshot::new(now);
        by_table
            .probes
            .insert(left.probe.clone(), Ok(Arc::new(lt.clone())));
        by_table
            .probes
            .insert(right.probe.clone(), Ok(Arc::new(rt.clone())));

        let keyed = |kp: &KeyedProbe, t: &Table| {
            let mut b = KeySetBuilder::new(kp);
            b.begin(&["junk".to_string()]);
            b.push(&[Value::Text("dropped".into())]);
            b.begin(&t.columns);
            for row in &t.rows {
                b.push(row);
            }
            let sets = HashMap::from([(KeySpec::of(kp), b.finish())]);
            Ok(Arc::new(sets))
        };
        let mut by_keys = Snapshot::new(now);
        by_keys.keyed.insert(left.probe.clone(), keyed(&left, &lt));
        by_keys
            .keyed
            .insert(right.probe.clone(), keyed(&right, &rt));

        for kind in [PairKind::Same, PairKind::Disjoint] {
            let same = kind == PairKind::Same;
            let a = eval_pair(&pair, &by_table, kind);
            let kind = if same {
                PairKind::Same
            } else {
                PairKind::Disjoint
            };
            let b = eval_pair(&pair, &by_keys, kind);
            assert_eq!(a, b);
        }
        let v = eval_pair(&pair, &by_keys, PairKind::Same);
        // `7` and `"7"` are one key, shown in its smaller form; NULL keys are counted apart.
        assert_eq!(
            serde_json::Value::Array(v.violations.clone()),
            serde_json::json!([
                {"side": "only_left", "key": {"k": "7", "n": "a"}},
                {"side": "only_left", "key": {"k": "a\u{1f}b", "n": "c"}},
                {"side": "only_right", "key": {"id": "a", "n": "b\u{1f}c"}},
            ])
        );
        assert_eq!(v.measured["null_keys_ignored"], serde_json::json!(1));
        assert_eq!(v.measured["within_grace"], serde_json::json!(0));

        // A key column missing from the result is the same error either way.
        let bad = kp("l", &["nope"], None);
        let pair = PairCheck {
            left: bad.clone(),
            right,
            grace: None,
        };
        by_keys.keyed.insert(bad.probe.clone(), keyed(&bad, &lt));
        assert_eq!(
            eval_pair(&pair, &by_table, PairKind::Same),
            eval_pair(&pair, &by_keys, PairKind::Same)
        );
    }
}
