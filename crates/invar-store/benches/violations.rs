//! How long the watcher's read paths take over a big history: one 50-row page of
//! `violations` (every filter, first and deep pages), `violation`, `violation_stats` and
//! `latest_outcomes`, on SQLite and on the loopback Postgres.
//!
//! `cargo bench -p invar-store --bench violations` (add `--profile dev` to skip the release
//! build; a trailing `sqlite` or `postgres` picks one backend). The history: runs an hour
//! apart, each with 20 failing invariants of 50 violations (2 critical, 6 major, 12 minor)
//! and 80 passing ones, until `INVAR_BENCH_VIOLATIONS` (default 100,000) violations are
//! stored. Each case is timed `INVAR_BENCH_SAMPLES` times (default 200) after 20 warm-ups,
//! through the `Store` trait as the HTTP API calls it.
//! Env: `INVAR_TEST_POSTGRES` (default loopback `test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::{InvariantResult, Outcome, RunReport, Secret};
use invar_store::*;
use serde_json::json;
use std::time::Instant;

const FAILING: usize = 20;
const PER_FAILING: usize = 50;
const PASSING: usize = 80;

fn severity(i: usize) -> &'static str {
    match i {
        0..2 => "critical",
        2..8 => "major",
        _ => "minor",
    }
}

fn report(n: usize, at: DateTime<Utc>) -> RunReport {
    let results: Vec<InvariantResult> = (0..FAILING + PASSING)
        .map(|i| {
            let failing = i < FAILING;
            let outcome = if failing {
                Outcome::Fail
            } else {
                Outcome::Pass
            };
            let violations: Vec<serde_json::Value> = if failing {
                (0..PER_FAILING)
                    .map(|k| json!({"id": format!("exec-{n}-{k}"), "status": "running", "agent": "a-1", "age_s": 3600 + k}))
                    .collect()
            } else {
                vec![]
            };
            InvariantResult {
                id: format!("INV-{i:03}"),
                title: format!("Invariant number {i} holds"),
                severity: if failing { severity(i) } else { "minor" }.into(),
                outcome,
                reason: failing.then(|| "fail_when held: `row.missing > 0`".to_string()),
                examined: 1000,
                vacuous: false,
                duration_ms: 2,
                measured: json!({"sample": 1000}).as_object().unwrap().clone(),
                violations_total: violations.len() as u64,
                violations,
                runbook: None,
                silenced: None,
            }
        })
        .collect();
    let mut report = RunReport::new(
        format!("bench-{n:06}"),
        "sweep",
        invar_core::Trigger::Schedule,
        at,
    );
    report.duration_ms = 900;
    report.set_results(results, vec![], invar_core::FailOn::Fail);
    report
}

/// Records runs until `total` violations are stored; returns the time of the last run.
async fn fill(store: &dyn Store, total: usize) -> DateTime<Utc> {
    let start = Utc::now() - TimeDelta::days(30);
    let runs = total.div_ceil(FAILING * PER_FAILING);
    let none = |_: &PlanInput| Plan::default();
    let t = Instant::now();
    for n in 0..runs {
        let r = report(n, start + TimeDelta::hours(n as i64));
        let rec = RunRecord {
            report: &r,
            sources: vec![],
            remembered: vec![],
        };
        store.record_run(&rec, &none).await.expect("record");
    }
    println!(
        "  filled {} violations in {runs} runs ({:.1} s)",
        runs * FAILING * PER_FAILING,
        t.elapsed().as_secs_f64()
    );
    start + TimeDelta::hours(runs as i64 - 1)
}

/// Times `f` (after warm-ups), printing median, p95 and max in ms.
async fn time<F, Fut, T>(name: &str, samples: usize, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut last = None;
    for _ in 0..20 {
        last = Some(f().await);
    }
    let mut s = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        last = Some(f().await);
        s.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| s[((s.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "  {name:<44} median {:>7.3} ms  p95 {:>7.3} ms  max {:>7.3} ms",
        pct(0.5),
        pct(0.95),
        s[s.len() - 1]
    );
    last.expect("one sample")
}

async fn bench(store: &dyn Store, total: usize, samples: usize) {
    let last = fill(store, total).await;
    let page = |q: ViolationQuery| async move {
        let p = store.violations(&q).await.expect("page");
        assert!(
            !p.items.is_empty() || q.severity.as_deref() == Some("none") || q.since > Some(last)
        );
        p
    };
    let q = |f: &dyn Fn(&mut ViolationQuery)| {
        let mut q = ViolationQuery {
            limit: 50,
            ..ViolationQuery::default()
        };
        f(&mut q);
        q
    };
    let first = time("page 1, no filter", samples, || page(q(&|_| {}))).await;
    // The cursor of the page half-way down.
    let mut cursor = first.next_cursor.clone();
    for _ in 0..total / 100 - 1 {
        cursor = page(q(&|q| q.cursor = cursor.clone())).await.next_cursor;
    }
    time("page at row 50,000 (cursor), no filter", samples, || {
        page(q(&|q| q.cursor = cursor.clone()))
    })
    .await;
    time("page 1, invariant", samples, || {
        page(q(&|q| q.invariant = Some("INV-007".into())))
    })
    .await;
    time("page at row 50,000, severity minor", samples, || {
        page(q(&|q| {
            q.severity = Some("minor".into());
            q.cursor = cursor.clone();
        }))
    })
    .await;
    time("page 1, severity critical (10%)", samples, || {
        page(q(&|q| q.severity = Some("critical".into())))
    })
    .await;
    time("page 1, severity with no rows", samples, || {
        page(q(&|q| q.severity = Some("none".into())))
    })
    .await;
    time("page 1, since the last 2 runs", samples, || {
        page(q(&|q| q.since = Some(last - TimeDelta::hours(1))))
    })
    .await;
    time("page 1, since after the last run (empty)", samples, || {
        page(q(&|q| q.since = Some(last + TimeDelta::hours(1))))
    })
    .await;
    // Every page, start to end.
    let t = Instant::now();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let p = page(q(&|q| q.cursor = cursor.clone())).await;
        pages += 1;
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    println!(
        "  {:<44} {pages} pages, {:.3} ms a page",
        "walk every page (cursor)",
        t.elapsed().as_secs_f64() * 1000.0 / pages as f64
    );
    let id = first.items[7].id;
    time("violation(id)", samples, || async move {
        store.violation(id).await.expect("violation")
    })
    .await;
    time("violation_stats(None)", samples.min(50), || async {
        store.violation_stats(None).await.expect("stats")
    })
    .await;
    time("violation_stats(since 1 day)", samples.min(50), || async {
        store
            .violation_stats(Some(last - TimeDelta::days(1)))
            .await
            .expect("stats")
    })
    .await;
    time("latest_outcomes(20)", samples.min(50), || async {
        store.latest_outcomes(20).await.expect("outcomes")
    })
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by backend name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |b: &str| filter.is_empty() || filter.iter().any(|f| b.contains(f.as_str()));
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let total = env("INVAR_BENCH_VIOLATIONS", 100_000).max(2_000);
    let samples = env("INVAR_BENCH_SAMPLES", 200).max(1);
    if wants("sqlite") {
        println!("sqlite");
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(&dir.path().join("history.db")).await.unwrap();
        bench(&store, total, samples).await;
    }
    if wants("postgres") {
        println!("postgres");
        let url = std::env::var("INVAR_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("invar_bench_{}", uuid::Uuid::now_v7().simple());
        match connect_postgres(&Secret::new(url), Some(&schema)).await {
            Ok(store) => {
                bench(&store, total, samples).await;
                store.drop_schema(&schema).await.unwrap();
            }
            Err(e) => println!("  skipped: {e}"),
        }
    }
}
