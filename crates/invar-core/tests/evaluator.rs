//! The pure evaluator: every check kind over hand-built snapshots, then properties — the
//! verdict does not depend on row order, nothing panics on any table, keys compare by text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, Duration as Span, NaiveDate, TimeZone, Utc};
use invar_core::eval::subset_from_pushdown;
use invar_core::{
    Check, Condition, Invariant, KeyedProbe, OnEmpty, Outcome, PairCheck, Probe, ProbeCheck, Scope,
    Severity, Snapshot, SubsetCheck, Table, Value, Verdict, evaluate, skip_if_decision,
};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Builders

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn sql(q: &str) -> Probe {
    Probe::Sql {
        source: "app".into(),
        sql: q.into(),
    }
}

fn values(v: &[&str]) -> Probe {
    Probe::Values(v.iter().map(|s| s.to_string()).collect())
}

fn i(n: i64) -> Value {
    Value::Int(n)
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn ts(x: DateTime<Utc>) -> Value {
    Value::Timestamp(x)
}

fn table(cols: &[&str], rows: Vec<Vec<Value>>) -> Table {
    Table {
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

/// The table a `values` probe yields.
fn values_table(v: &[&str]) -> Table {
    table(&["value"], v.iter().map(|s| vec![t(s)]).collect())
}

fn snap(entries: Vec<(Probe, Table)>) -> Snapshot {
    let mut s = Snapshot::new(now());
    for (p, tb) in entries {
        s.probes.insert(p, Ok(Arc::new(tb)));
    }
    s
}

fn cond(src: &str, scope: Scope) -> Condition {
    Condition::compile(src, scope).unwrap_or_else(|e| panic!("`{src}` does not compile: {e:?}"))
}

fn inv(check: Check) -> Invariant {
    Invariant {
        id: "T-1".into(),
        title: "test".into(),
        severity: Severity::Major,
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
        defined_at: "invar.yaml:1".into(),
    }
}

fn pc(probe: Probe) -> ProbeCheck {
    ProbeCheck {
        probe,
        skip_when: None,
        fail_when: None,
        warn_when: None,
        every_row: None,
        on_empty: OnEmpty::Pass,
        anomaly: None,
    }
}

fn when(src: &str) -> Option<Condition> {
    Some(cond(src, Scope::Probe))
}

fn each(src: &str) -> Option<Condition> {
    Some(cond(src, Scope::EveryRow))
}

fn keyed(probe: Probe, key: &[&str], age: Option<&str>) -> KeyedProbe {
    KeyedProbe {
        probe,
        key: key.iter().map(|k| k.to_string()).collect(),
        age: age.map(str::to_string),
    }
}

fn pair(left: KeyedProbe, right: KeyedProbe, grace: Option<Duration>) -> PairCheck {
    PairCheck { left, right, grace }
}

fn run_probe(check: ProbeCheck, tb: Table) -> Verdict {
    let s = snap(vec![(check.probe.clone(), tb)]);
    evaluate(&inv(Check::Probe(check)), &s)
}

fn reason(v: &Verdict) -> &str {
    v.reason.as_deref().unwrap_or("")
}

fn measured(v: &Verdict, key: &str) -> serde_json::Value {
    v.measured
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("`{key}` not measured in {:?}", v.measured))
}

/// A three-row table of ids and statuses.
fn three_rows() -> Table {
    table(
        &["id", "status"],
        vec![
            vec![i(1), t("paid")],
            vec![i(2), t("lost")],
            vec![i(3), t("paid")],
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// probe: default mode

#[test]
fn default_mode_every_row_is_a_violation() {
    let v = run_probe(pc(sql("SELECT bad")), three_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.examined, 3);
    assert_eq!(v.violations_total, 3);
    assert!(!v.vacuous);
    assert_eq!(
        v.violations,
        vec![
            json!({"id": 1, "status": "paid"}),
            json!({"id": 2, "status": "lost"}),
            json!({"id": 3, "status": "paid"}),
        ]
    );
    assert_eq!(reason(&v), "3 violating rows returned");
    assert_eq!(measured(&v, "count"), json!(3));
}

#[test]
fn default_mode_one_row_is_singular_and_measured() {
    let v = run_probe(
        pc(sql("SELECT bad")),
        table(&["id", "n"], vec![vec![i(9), Value::Float(2.5)]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(reason(&v), "1 violating row returned");
    assert_eq!(v.violations, vec![json!({"id": 9, "n": 2.5})]);
    assert_eq!(measured(&v, "id"), json!(9));
    assert_eq!(measured(&v, "n"), json!(2.5));
}

#[test]
fn default_mode_no_rows_is_a_real_pass_not_vacuous() {
    let v = run_probe(pc(sql("SELECT bad")), table(&["id"], vec![]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(v.examined, 0);
    assert_eq!(v.violations_total, 0);
    assert_eq!(v.reason, None);
    assert_eq!(measured(&v, "count"), json!(0));
}

#[test]
fn default_mode_with_only_skip_when_still_fails_on_rows() {
    let mut c = pc(sql("SELECT bad"));
    c.skip_when = when("count > 10.0");
    let v = run_probe(c, three_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 3);
}

#[test]
fn default_mode_with_warn_when_fails_on_rows_and_warns_on_none() {
    let mut c = pc(sql("SELECT bad"));
    c.warn_when = when("count == 0.0");
    let v = run_probe(c.clone(), three_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 3);
    let v = run_probe(c, table(&["id"], vec![]));
    assert_eq!(v.outcome, Outcome::Warn);
    assert_eq!(reason(&v), "warn_when held: `count == 0.0`");
    assert_eq!(v.violations_total, 0);
}

// ---------------------------------------------------------------------------------------------
// probe: skip_when, fail_when, warn_when

fn ordered(skip: bool, fail: bool, warn: bool) -> ProbeCheck {
    let b = |x: bool| if x { "count == 3.0" } else { "count == 4.0" };
    let mut c = pc(sql("SELECT * FROM t"));
    c.skip_when = when(b(skip));
    c.fail_when = when(&format!("{} && rows.size() > 0", b(fail)));
    c.warn_when = when(&format!("{} && row.id == 1.0", b(warn)));
    c
}

#[test]
fn skip_when_wins_over_fail_when_and_warn_when() {
    let v = run_probe(ordered(true, true, true), three_rows());
    assert_eq!(v.outcome, Outcome::Skip);
    assert_eq!(reason(&v), "skip_when held: `count == 3.0`");
    assert_eq!(v.violations_total, 0);
    assert!(v.violations.is_empty());
}

#[test]
fn fail_when_wins_over_warn_when_and_lists_the_rows() {
    let v = run_probe(ordered(false, true, true), three_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        reason(&v),
        "fail_when held: `count == 3.0 && rows.size() > 0`"
    );
    assert_eq!(v.violations_total, 3);
    assert_eq!(v.violations[1], json!({"id": 2, "status": "lost"}));
}

#[test]
fn warn_when_applies_when_fail_when_does_not_hold() {
    let v = run_probe(ordered(false, false, true), three_rows());
    assert_eq!(v.outcome, Outcome::Warn);
    assert_eq!(
        reason(&v),
        "warn_when held: `count == 3.0 && row.id == 1.0`"
    );
    assert_eq!(v.violations_total, 0);
}

#[test]
fn nothing_holds_is_a_pass_over_the_rows() {
    let v = run_probe(ordered(false, false, false), three_rows());
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(v.examined, 3);
    assert_eq!(v.reason, None);
}

#[test]
fn numbers_from_probes_are_doubles() {
    // Integer division would make 5 / 100 zero; as doubles it is 0.05.
    let mut c = pc(sql("SELECT sample, missing"));
    c.fail_when = when("row.missing / row.sample > 0.01");
    c.warn_when = when("row.missing > 0");
    let v = run_probe(
        c.clone(),
        table(&["sample", "missing"], vec![vec![i(100), i(5)]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"sample": 100, "missing": 5})]);
    let v = run_probe(
        c.clone(),
        table(&["sample", "missing"], vec![vec![i(1000), i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Warn);
    let v = run_probe(c, table(&["sample", "missing"], vec![vec![i(1000), i(0)]]));
    assert_eq!(v.outcome, Outcome::Pass);
}

#[test]
fn the_spec_example_with_int_literals_works() {
    // LANGUAGE.md: `skip_when: row.sample < 100` compares a double with an int literal.
    let mut c = pc(sql("SELECT sample, missing"));
    c.skip_when = when("row.sample < 100");
    c.fail_when = when("row.missing / row.sample > 0.01");
    let v = run_probe(
        c.clone(),
        table(&["sample", "missing"], vec![vec![i(50), i(50)]]),
    );
    assert_eq!(v.outcome, Outcome::Skip);
    let v = run_probe(c, table(&["sample", "missing"], vec![vec![i(500), i(50)]]));
    assert_eq!(v.outcome, Outcome::Fail);
}

#[test]
fn rows_row_and_count_are_bound() {
    let mut c = pc(sql("SELECT id, status"));
    c.fail_when = when(
        "count == 3.0 && rows.size() == 3 && row.id == 1.0 && \
         rows.exists(x, x.status == 'lost') && rows[2].id == 3.0",
    );
    let v = run_probe(c, three_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 3);
}

#[test]
fn row_is_an_empty_map_when_there_are_no_rows() {
    let mut c = pc(sql("SELECT id"));
    c.fail_when = when("size(row) != 0 || count != 0.0 || rows.size() != 0");
    let v = run_probe(c, table(&["id"], vec![]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
}

#[test]
fn now_and_timestamps_make_a_freshness_check() {
    let mut c = pc(sql("SELECT max(updated_at) AS ts"));
    c.fail_when = when("now - row.ts > duration('1h')");
    let stale = run_probe(
        c.clone(),
        table(&["ts"], vec![vec![ts(now() - Span::hours(2))]]),
    );
    assert_eq!(stale.outcome, Outcome::Fail);
    assert_eq!(
        stale.violations,
        vec![json!({"ts": "2026-03-01T10:00:00Z"})]
    );
    let fresh = run_probe(c, table(&["ts"], vec![vec![ts(now() - Span::minutes(30))]]));
    assert_eq!(fresh.outcome, Outcome::Pass);

    let mut c = pc(sql("SELECT id, ts"));
    c.every_row = each("now - r.ts < duration('1h')");
    let v = run_probe(
        c,
        table(
            &["id", "ts"],
            vec![
                vec![i(1), ts(now() - Span::minutes(5))],
                vec![i(2), ts(now() - Span::hours(3))],
            ],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![json!({"id": 2, "ts": "2026-03-01T09:00:00Z"})]
    );
}

#[test]
fn dates_are_timestamps_at_midnight() {
    let mut c = pc(sql("SELECT d"));
    c.fail_when = when("row.d < timestamp('2026-01-01T00:00:00Z')");
    let d = |y, m, dd| Value::Date(NaiveDate::from_ymd_opt(y, m, dd).unwrap());
    assert_eq!(
        run_probe(c.clone(), table(&["d"], vec![vec![d(2025, 12, 31)]])).outcome,
        Outcome::Fail
    );
    assert_eq!(
        run_probe(c, table(&["d"], vec![vec![d(2026, 1, 1)]])).outcome,
        Outcome::Pass
    );
}

// ---------------------------------------------------------------------------------------------
// probe: every_row

fn http_rows() -> Table {
    table(
        &["path", "status", "latency_ms"],
        vec![
            vec![t("/a"), i(200), i(12)],
            vec![t("/b"), i(500), i(15)],
            vec![t("/c"), i(200), i(2500)],
            vec![t("/d"), i(200), i(40)],
        ],
    )
}

#[test]
fn every_row_violations_are_the_breaking_rows() {
    let mut c = pc(sql("SELECT http"));
    c.every_row = each("r.status == 200 && r.latency_ms < 2000");
    let v = run_probe(c, http_rows());
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.examined, 4);
    assert_eq!(v.violations_total, 2);
    assert_eq!(
        v.violations,
        vec![
            json!({"path": "/b", "status": 500, "latency_ms": 15}),
            json!({"path": "/c", "status": 200, "latency_ms": 2500}),
        ]
    );
    assert_eq!(
        reason(&v),
        "2 of 4 rows break `r.status == 200 && r.latency_ms < 2000`"
    );
    assert_eq!(measured(&v, "rows_breaking"), json!(2));
}

#[test]
fn every_row_all_holding_is_a_pass_not_vacuous() {
    let mut c = pc(sql("SELECT http"));
    c.every_row = each("r.latency_ms < 5000");
    let v = run_probe(c, http_rows());
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(v.examined, 4);
    assert_eq!(v.violations_total, 0);
    assert_eq!(measured(&v, "rows_breaking"), json!(0));
}

#[test]
fn every_row_single_row_reason_is_singular() {
    let mut c = pc(sql("SELECT ttl"));
    c.every_row = each("r.ttl > 0.0");
    let v = run_probe(c, table(&["key", "ttl"], vec![vec![t("slot:1"), i(-1)]]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(reason(&v), "1 of 1 row breaks `r.ttl > 0.0`");
}

#[test]
fn every_row_then_warn_when() {
    let mut c = pc(sql("SELECT http"));
    c.every_row = each("r.status < 600");
    c.warn_when = when("rows.exists(x, x.latency_ms > 1000.0)");
    let v = run_probe(c, http_rows());
    assert_eq!(v.outcome, Outcome::Warn);
    assert_eq!(v.violations_total, 0);
}

// ---------------------------------------------------------------------------------------------
// probe: on_empty

#[test]
fn on_empty_pass_with_fail_when_is_vacuous() {
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("count > 0.0");
    let v = run_probe(c, table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
    assert_eq!(v.examined, 0);
    assert_eq!(reason(&v), "vacuous: the probe returned no rows");
}

#[test]
fn a_first_row_condition_over_no_rows_is_a_vacuous_pass_not_an_error() {
    // `row` is `{}` without rows: `row.ratio` has nothing to hold of.
    let mut c = pc(sql("SELECT ratio"));
    c.skip_when = when("row.sample < 100.0");
    c.fail_when = when("row.ratio > 0.005");
    c.warn_when = when("row.ratio > 0.001");
    let v = run_probe(c.clone(), table(&["ratio"], vec![]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
    assert_eq!(reason(&v), "vacuous: the probe returned no rows");
    // With a row, a missing field is still an error.
    let v = run_probe(c, table(&["ratio"], vec![vec![i(1)]]));
    assert_eq!(v.outcome, Outcome::Error, "{:?}", v.reason);
    // A condition over `rows` that fails is an error even without rows.
    let mut c = pc(sql("SELECT ratio"));
    c.fail_when = when("rows[0].ratio > 0.005");
    let v = run_probe(c, table(&["ratio"], vec![]));
    assert_eq!(v.outcome, Outcome::Error);
}

#[test]
fn on_empty_pass_with_every_row_is_vacuous() {
    let mut c = pc(sql("SELECT x"));
    c.every_row = each("r.x > 0.0");
    let v = run_probe(c, table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
}

#[test]
fn on_empty_skip() {
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("count > 0.0");
    c.on_empty = OnEmpty::Skip;
    let v = run_probe(c.clone(), table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Skip);
    assert_eq!(reason(&v), "probe returned no rows (on_empty: skip)");
    assert!(!v.vacuous);
    // With rows, on_empty does nothing.
    let v = run_probe(c, table(&["x"], vec![vec![i(1)]]));
    assert_eq!(v.outcome, Outcome::Fail);
}

#[test]
fn on_empty_fail() {
    let mut c = pc(sql("SELECT x"));
    c.every_row = each("r.x > 0.0");
    c.on_empty = OnEmpty::Fail;
    let v = run_probe(c.clone(), table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(reason(&v), "probe returned no rows (on_empty: fail)");
    assert_eq!(v.violations_total, 1);
    assert_eq!(v.violations, vec![json!({"empty": true})]);
    let v = run_probe(c, table(&["x"], vec![vec![i(1)]]));
    assert_eq!(v.outcome, Outcome::Pass);
}

#[test]
fn on_empty_fail_applies_in_default_mode_too() {
    let mut c = pc(sql("SELECT x"));
    c.on_empty = OnEmpty::Fail;
    let v = run_probe(c, table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 1);
}

#[test]
fn fail_when_holding_on_an_empty_table_records_the_count() {
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("count == 0.0");
    let v = run_probe(c, table(&["x"], vec![]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"count": 0})]);
    assert!(!v.vacuous);
}

// ---------------------------------------------------------------------------------------------
// probe: runtime errors are `error`, never pass

#[test]
fn a_missing_field_is_an_error_not_a_pass() {
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("row.nope > 1.0");
    let v = run_probe(c, table(&["x"], vec![vec![i(1)]]));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(reason(&v).contains("row.nope > 1.0"), "{}", reason(&v));
    assert!(reason(&v).contains("nope"), "{}", reason(&v));
    assert_eq!(v.violations_total, 0);
    assert_eq!(measured(&v, "count"), json!(1));
}

#[test]
fn division_by_null_is_an_error() {
    let mut c = pc(sql("SELECT missing, sample"));
    c.fail_when = when("row.missing / row.sample > 0.01");
    let v = run_probe(
        c,
        table(&["missing", "sample"], vec![vec![i(1), Value::Null]]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        reason(&v).starts_with("condition `row.missing / row.sample > 0.01` failed"),
        "{}",
        reason(&v)
    );
}

#[test]
fn errors_in_skip_when_and_warn_when_are_errors() {
    let mut c = pc(sql("SELECT x"));
    c.skip_when = when("row.x > 'a'");
    assert_eq!(
        run_probe(c, table(&["x"], vec![vec![i(1)]])).outcome,
        Outcome::Error
    );
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("false");
    c.warn_when = when("row.y > 0.0");
    assert_eq!(
        run_probe(c, table(&["x"], vec![vec![i(1)]])).outcome,
        Outcome::Error
    );
}

#[test]
fn every_row_error_names_the_row() {
    let mut c = pc(sql("SELECT x"));
    c.every_row = each("r.x > 1.0");
    let v = run_probe(
        c,
        table(&["x"], vec![vec![i(5)], vec![Value::Null], vec![i(0)]]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(reason(&v).starts_with("row 2: "), "{}", reason(&v));
    assert_eq!(v.violations_total, 0);
}

#[test]
fn a_non_bool_condition_is_an_error() {
    let mut c = pc(sql("SELECT x"));
    c.fail_when = when("row.x");
    let v = run_probe(c, table(&["x"], vec![vec![i(5)]]));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(reason(&v).contains("expected a bool"), "{}", reason(&v));
}

#[test]
fn an_unreadable_probe_is_an_error_with_its_message() {
    let p = sql("SELECT x");
    let mut s = Snapshot::new(now());
    s.probes
        .insert(p.clone(), Err("connection refused (app)".into()));
    let mut c = pc(p);
    c.fail_when = when("count > 1.0");
    let v = evaluate(&inv(Check::Probe(c)), &s);
    assert_eq!(v.outcome, Outcome::Error);
    assert_eq!(reason(&v), "connection refused (app)");
}

#[test]
fn a_probe_missing_from_the_snapshot_is_an_error() {
    let v = evaluate(
        &inv(Check::Probe(pc(sql("SELECT x")))),
        &Snapshot::new(now()),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert_eq!(reason(&v), "probe (sql on `app`) was not read");
}

#[test]
fn one_unreadable_side_of_a_set_check_is_an_error() {
    let l = sql("SELECT a");
    let r = sql("SELECT b");
    let mut s = snap(vec![(l.clone(), table(&["a"], vec![vec![i(1)]]))]);
    s.probes.insert(r.clone(), Err("timeout after 30s".into()));
    let check = Check::Same(pair(
        keyed(l.clone(), &["a"], None),
        keyed(r, &["b"], None),
        None,
    ));
    let v = evaluate(&inv(check), &s);
    assert_eq!(v.outcome, Outcome::Error);
    assert_eq!(reason(&v), "timeout after 30s");
    // The same unreadable probe on both sides is reported once.
    s.probes.insert(l.clone(), Err("down".into()));
    let check = Check::Disjoint(pair(keyed(l.clone(), &[], None), keyed(l, &[], None), None));
    assert_eq!(reason(&evaluate(&inv(check), &s)), "down");
}

// ---------------------------------------------------------------------------------------------
// same

fn run_pair(kind: fn(PairCheck) -> Check, p: PairCheck, l: Table, r: Table) -> Verdict {
    let s = snap(vec![(p.left.probe.clone(), l), (p.right.probe.clone(), r)]);
    evaluate(&inv(kind(p)), &s)
}

fn lr(key_l: &[&str], key_r: &[&str], grace: Option<Duration>) -> PairCheck {
    pair(
        keyed(sql("SELECT left"), key_l, None),
        keyed(sql("SELECT right"), key_r, None),
        grace,
    )
}

#[test]
fn same_compares_single_keys_as_text() {
    let v = run_pair(
        Check::Same,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![vec![i(7)], vec![i(1)], vec![i(2)]]),
        table(
            &["id"],
            vec![vec![t("2")], vec![t("7")], vec![Value::Float(1.0)]],
        ),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(v.examined, 6);
    assert_eq!(measured(&v, "left_keys"), json!(3));
    assert_eq!(measured(&v, "right_keys"), json!(3));
    assert_eq!(measured(&v, "only_left"), json!(0));
    assert_eq!(measured(&v, "only_right"), json!(0));
    assert!(!v.measured.contains_key("within_grace"));
}

#[test]
fn same_lists_keys_only_on_one_side() {
    let v = run_pair(
        Check::Same,
        lr(&["id"], &["eid"], None),
        table(&["id", "x"], vec![vec![i(1), i(0)], vec![i(3), i(0)]]),
        table(&["eid"], vec![vec![t("1")], vec![t("9")], vec![t("5")]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 3);
    assert_eq!(
        v.violations,
        vec![
            json!({"side": "only_left", "key": {"id": 3}}),
            json!({"side": "only_right", "key": {"eid": "5"}}),
            json!({"side": "only_right", "key": {"eid": "9"}}),
        ]
    );
    assert_eq!(reason(&v), "1 key only on the left, 2 only on the right");
    assert_eq!(measured(&v, "only_left"), json!(1));
    assert_eq!(measured(&v, "only_right"), json!(2));
}

#[test]
fn same_compares_composite_keys_by_position() {
    let v = run_pair(
        Check::Same,
        lr(&["agent", "member"], &["agent_name", "id"], None),
        table(
            &["agent", "member", "score"],
            vec![
                vec![t("a"), t("7"), i(0)],
                vec![t("a"), t("8"), i(0)],
                vec![t("b"), t("1"), i(0)],
            ],
        ),
        table(
            &["id", "agent_name"],
            vec![vec![i(7), t("a")], vec![i(8), t("a")], vec![i(1), t("c")]],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![
            json!({"side": "only_left", "key": {"agent": "b", "member": "1"}}),
            json!({"side": "only_right", "key": {"agent_name": "c", "id": 1}}),
        ]
    );
    assert_eq!(measured(&v, "left_keys"), json!(3));
}

#[test]
fn regression_composite_keys_do_not_collide_on_the_separator() {
    // ("a\u{1f}b", "c") and ("a", "b\u{1f}c") are different keys.
    let v = run_pair(
        Check::Same,
        lr(&["x", "y"], &["x", "y"], None),
        table(&["x", "y"], vec![vec![t("a\u{1f}b"), t("c")]]),
        table(&["x", "y"], vec![vec![t("a"), t("b\u{1f}c")]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations_total, 2);
}

#[test]
fn same_ignores_null_keys() {
    let v = run_pair(
        Check::Same,
        lr(&["a", "b"], &["a", "b"], None),
        table(
            &["a", "b"],
            vec![
                vec![i(1), i(1)],
                vec![i(2), Value::Null],
                vec![Value::Null, Value::Null],
            ],
        ),
        table(&["a", "b"], vec![vec![i(1), i(1)], vec![Value::Null, i(5)]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.examined, 2);
    assert_eq!(measured(&v, "null_keys_ignored"), json!(3));
}

#[test]
fn same_with_both_sides_empty_is_vacuous() {
    let v = run_pair(
        Check::Same,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![]),
        table(&["id"], vec![vec![Value::Null]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
    assert_eq!(reason(&v), "vacuous: both sides are empty");
}

#[test]
fn same_duplicate_keys_count_once() {
    let v = run_pair(
        Check::Same,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![vec![i(1)], vec![i(1)], vec![t("1")]]),
        table(&["id"], vec![vec![i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.examined, 2);
    assert_eq!(measured(&v, "left_keys"), json!(1));
}

#[test]
fn same_without_key_uses_every_column() {
    let p = pair(
        keyed(sql("SELECT l"), &[], None),
        keyed(sql("SELECT r"), &[], None),
        None,
    );
    let v = run_pair(
        Check::Same,
        p,
        table(&["a", "b"], vec![vec![i(1), i(2)], vec![i(1), i(3)]]),
        table(&["a", "b"], vec![vec![i(1), i(2)]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![json!({"side": "only_left", "key": {"a": 1, "b": 3}})]
    );
}

#[test]
fn same_grace_by_timestamp_age() {
    let p = pair(
        keyed(sql("SELECT slots"), &["id"], Some("score")),
        keyed(sql("SELECT running"), &["id"], Some("started_at")),
        Some(Duration::from_secs(3)),
    );
    let v = run_pair(
        Check::Same,
        p,
        table(
            &["id", "score"],
            vec![
                vec![i(1), ts(now() - Span::hours(1))],
                vec![i(2), ts(now() - Span::seconds(1))], // young: not yet a mismatch
                vec![i(3), ts(now() - Span::seconds(10))], // old: a mismatch
            ],
        ),
        table(
            &["id", "started_at"],
            vec![
                vec![i(1), ts(now() - Span::hours(1))],
                vec![i(4), ts(now() - Span::milliseconds(2500))], // young
                vec![i(5), ts(now() - Span::seconds(4))],         // old
            ],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![
            json!({"side": "only_left", "key": {"id": 3}}),
            json!({"side": "only_right", "key": {"id": 5}}),
        ]
    );
    assert_eq!(measured(&v, "within_grace"), json!(2));
    assert_eq!(measured(&v, "only_left"), json!(1));
    assert_eq!(measured(&v, "only_right"), json!(1));
}

#[test]
fn same_grace_by_unix_seconds() {
    let secs = now().timestamp();
    let p = pair(
        keyed(sql("SELECT slots"), &["agent", "member"], Some("score")),
        keyed(sql("SELECT running"), &["agent_name", "id"], None),
        Some(Duration::from_secs(60)),
    );
    let v = run_pair(
        Check::Same,
        p.clone(),
        table(
            &["agent", "member", "score"],
            vec![
                vec![t("a"), t("1"), i(secs - 30)],
                vec![t("a"), t("2"), Value::Float((secs - 5) as f64 + 0.25)],
                vec![t("b"), t("3"), i(secs - 3600)],
                vec![t("b"), t("4"), Value::Float(secs as f64 - 61.5)],
            ],
        ),
        table(&["agent_name", "id"], vec![]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![
            json!({"side": "only_left", "key": {"agent": "b", "member": "3"}}),
            json!({"side": "only_left", "key": {"agent": "b", "member": "4"}}),
        ]
    );
    assert_eq!(measured(&v, "within_grace"), json!(2));
    assert_eq!(reason(&v), "2 keys only on the left, 0 only on the right");
}

#[test]
fn same_grace_all_young_passes_and_measures() {
    let p = pair(
        keyed(sql("SELECT l"), &["id"], Some("ts")),
        keyed(sql("SELECT r"), &["id"], None),
        Some(Duration::from_secs(60)),
    );
    let v = run_pair(
        Check::Same,
        p,
        table(&["id", "ts"], vec![vec![i(1), ts(now())]]),
        table(&["id"], vec![]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(measured(&v, "within_grace"), json!(1));
}

#[test]
fn same_missing_key_column_is_an_error_naming_it() {
    let v = run_pair(
        Check::Same,
        lr(&["agent"], &["agent"], None),
        table(&["agent"], vec![vec![t("a")]]),
        table(&["name", "id"], vec![vec![t("a"), i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert_eq!(
        reason(&v),
        "key column `agent` is not in the result of sql on `app` (columns: name, id)"
    );
}

#[test]
fn a_missing_age_column_is_an_error_naming_it() {
    let p = pair(
        keyed(sql("SELECT l"), &["id"], Some("score")),
        keyed(sql("SELECT r"), &["id"], None),
        Some(Duration::from_secs(1)),
    );
    let v = run_pair(
        Check::Same,
        p,
        table(&["id"], vec![vec![i(1)]]),
        table(&["id"], vec![vec![i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(reason(&v).contains("age column `score`"), "{}", reason(&v));
}

// ---------------------------------------------------------------------------------------------
// subset

fn sub(each: KeyedProbe, within: KeyedProbe, grace: Option<Duration>) -> SubsetCheck {
    SubsetCheck {
        each,
        within,
        grace,
    }
}

fn run_subset(s: SubsetCheck, e: Table, w: Table) -> Verdict {
    let sn = snap(vec![(s.each.probe.clone(), e), (s.within.probe.clone(), w)]);
    evaluate(&inv(Check::Subset(s)), &sn)
}

#[test]
fn subset_lists_missing_keys() {
    let v = run_subset(
        sub(
            keyed(
                sql("SELECT agent_name FROM agent_sharing"),
                &["agent_name"],
                None,
            ),
            keyed(sql("SELECT name FROM agents"), &["name"], None),
            None,
        ),
        table(
            &["agent_name"],
            vec![
                vec![i(1)],
                vec![i(2)],
                vec![i(3)],
                vec![i(4)],
                vec![i(3)],
                vec![Value::Null],
            ],
        ),
        table(&["name"], vec![vec![t("2")], vec![t("4")], vec![t("9")]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.examined, 4);
    assert_eq!(v.violations_total, 2);
    assert_eq!(
        v.violations,
        vec![
            json!({"missing": {"agent_name": 1}}),
            json!({"missing": {"agent_name": 3}}),
        ]
    );
    assert_eq!(reason(&v), "2 of 4 keys are missing");
    assert_eq!(measured(&v, "missing"), json!(2));
    assert_eq!(measured(&v, "each_keys"), json!(4));
    assert_eq!(measured(&v, "in_keys"), json!(3));
}

#[test]
fn subset_all_found_passes() {
    let v = run_subset(
        sub(
            keyed(sql("SELECT e"), &["k"], None),
            keyed(sql("SELECT i"), &["k"], None),
            None,
        ),
        table(&["k"], vec![vec![i(1)], vec![i(2)]]),
        table(&["k"], vec![vec![i(2)], vec![i(1)], vec![i(3)]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(v.examined, 2);
}

#[test]
fn subset_is_vacuous_when_each_is_empty() {
    let v = run_subset(
        sub(
            keyed(sql("SELECT e"), &["k"], None),
            keyed(sql("SELECT i"), &["k"], None),
            None,
        ),
        table(&["k"], vec![]),
        table(&["k"], vec![vec![i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
    assert_eq!(v.examined, 0);
    assert_eq!(reason(&v), "vacuous: no keys to check");
}

#[test]
fn subset_values_probe_keys_on_value_by_default() {
    let e = values(&["049_provenance.sql", "075_amendment_diff.sql"]);
    let v = run_subset(
        sub(
            keyed(e, &[], None),
            keyed(sql("SELECT manifest"), &["value"], None),
            None,
        ),
        values_table(&["049_provenance.sql", "075_amendment_diff.sql"]),
        table(
            &["line_no", "value"],
            vec![
                vec![i(1), t("001_init.sql")],
                vec![i(2), t("049_provenance.sql")],
            ],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![json!({"missing": {"value": "075_amendment_diff.sql"}})]
    );
    assert_eq!(reason(&v), "1 of 2 keys are missing");
}

#[test]
fn subset_grace_spares_young_keys() {
    let v = run_subset(
        sub(
            keyed(sql("SELECT e"), &["k"], Some("created")),
            keyed(sql("SELECT i"), &["k"], None),
            Some(Duration::from_secs(300)),
        ),
        table(
            &["k", "created"],
            vec![
                vec![i(1), ts(now() - Span::seconds(10))],
                vec![i(2), ts(now() - Span::hours(1))],
                vec![i(3), ts(now() - Span::hours(1))],
            ],
        ),
        table(&["k"], vec![vec![i(3)]]),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"missing": {"k": 2}})]);
    assert_eq!(measured(&v, "within_grace"), json!(1));
}

#[test]
fn subset_missing_key_column_is_an_error_naming_it() {
    let v = run_subset(
        sub(
            keyed(sql("SELECT e"), &["k"], None),
            keyed(sql("SELECT i"), &["name"], None),
            None,
        ),
        table(&["k"], vec![vec![i(1)]]),
        table(&["k"], vec![vec![i(1)]]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(reason(&v).contains("key column `name`"), "{}", reason(&v));
}

// ---------------------------------------------------------------------------------------------
// disjoint

#[test]
fn disjoint_lists_keys_on_both_sides() {
    let v = run_pair(
        Check::Disjoint,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![vec![i(1)], vec![i(2)], vec![i(3)]]),
        table(
            &["id"],
            vec![vec![t("3")], vec![t("4")], vec![Value::Float(1.0)]],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![json!({"key": {"id": 1}}), json!({"key": {"id": 3}})]
    );
    assert_eq!(reason(&v), "2 keys are on both sides");
    assert_eq!(measured(&v, "in_both"), json!(2));
    assert_eq!(v.examined, 6);
}

#[test]
fn disjoint_single_reason_and_pass() {
    let v = run_pair(
        Check::Disjoint,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![vec![i(1)]]),
        table(&["id"], vec![vec![i(1)]]),
    );
    assert_eq!(reason(&v), "1 key is on both sides");
    let v = run_pair(
        Check::Disjoint,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![vec![i(1)]]),
        table(&["id"], vec![vec![i(2)], vec![Value::Null]]),
    );
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(!v.vacuous);
    assert_eq!(measured(&v, "in_both"), json!(0));
    assert_eq!(measured(&v, "null_keys_ignored"), json!(1));
    let v = run_pair(
        Check::Disjoint,
        lr(&["id"], &["id"], None),
        table(&["id"], vec![]),
        table(&["id"], vec![]),
    );
    assert!(v.vacuous);
}

#[test]
fn disjoint_grace_on_either_side() {
    let p = pair(
        keyed(sql("SELECT l"), &["id"], Some("ts")),
        keyed(sql("SELECT r"), &["id"], Some("ts")),
        Some(Duration::from_secs(60)),
    );
    let old = ts(now() - Span::hours(2));
    let young = ts(now() - Span::seconds(2));
    let v = run_pair(
        Check::Disjoint,
        p,
        table(
            &["id", "ts"],
            vec![
                vec![i(1), old.clone()],
                vec![i(2), young.clone()],
                vec![i(3), old.clone()],
            ],
        ),
        table(
            &["id", "ts"],
            vec![vec![i(1), young], vec![i(2), old.clone()], vec![i(3), old]],
        ),
    );
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"key": {"id": 3}})]);
    assert_eq!(measured(&v, "within_grace"), json!(2));
}

#[test]
fn disjoint_missing_key_column_is_an_error() {
    let v = run_pair(
        Check::Disjoint,
        lr(&["id"], &["id"], None),
        table(&["idx"], vec![]),
        table(&["id"], vec![]),
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert_eq!(
        reason(&v),
        "key column `id` is not in the result of sql on `app` (columns: idx)"
    );
}

// ---------------------------------------------------------------------------------------------
// subset pushed down

#[test]
fn pushdown_missing_rows_are_violations() {
    let v = subset_from_pushdown(&table(
        &["agent_name", "__examined"],
        vec![
            vec![t("b"), i(10)],
            vec![t("a"), i(10)],
            vec![t("b"), i(10)],
        ],
    ));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.examined, 10);
    assert_eq!(v.violations_total, 2);
    assert_eq!(
        v.violations,
        vec![
            json!({"missing": {"agent_name": "a"}}),
            json!({"missing": {"agent_name": "b"}}),
        ]
    );
    assert_eq!(reason(&v), "2 of 10 keys are missing");
    assert_eq!(measured(&v, "pushed_down"), json!(true));
    assert_eq!(measured(&v, "missing"), json!(2));
}

#[test]
fn pushdown_empty_anti_join_passes() {
    let v = subset_from_pushdown(&table(
        &["k1", "k2", "__examined"],
        vec![vec![Value::Null, Value::Null, i(5)]],
    ));
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.examined, 5);
    assert!(!v.vacuous);
    assert_eq!(v.violations_total, 0);
    let v = subset_from_pushdown(&table(&["k1", "__examined"], vec![vec![Value::Null, i(0)]]));
    assert_eq!(v.outcome, Outcome::Pass);
    assert!(v.vacuous);
    assert_eq!(reason(&v), "vacuous: no keys to check");
}

#[test]
fn pushdown_composite_keys() {
    let v = subset_from_pushdown(&table(
        &["a", "b", "__examined"],
        vec![vec![t("x"), i(1), i(1)]],
    ));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"missing": {"a": "x", "b": 1}})]);
    assert_eq!(reason(&v), "1 of 1 key is missing");
}

// ---------------------------------------------------------------------------------------------
// cost guard

fn facts(name: &str, kind: &str, size: Value) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("name".to_string(), t(name)),
        ("type".to_string(), t(kind)),
        ("size_bytes".to_string(), size),
    ])
}

#[test]
fn skip_if_size_guard_skips_the_big_source_and_names_it() {
    let c = cond("source.size_bytes > 5GB", Scope::SkipIf);
    let big = facts("big", "sqlite", i(6_000_000_000));
    let small = facts("small", "sqlite", i(1_000));
    assert_eq!(
        skip_if_decision(&c, std::slice::from_ref(&small), now()),
        Ok(None)
    );
    let r = skip_if_decision(&c, &[small.clone(), big.clone()], now())
        .unwrap()
        .expect("skips");
    assert_eq!(
        r,
        "cost guard: `source.size_bytes > 5GB` held for source `big` (size_bytes = 6000000000)"
    );
    assert!(!r.contains("small"));
    let r = skip_if_decision(&c, &[big], now()).unwrap().expect("skips");
    assert!(r.contains("`big`"));
    assert_eq!(skip_if_decision(&c, &[], now()), Ok(None));
}

#[test]
fn skip_if_over_name_and_type() {
    let c = cond(
        "source.type == 'sqlite' && source.name != 'x'",
        Scope::SkipIf,
    );
    let r = skip_if_decision(&c, &[facts("local", "sqlite", Value::Null)], now()).unwrap();
    assert_eq!(
        r.as_deref(),
        Some("cost guard: `source.type == 'sqlite' && source.name != 'x'` held for source `local`")
    );
    assert_eq!(
        skip_if_decision(&c, &[facts("app", "postgres", Value::Null)], now()),
        Ok(None)
    );
}

#[test]
fn skip_if_error_is_an_error() {
    let c = cond("source.size_bytes > 5GB", Scope::SkipIf);
    let r = skip_if_decision(&c, &[facts("app", "postgres", Value::Null)], now());
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn regression_skip_if_a_holding_source_wins_over_one_without_the_fact() {
    // A postgres source has no size: `null > 5GB` fails there. The sqlite one is too big either
    // way, so the check is skipped — in whichever order the sources come.
    let c = cond("source.size_bytes > 5GB", Scope::SkipIf);
    let pg = facts("app", "postgres", Value::Null);
    let big = facts("local", "sqlite", i(6_000_000_000));
    for fs in [[pg.clone(), big.clone()], [big, pg]] {
        let r = skip_if_decision(&c, &fs, now());
        let r = r.expect("not an error").expect("skips");
        assert!(r.contains("`local`"), "{r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions

#[test]
fn regression_key_representation_in_violations_does_not_depend_on_row_order() {
    // Int 1 and Text "1" are one key; the violation must show the same one whatever comes first.
    let run = |rows: Vec<Vec<Value>>| {
        run_pair(
            Check::Same,
            lr(&["k"], &["k"], None),
            table(&["k"], rows),
            table(&["k"], vec![]),
        )
    };
    let a = run(vec![vec![i(1)], vec![t("1")]]);
    let b = run(vec![vec![t("1")], vec![i(1)]]);
    assert_eq!(a.outcome, Outcome::Fail);
    assert_eq!(a.violations_total, 1);
    assert_eq!(a.violations, b.violations);
}

#[test]
fn regression_ragged_rows_do_not_panic() {
    // A row shorter than the header: its missing cells read as NULL.
    let tb = table(&["k", "age"], vec![vec![i(1), i(0)], vec![i(2)], vec![]]);
    let p = pair(
        keyed(sql("SELECT l"), &["k"], Some("age")),
        keyed(sql("SELECT r"), &["k"], None),
        Some(Duration::from_secs(1)),
    );
    let v = run_pair(Check::Same, p, tb.clone(), table(&["k"], vec![vec![i(1)]]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(
        v.violations,
        vec![json!({"side": "only_left", "key": {"k": 2}})]
    );
    assert_eq!(measured(&v, "null_keys_ignored"), json!(1));
    let v = subset_from_pushdown(&table(&["k", "__examined"], vec![vec![t("a")], vec![]]));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.violations, vec![json!({"missing": {"k": "a"}})]);
    // `__examined` was lost with the short row: at least the missing key was examined.
    assert_eq!(v.examined, 1);
    assert_eq!(reason(&v), "1 of 1 key is missing");
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Keys that collide by text across types: Int 3, Text "3", Float 3.0.
fn arb_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        3 => (0i64..6).prop_map(Value::Int),
        3 => (0i64..6).prop_map(|n| Value::Text(n.to_string())),
        1 => (0i64..6).prop_map(|n| Value::Float(n as f64)),
        1 => prop::sample::select(vec!["a", "b", ""]).prop_map(|s| Value::Text(s.into())),
    ]
}

fn arb_cell() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (-3i64..4).prop_map(Value::Int),
        prop::sample::select(vec!["a", "b", "7"]).prop_map(|s| Value::Text(s.into())),
        (-3.0f64..4.0).prop_map(Value::Float),
    ]
}

/// Columns `k`, `x`, `ts` (a timestamp within two hours of now).
fn arb_rows() -> impl Strategy<Value = Vec<Vec<Value>>> {
    prop::collection::vec(
        (
            arb_key(),
            arb_cell(),
            prop_oneof![
                Just(Value::Null),
                (0i64..7200).prop_map(|s| Value::Timestamp(now() - Span::seconds(s))),
                (0i64..7200).prop_map(|s| Value::Int(now().timestamp() - s)),
            ],
        )
            .prop_map(|(k, x, a)| vec![k, x, a]),
        0..50,
    )
}

fn kt(rows: Vec<Vec<Value>>) -> Table {
    table(&["k", "x", "ts"], rows)
}

/// Every check kind over two probes `L` and `R` with columns `k`, `x`, `ts`.
fn all_checks() -> Vec<Check> {
    let l = || sql("L");
    let r = || sql("R");
    let probe = |f: &dyn Fn(&mut ProbeCheck)| {
        let mut c = pc(l());
        f(&mut c);
        Check::Probe(c)
    };
    let g = Some(Duration::from_secs(1800));
    vec![
        probe(&|_| {}),
        probe(&|c| c.fail_when = when("count > 3.0")),
        probe(&|c| {
            c.skip_when = when("count > 40.0");
            c.fail_when = when("rows.exists(y, y.x == 'a')");
            c.warn_when = when("rows.exists(y, y.k == 3.0)");
        }),
        probe(&|c| c.fail_when = when("rows.all(y, y.k != null)")),
        probe(&|c| c.every_row = each("r.x == 'a'")),
        probe(&|c| c.every_row = each("r.x > 1.0")),
        probe(&|c| {
            c.every_row = each("r.k != 3.0");
            c.on_empty = OnEmpty::Fail;
        }),
        probe(&|c| {
            c.warn_when = when("count > 2.0");
            c.on_empty = OnEmpty::Skip;
        }),
        Check::Same(pair(
            keyed(l(), &["k"], None),
            keyed(r(), &["k"], None),
            None,
        )),
        Check::Same(pair(
            keyed(l(), &["k"], Some("ts")),
            keyed(r(), &["k"], Some("ts")),
            g,
        )),
        Check::Same(pair(
            keyed(l(), &["k", "x"], None),
            keyed(r(), &[], None),
            None,
        )),
        Check::Disjoint(pair(
            keyed(l(), &["k"], None),
            keyed(r(), &["k"], None),
            None,
        )),
        Check::Disjoint(pair(
            keyed(l(), &["k"], Some("ts")),
            keyed(r(), &["k"], None),
            g,
        )),
        Check::Subset(sub(
            keyed(l(), &["k"], None),
            keyed(r(), &["k"], None),
            None,
        )),
        Check::Subset(sub(
            keyed(l(), &["k", "x"], Some("ts")),
            keyed(r(), &["k", "x"], None),
            g,
        )),
    ]
}

fn two(l: Table, r: Table) -> Snapshot {
    snap(vec![(sql("L"), l), (sql("R"), r)])
}

/// Everything about a verdict that must not depend on row order.
fn order_free(v: &Verdict) -> (Outcome, u64, u64, bool, String, Vec<String>) {
    let mut vs: Vec<String> = v.violations.iter().map(|x| x.to_string()).collect();
    vs.sort();
    (
        v.outcome,
        v.violations_total,
        v.examined,
        v.vacuous,
        serde_json::Value::Object(v.measured.clone()).to_string(),
        vs,
    )
}

fn nasty_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e300),
            any::<f64>(),
        ]
        .prop_map(Value::Float),
        prop::sample::select(vec!["", "a", "7", "2026-03-01 10:00:00", "\u{1f}", "NaN"])
            .prop_map(|s| Value::Text(s.into())),
        ".{0,6}".prop_map(Value::Text),
        prop_oneof![
            Just(DateTime::<Utc>::MIN_UTC),
            Just(DateTime::<Utc>::MAX_UTC),
            (-1_000_000_000_000i64..1_000_000_000_000)
                .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default()),
        ]
        .prop_map(Value::Timestamp),
        prop_oneof![
            Just(NaiveDate::MIN),
            Just(NaiveDate::MAX),
            Just(NaiveDate::default())
        ]
        .prop_map(Value::Date),
    ]
}

fn nasty_value() -> impl Strategy<Value = Value> {
    nasty_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map("[a-z]{0,2}", inner, 0..4).prop_map(Value::Map),
        ]
    })
}

/// Random column names from a small pool (so key and condition columns are sometimes there,
/// sometimes missing), then rows of matching width — or now and then ragged.
fn nasty_table() -> impl Strategy<Value = Table> {
    prop::collection::btree_set(
        prop::sample::select(vec!["k", "x", "ts", "value", "r", "__examined", "other"]),
        0..5,
    )
    .prop_flat_map(|cols| {
        let cols: Vec<String> = cols.into_iter().map(str::to_string).collect();
        let n = cols.len();
        (
            Just(cols),
            prop::collection::vec(
                prop_oneof![
                    6 => prop::collection::vec(nasty_value(), n..=n),
                    1 => prop::collection::vec(nasty_value(), 0..=n + 1),
                ],
                0..8,
            ),
        )
    })
    .prop_map(|(columns, rows)| Table { columns, rows })
}

fn nasty_checks() -> Vec<Check> {
    let l = || sql("L");
    let r = || sql("R");
    let g = Some(Duration::from_secs(5));
    let mut out = Vec::new();
    for src in [
        None,
        Some("row.x > 1.0"),
        Some("count > 3.0"),
        Some("now - row.ts > duration('1h')"),
        Some("rows.exists(y, y.x == 'a')"),
    ] {
        for on_empty in [OnEmpty::Pass, OnEmpty::Skip, OnEmpty::Fail] {
            let mut c = pc(l());
            c.fail_when = src.and_then(when);
            c.on_empty = on_empty;
            out.push(Check::Probe(c.clone()));
            c.skip_when = c.fail_when.take();
            c.warn_when = when("count > 1.0");
            out.push(Check::Probe(c));
        }
    }
    for src in ["r.x == 'a'", "r.x > 1.0", "now - r.ts > duration('1h')"] {
        let mut c = pc(l());
        c.every_row = each(src);
        out.push(Check::Probe(c));
    }
    let mut c = pc(values(&["a", "7"]));
    c.every_row = each("r.value == 'a'");
    out.push(Check::Probe(c));
    for (kl, kr, age) in [
        (&["k"][..], &["k"][..], None),
        (&[][..], &[][..], None),
        (&["k", "x"][..], &["x", "k"][..], Some("ts")),
        (&["value"][..], &["k"][..], Some("x")),
    ] {
        let p = pair(keyed(l(), kl, age), keyed(r(), kr, age), g);
        out.push(Check::Same(p.clone()));
        out.push(Check::Disjoint(p.clone()));
        out.push(Check::Subset(sub(p.left, p.right, p.grace)));
    }
    out.push(Check::Subset(sub(
        keyed(values(&["a", "7", ""]), &[], None),
        keyed(r(), &["value"], None),
        None,
    )));
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(200)
    })]

    #[test]
    fn verdicts_do_not_depend_on_row_order(
        lrows in arb_rows(),
        rrows in arb_rows(),
        lperm in any::<u64>(),
    ) {
        // A shuffle of each side derived from one seed, plus the plain reversal.
        let shuffle = |rows: &[Vec<Value>], seed: u64| {
            let mut keyed: Vec<(u64, Vec<Value>)> = rows
                .iter()
                .enumerate()
                .map(|(n, r)| {
                    let h = (n as u64 + 1)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .rotate_left(17)
                        ^ seed;
                    (h.wrapping_mul(0xBF58_476D_1CE4_E5B9), r.clone())
                })
                .collect();
            keyed.sort_by_key(|(h, _)| *h);
            keyed.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
        };
        let base = two(kt(lrows.clone()), kt(rrows.clone()));
        let rev = |rows: &[Vec<Value>]| rows.iter().rev().cloned().collect::<Vec<_>>();
        let others = [
            two(kt(rev(&lrows)), kt(rev(&rrows))),
            two(kt(shuffle(&lrows, lperm)), kt(shuffle(&rrows, !lperm))),
        ];
        for check in all_checks() {
            let i = inv(check);
            let want = order_free(&evaluate(&i, &base));
            for o in &others {
                prop_assert_eq!(&order_free(&evaluate(&i, o)), &want, "{:?}", i.check);
            }
        }
    }

    #[test]
    fn evaluation_never_panics(l in nasty_table(), r in nasty_table()) {
        let mut s = two(l.clone(), r.clone());
        s.probes.insert(values(&["a", "7"]), Ok(Arc::new(values_table(&["a", "7"]))));
        s.probes.insert(
            values(&["a", "7", ""]),
            Ok(Arc::new(values_table(&["a", "7", ""]))),
        );
        for check in nasty_checks() {
            let v = evaluate(&inv(check), &s);
            prop_assert!(v.violations.len() as u64 <= v.violations_total);
            if v.outcome == Outcome::Error {
                prop_assert!(v.reason.is_some());
            }
        }
        let _ = subset_from_pushdown(&l);
        let _ = subset_from_pushdown(&r);
        let guard = cond("source.size_bytes > 5GB || source.name == 'a'", Scope::SkipIf);
        let fs: Vec<BTreeMap<String, Value>> = l
            .rows
            .iter()
            .map(|row| l.columns.iter().cloned().zip(row.iter().cloned()).collect())
            .collect();
        let _ = skip_if_decision(&guard, &fs, now());
    }

    #[test]
    fn integers_key_like_their_text_and_their_float(n in -999_999_999_999_999i64..1_000_000_000_000_000) {
        let k = Value::Int(n).key_text();
        prop_assert_eq!(&k, &Value::Text(n.to_string()).key_text());
        prop_assert_eq!(&k, &Value::Float(n as f64).key_text());
        prop_assert_eq!(&k, &n.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// History: `hist` in conditions, thin history, `anomaly`

fn past(ns: &[f64]) -> Vec<invar_core::hist::PastRun> {
    ns.iter()
        .enumerate()
        .map(|(k, n)| {
            let mut measured = serde_json::Map::new();
            measured.insert("count".into(), json!(1));
            measured.insert("n".into(), json!(n));
            invar_core::hist::PastRun {
                at: now() - Span::days(k as i64 + 1),
                measured,
            }
        })
        .collect()
}

fn with_history(check: ProbeCheck, n: i64, history: &[f64], min_runs: u32) -> Verdict {
    let probe = check.probe.clone();
    let mut invariant = inv(Check::Probe(check));
    invariant.history = Some(invar_core::HistorySpec {
        window: Duration::from_secs(14 * 86_400),
        min_runs,
        same_weekday: false,
    });
    let mut s = snap(vec![(probe, table(&["n"], vec![vec![i(n)]]))]);
    s.history.insert(invariant.id.clone(), past(history));
    evaluate(&invariant, &s)
}

#[test]
fn hist_in_a_condition_compares_with_the_window() {
    let check = || ProbeCheck {
        fail_when: when("row.n < 0.5 * hist.n.median"),
        warn_when: when("row.n > hist.n.p90"),
        ..pc(sql("SELECT n"))
    };
    let h = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 102.0];
    assert_eq!(with_history(check(), 101, &h, 7).outcome, Outcome::Pass);
    let v = with_history(check(), 40, &h, 7);
    assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
    assert!(reason(&v).contains("0.5 * hist.n.median"), "{}", reason(&v));
    assert_eq!(with_history(check(), 200, &h, 7).outcome, Outcome::Warn);
}

#[test]
fn thin_history_is_a_skip_that_still_measures() {
    let check = ProbeCheck {
        fail_when: when("row.n < 0.5 * hist.n.median"),
        ..pc(sql("SELECT n"))
    };
    let v = with_history(check, 1, &[100.0, 100.0, 100.0], 7);
    assert_eq!(v.outcome, Outcome::Skip);
    assert_eq!(reason(&v), "thin history: 3 of 7 runs");
    // Measured all the same: this run adds to the history.
    assert_eq!(measured(&v, "n"), json!(1));
    assert_eq!(measured(&v, "count"), json!(1));
}

#[test]
fn a_measure_the_history_lacks_is_an_error_never_a_pass() {
    let check = ProbeCheck {
        fail_when: when("row.n < hist.latency.median"),
        ..pc(sql("SELECT n"))
    };
    let v = with_history(check, 1, &[1.0, 2.0, 3.0], 3);
    assert_eq!(v.outcome, Outcome::Error, "{v:?}");
}

#[test]
fn anomaly_scores_against_the_median_and_mad() {
    let anomaly = |direction, warn| invar_core::Anomaly {
        measure: "n".into(),
        threshold: 3.5,
        warn_threshold: warn,
        direction,
    };
    let check = |a| ProbeCheck {
        anomaly: Some(a),
        ..pc(sql("SELECT n"))
    };
    // median 100, MAD 2 → 1.4826 · 2 = 2.9652 per unit of z.
    let h = [96.0, 98.0, 100.0, 100.0, 102.0, 104.0, 100.0];
    let both = invar_core::Direction::Both;
    let v = with_history(check(anomaly(both, None)), 101, &h, 7);
    assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
    let v = with_history(check(anomaly(both, Some(2.0))), 107, &h, 7);
    assert_eq!(v.outcome, Outcome::Warn, "z = 7 / 2.9652 = 2.36: {v:?}");
    let v = with_history(check(anomaly(both, None)), 120, &h, 7);
    assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
    assert_eq!(measured(&v, "anomaly_x"), json!(120.0));
    assert_eq!(measured(&v, "anomaly_median"), json!(100.0));
    assert_eq!(measured(&v, "anomaly_mad"), json!(2.0));
    let z = measured(&v, "anomaly_score").as_f64().unwrap();
    assert!((z - 20.0 / (1.4826 * 2.0)).abs() < 1e-9, "{z}");
    assert_eq!(measured(&v, "anomaly_window"), json!("14d, 7 runs"));
    assert!(
        reason(&v).contains("`n` = 120 is up from the median 100"),
        "{}",
        reason(&v)
    );
    // Only drops count with `down`.
    let down = invar_core::Direction::Down;
    assert_eq!(
        with_history(check(anomaly(down, None)), 120, &h, 7).outcome,
        Outcome::Pass
    );
    assert_eq!(
        with_history(check(anomaly(down, None)), 80, &h, 7).outcome,
        Outcome::Fail
    );
    // A constant history: any change is an anomaly, and says why.
    let v = with_history(check(anomaly(both, None)), 6, &[5.0; 7], 7);
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(measured(&v, "anomaly_score"), json!("inf"));
    assert!(
        reason(&v).contains("the history is constant"),
        "{}",
        reason(&v)
    );
    assert_eq!(
        with_history(check(anomaly(both, None)), 5, &[5.0; 7], 7).outcome,
        Outcome::Pass
    );
}

#[test]
fn a_vacuous_pass_for_the_whole_vacuous_after_is_a_warn() {
    let check = ProbeCheck {
        fail_when: when("count > 0.0"),
        ..pc(sql("SELECT 1"))
    };
    let probe = check.probe.clone();
    let invariant = inv(Check::Probe(check));
    let mut s = snap(vec![(probe.clone(), table(&["n"], vec![]))]);
    assert_eq!(evaluate(&invariant, &s).outcome, Outcome::Pass);
    let since = now() - Span::days(8);
    s.vacuous_since.insert(invariant.id.clone(), since);
    let v = evaluate(&invariant, &s);
    assert_eq!(v.outcome, Outcome::Warn, "{v:?}");
    assert!(v.vacuous);
    assert!(
        reason(&v).starts_with("examined nothing since "),
        "{}",
        reason(&v)
    );
    // A run that examined rows is not touched, whatever the streak said.
    let s2 = {
        let mut s2 = snap(vec![(probe, table(&["n"], vec![vec![i(1)]]))]);
        s2.vacuous_since.insert(invariant.id.clone(), since);
        s2
    };
    assert_eq!(evaluate(&invariant, &s2).outcome, Outcome::Fail);
}
