//! After downtime: `misfire: run_once` runs one catch-up for the latest missed tick (claimed
//! like any tick), `misfire: skip` runs nothing until the next tick.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{TimeDelta, Timelike, Utc};
use invar_store::{RunQuery, Store};
use invar_watch::clock::Clock;
use invar_watch::watcher::Watcher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

async fn after_downtime(
    policy: &str,
) -> (
    Arc<dyn Store>,
    chrono::DateTime<Utc>,
    chrono::DateTime<Utc>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(
        &path,
        format!(
            "suites:\n  hourly: {{ select: \"true\", schedule: \"0 * * * *\", misfire: {policy} }}\n\
             invariants:\n  - id: M-1\n    title: m\n    probe: {{ values: [x] }}\n    fail_when: count == 0.0\n"
        ),
    )
    .unwrap();
    let cfg = Arc::new(invar_config::load(&path).unwrap());
    let store: Arc<dyn Store> = Arc::from(invar_store::open(&cfg.store).await.unwrap());
    // The last tick anyone ran was five hours ago: four or five hourly ticks were missed.
    let now = Utc::now();
    let hour = now
        .with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let old = hour - TimeDelta::hours(5);
    assert!(
        store
            .claim_tick("hourly", old, "earlier-replica", old)
            .await
            .unwrap()
    );
    store.finish_tick("hourly", old, "run-0").await.unwrap();

    let w = Arc::new(Watcher::new(cfg, store.clone(), Clock::System, "test".into()).unwrap());
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = invar_watch::scheduler::start(w.clone(), stop_rx);
    // The catch-up (if any) is spawned at start; give it time to run and record.
    for _ in 0..40 {
        if store.last_finished_tick("hourly").await.unwrap() != Some(old) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    for h in handles {
        h.await.unwrap();
    }
    let _guards = w.drain().await;
    (store, old, hour, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_runs_one_catch_up_for_the_latest_missed_tick() {
    let (store, _old, hour, _dir) = after_downtime("run_once").await;
    assert_eq!(store.last_tick("hourly").await.unwrap(), Some(hour));
    assert_eq!(
        store.last_finished_tick("hourly").await.unwrap(),
        Some(hour)
    );
    let runs = store
        .runs(&RunQuery {
            suite: Some("hourly".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].trigger, "schedule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_runs_nothing_for_missed_ticks() {
    let (store, old, _hour, _dir) = after_downtime("skip").await;
    assert_eq!(store.last_tick("hourly").await.unwrap(), Some(old));
    let runs = store
        .runs(&RunQuery {
            suite: Some("hourly".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(runs.is_empty(), "{runs:?}");
}
