//! What the planner queues for the sinks that mirror invar's incidents (`alertmanager`,
//! `pagerduty`) next to a plain webhook, read straight from the outbox of a real SQLite store
//! (nothing is delivered here: the receivers do not matter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_alerts::record_run;
use invar_core::{Config, Counts, InvariantResult, Outcome, RunProblem, RunReport};
use invar_store::{DeliveryQuery, Store};
use std::path::Path;
use std::sync::Arc;

fn config(dir: &Path) -> Config {
    let text = r#"
sources:
  app: { type: sqlite, path: app.db }
alerts:
  am:   { type: alertmanager, url: "http://127.0.0.1:9", refresh: 20m }
  pd:   { type: pagerduty, routing_key: "k3y", url: "http://127.0.0.1:9/v2/enqueue" }
  hook: { type: webhook, url: "http://127.0.0.1:9/hook", repeat: 20m }
invariants:
  - id: INV-1
    title: Every order has a customer
    severity: critical
    probe: { source: app, sql: "SELECT id FROM orders WHERE customer_id IS NULL" }
"#;
    let path = dir.join("invar.yaml");
    std::fs::write(&path, text).unwrap();
    match invar_config::load_with_env(&path, &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("{}", d.render(false)),
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Run `n` at `t0 + 15 min · n`; `down`: the source `app` is unavailable.
fn run(n: i64, outcome: Outcome, down: bool) -> RunReport {
    let results = vec![InvariantResult {
        id: "INV-1".into(),
        title: "Every order has a customer".into(),
        severity: "critical".into(),
        outcome,
        reason: (outcome == Outcome::Fail).then(|| "3 rows returned".to_string()),
        examined: 3,
        vacuous: false,
        duration_ms: 1,
        measured: serde_json::Map::new(),
        violations_total: 0,
        violations: vec![],
        runbook: None,
        silenced: None,
    }];
    let mut counts = Counts::default();
    counts.add(outcome);
    RunReport {
        run_id: format!("run-{n}"),
        suite: "all".into(),
        trigger: invar_core::Trigger::Cli,
        started_at: (t0() + TimeDelta::minutes(15 * n)),
        duration_ms: 5,
        status: invar_core::report::run_status(&results),
        exit_code: 0,
        counts,
        automation_error: down,
        assessment_failures: counts.fail,
        lock_skipped: false,
        skipped_budget: 0,
        sources_unavailable: if down {
            vec![RunProblem::source("app", "unable to open database file")]
        } else {
            vec![]
        },
        results,
    }
}

/// (notice, run id in the idempotency key or "") of every row queued for `sink`.
async fn queued(store: &dyn Store, sink: &str, subject: &str) -> Vec<String> {
    store
        .deliveries(&DeliveryQuery {
            sink: Some(sink.into()),
            subject: Some(subject.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|d| format!("{}@{}", d.notice, d.created_at.format("%H:%M")))
        .collect()
}

/// Alertmanager is refreshed every `refresh` (at the first run past it), and also while the
/// incident is held by a source outage; the webhook's `repeat` reminders pause while held;
/// PagerDuty gets one trigger and no reminders.
#[tokio::test]
async fn alertmanager_refreshes_follow_refresh_and_continue_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let store: Arc<dyn Store> = Arc::new(
        invar_store::open_sqlite(&dir.path().join(".invar/history.db"))
            .await
            .unwrap(),
    );
    let plan = [
        (Outcome::Fail, false), // 10:00 opens
        (Outcome::Fail, false), // 10:15 15m since the post: no refresh
        (Outcome::Fail, false), // 10:30 30m: refresh / reminder
        (Outcome::Error, true), // 10:45 source down: held, 15m: nothing
        (Outcome::Error, true), // 11:00 held, 30m: Alertmanager only
        (Outcome::Error, true), // 11:15 held, 15m since that refresh: nothing
        (Outcome::Pass, false), // 11:30 source back, green: resolves
    ];
    for (i, (o, down)) in plan.into_iter().enumerate() {
        record_run(store.as_ref(), &cfg, &run(i as i64, o, down))
            .await
            .unwrap();
    }
    assert_eq!(
        queued(store.as_ref(), "am", "INV-1").await,
        [
            "firing@10:00",
            "reminder@10:30",
            "reminder@11:00",
            "resolved@11:30"
        ]
    );
    assert_eq!(
        queued(store.as_ref(), "hook", "INV-1").await,
        ["firing@10:00", "reminder@10:30", "resolved@11:30"]
    );
    assert_eq!(
        queued(store.as_ref(), "pd", "INV-1").await,
        ["firing@10:00", "resolved@11:30"]
    );
}

/// A flapping subject sends its one `flapping` notice to the webhook, never to Alertmanager
/// or PagerDuty (there is no incident for them to resolve); each of those still gets exactly
/// one resolve per firing.
#[tokio::test]
async fn mirrors_get_no_flapping_notice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let store: Arc<dyn Store> = Arc::new(
        invar_store::open_sqlite(&dir.path().join(".invar/history.db"))
            .await
            .unwrap(),
    );
    for i in 0..10 {
        let o = if i % 2 == 0 {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        record_run(store.as_ref(), &cfg, &run(i, o, false))
            .await
            .unwrap();
    }
    let hook = queued(store.as_ref(), "hook", "INV-1").await;
    assert_eq!(
        hook.iter().filter(|n| n.starts_with("flapping")).count(),
        1,
        "{hook:?}"
    );
    for sink in ["am", "pd"] {
        let got = queued(store.as_ref(), sink, "INV-1").await;
        assert!(!got.iter().any(|n| n.starts_with("flapping")), "{got:?}");
        let firings = got.iter().filter(|n| n.starts_with("firing")).count();
        let resolves = got.iter().filter(|n| n.starts_with("resolved")).count();
        assert!(firings >= 1, "{sink}: {got:?}");
        assert_eq!(firings, resolves, "{sink}: {got:?}");
    }
}
