//! `invar_record` over a real SQLite history store: what a recorded run leaves behind (the run,
//! its incident, the remembered states), forgetting keys unseen for longer than `remember`,
//! and pruning runs older than retention.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::{Config, InvariantResult, Outcome, Remembered, RunReport};
use invar_store::{IncidentQuery, RunQuery, Store};
use std::collections::HashMap;

const CONFIG: &str = r#"
sources:
  app: { type: sqlite, path: app.db }
store: sqlite://.invar/history.db
retention: { runs: 1d, violations: 1d }
invariants:
  - id: E-02
    title: Terminal executions stay terminal
    severity: critical
    transitions:
      probe: { source: app, sql: "SELECT id, status FROM executions" }
      key: id
      state: status
      allowed: { queued: [running], running: [] }
      remember: 1h
  - id: N-01
    title: No negative totals
    severity: major
    probe: { source: app, sql: "SELECT total FROM orders WHERE total < 0" }
"#;

async fn setup() -> (tempfile::TempDir, Config, Box<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = invar_config::load_from_str(&dir.path().join("invar.yaml"), CONFIG, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let store = invar_store::open(&cfg.store).await.unwrap();
    (dir, cfg, store)
}

fn result(id: &str, outcome: Outcome) -> InvariantResult {
    InvariantResult {
        id: id.into(),
        title: id.into(),
        severity: "major".into(),
        outcome,
        reason: None,
        examined: 1,
        vacuous: false,
        duration_ms: 1,
        measured: Default::default(),
        violations_total: u64::from(outcome == Outcome::Fail),
        violations: Vec::new(),
        runbook: None,
        silenced: None,
    }
}

fn report(run: &str, at: DateTime<Utc>, n01: Outcome) -> RunReport {
    let mut r = RunReport::new(run.into(), "all", invar_core::Trigger::Cli, at);
    r.set_results(
        vec![result("E-02", Outcome::Pass), result("N-01", n01)],
        Vec::new(),
        Default::default(),
    );
    r
}

fn seen(key: &str, state: &str, at: DateTime<Utc>) -> Remembered {
    Remembered {
        key: key.into(),
        state: state.into(),
        seen_at: at,
    }
}

fn keys(m: &HashMap<String, Vec<Remembered>>, id: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = m[id]
        .iter()
        .map(|r| (r.key.clone(), r.state.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_recorded_run_leaves_its_run_incident_and_remembered_states() {
    let (_dir, cfg, store) = setup().await;
    let before = invar_record::load_remembered(store.as_ref(), &cfg)
        .await
        .unwrap();
    // Only `transitions` invariants remember; a fresh store remembers nothing for them.
    assert_eq!(before.keys().collect::<Vec<_>>(), vec!["E-02"]);
    assert!(before["E-02"].is_empty());

    let now = Utc::now();
    let remembered = HashMap::from([(
        "E-02".to_string(),
        vec![seen("1", "queued", now), seen("2", "running", now)],
    )]);
    let rec = invar_record::record(
        store.as_ref(),
        &cfg,
        &mut report("run-1", now, Outcome::Fail),
        remembered,
    )
    .await
    .unwrap();
    assert_eq!(rec.run_id, "run-1");
    assert_eq!(rec.results, 2);
    assert_eq!(rec.events.len(), 1, "green→red opens one incident");

    let runs = store.runs(&RunQuery::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, "run-1");
    let open = store
        .incidents(&IncidentQuery {
            open_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].subject, "N-01");

    let after = invar_record::load_remembered(store.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(
        keys(&after, "E-02"),
        vec![
            ("1".to_string(), "queued".to_string()),
            ("2".to_string(), "running".to_string())
        ]
    );
}

#[tokio::test]
async fn keys_unseen_for_longer_than_remember_are_forgotten() {
    let (_dir, cfg, store) = setup().await;
    let now = Utc::now();
    let remembered = HashMap::from([(
        "E-02".to_string(),
        vec![
            seen("fresh", "queued", now - TimeDelta::minutes(30)),
            seen("stale", "running", now - TimeDelta::hours(2)),
        ],
    )]);
    invar_record::record(
        store.as_ref(),
        &cfg,
        &mut report("run-1", now, Outcome::Pass),
        remembered,
    )
    .await
    .unwrap();
    let after = invar_record::load_remembered(store.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(
        keys(&after, "E-02"),
        vec![("fresh".to_string(), "queued".to_string())]
    );
}

#[tokio::test]
async fn runs_older_than_retention_are_pruned() {
    let (_dir, cfg, store) = setup().await;
    let now = Utc::now();
    for (run, at) in [("old", now - TimeDelta::days(3)), ("new", now)] {
        invar_record::record(
            store.as_ref(),
            &cfg,
            &mut report(run, at, Outcome::Pass),
            HashMap::new(),
        )
        .await
        .unwrap();
    }
    let runs = store.runs(&RunQuery::default()).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["new"], "retention.runs is 1d");
}
