//! Silences against a real SQLite store: what the planner queues while an invariant is
//! silenced, by a one-off silence in the store or a recurring window of the config (across a
//! DST change), read straight from the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, Utc};
use invar_alerts::record_run;
use invar_core::{Config, Counts, InvariantResult, Outcome, RunReport};
use invar_store::{DeliveryQuery, NewSilence, Store};
use std::path::Path;
use std::sync::Arc;

fn config(dir: &Path, silences: &str) -> Config {
    let text = format!(
        r#"
alerts:
  hook: {{ type: webhook, url: "http://127.0.0.1:9/hook" }}
invariants:
  - id: ORD-01
    title: Every order has a customer
    tags: [db]
    probe: {{ values: [x] }}
  - id: API-01
    title: The API answers
    probe: {{ values: [x] }}
{silences}"#
    );
    let path = dir.join("invar.yaml");
    std::fs::write(&path, text).unwrap();
    match invar_config::load_with_env(&path, &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("{}", d.render(false)),
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn result(id: &str, outcome: Outcome) -> InvariantResult {
    InvariantResult {
        id: id.into(),
        title: id.into(),
        severity: "major".into(),
        outcome,
        reason: (outcome == Outcome::Fail).then(|| "1 row returned".to_string()),
        examined: 1,
        vacuous: false,
        duration_ms: 1,
        measured: serde_json::Map::new(),
        violations_total: 0,
        violations: vec![],
        runbook: None,
        silenced: None,
    }
}

/// A run at `when` in which each invariant has its outcome.
fn run(n: usize, when: DateTime<Utc>, outcomes: &[(&str, Outcome)]) -> RunReport {
    let results: Vec<InvariantResult> = outcomes.iter().map(|(id, o)| result(id, *o)).collect();
    let mut counts = Counts::default();
    for r in &results {
        counts.add(r.outcome);
    }
    RunReport {
        run_id: format!("run-{n}"),
        suite: "all".into(),
        trigger: invar_core::Trigger::Cli,
        started_at: when,
        duration_ms: 5,
        status: invar_core::report::run_status(&results),
        exit_code: 0,
        counts,
        automation_error: false,
        assessment_failures: counts.fail,
        lock_skipped: false,
        skipped_budget: 0,
        sources_unavailable: vec![],
        results,
    }
}

async fn queued(store: &dyn Store, subject: &str) -> Vec<String> {
    store
        .deliveries(&DeliveryQuery {
            sink: Some("hook".into()),
            subject: Some(subject.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|d| format!("{}@{}", d.notice, d.created_at.format("%H:%M")))
        .collect()
}

async fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        invar_store::open_sqlite(&dir.join(".invar/history.db"))
            .await
            .unwrap(),
    )
}

/// A one-off silence (10:00–12:00 on ORD-01): ORD-01 goes red under it and stays red — its
/// firing is sent by the first run after 12:00; API-01 (not matched) fires at once. A second
/// incident that goes red and green inside a later silence sends nothing.
#[tokio::test]
async fn a_one_off_silence_holds_the_firing_until_it_ends_and_a_red_green_inside_sends_nothing() {
    use Outcome::{Fail, Pass};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let store = open(dir.path()).await;
    let add = |from: &str, to: &str| NewSilence {
        matcher: "id == 'ORD-01'".into(),
        starts_at: at(from),
        ends_at: at(to),
        reason: "migration".into(),
        created_by: "test".into(),
        created_at: at(from),
    };
    store
        .add_silence(&add("2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"))
        .await
        .unwrap();
    let runs = [
        ("2026-03-01T10:30:00Z", Fail, Fail),
        ("2026-03-01T11:30:00Z", Fail, Fail),
        ("2026-03-01T12:00:00Z", Fail, Pass), // the silence is over (end is exclusive)
        ("2026-03-01T12:30:00Z", Fail, Pass),
    ];
    for (i, (when, ord, api)) in runs.into_iter().enumerate() {
        let r = run(i, at(when), &[("ORD-01", ord), ("API-01", api)]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
    }
    assert_eq!(queued(store.as_ref(), "ORD-01").await, ["firing@12:00"]);
    assert_eq!(
        queued(store.as_ref(), "API-01").await,
        ["firing@10:30", "resolved@12:00"]
    );

    // Green at 13:00 (resolved is sent: its firing was), then red and green inside a silence.
    store
        .add_silence(&add("2026-03-01T14:00:00Z", "2026-03-01T16:00:00Z"))
        .await
        .unwrap();
    for (i, (when, ord)) in [
        ("2026-03-01T13:00:00Z", Pass),
        ("2026-03-01T14:15:00Z", Fail),
        ("2026-03-01T14:30:00Z", Fail),
        ("2026-03-01T15:00:00Z", Pass),
        ("2026-03-01T16:30:00Z", Pass),
    ]
    .into_iter()
    .enumerate()
    {
        let r = run(10 + i, at(when), &[("ORD-01", ord), ("API-01", Pass)]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
    }
    assert_eq!(
        queued(store.as_ref(), "ORD-01").await,
        ["firing@12:00", "resolved@13:00"],
        "a red and green inside a silence sends nothing"
    );
}

/// A recurring window of the config (`every: "30 1 * * 0"`, 2 h, Europe/Berlin) on the Sunday
/// DST begins: it covers 00:30–02:30 UTC that day (01:30 CET to 04:30 CEST). ORD-01 is red
/// throughout: runs at 00:15 (before) … the firing goes out at the first run after 02:30.
#[tokio::test]
async fn a_recurring_window_across_the_dst_change_silences_exactly_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let silences = r#"silences:
  - match: "'db' in tags"
    every: "30 1 * * 0"
    timezone: Europe/Berlin
    for: 2h
    reason: weekly vacuum
"#;
    let cfg = config(dir.path(), silences);
    assert_eq!(cfg.silences.len(), 1);
    // Red from 00:45 UTC (inside the window) to 02:45 UTC: held until 02:30, fired at 02:30.
    let store = open(dir.path()).await;
    for (i, when) in [
        "2026-03-29T00:45:00Z",
        "2026-03-29T01:45:00Z",
        "2026-03-29T02:15:00Z",
        "2026-03-29T02:30:00Z",
        "2026-03-29T02:45:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let r = run(
            i,
            at(when),
            &[("ORD-01", Outcome::Fail), ("API-01", Outcome::Fail)],
        );
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
    }
    assert_eq!(queued(store.as_ref(), "ORD-01").await, ["firing@02:30"]);
    assert_eq!(queued(store.as_ref(), "API-01").await, ["firing@00:45"]);

    // Outside the window (the Sunday before, 00:29 UTC is 01:29 CET): fires at once.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), silences);
    let store = open(dir.path()).await;
    let r = run(0, at("2026-03-22T00:29:00Z"), &[("ORD-01", Outcome::Fail)]);
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    assert_eq!(queued(store.as_ref(), "ORD-01").await, ["firing@00:29"]);
}
