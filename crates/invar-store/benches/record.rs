//! How long recording a 1,000-invariant run takes, on SQLite and on the loopback Postgres.
//!
//! `cargo bench -p invar-store --bench record` (add `--profile dev` to skip the release build).
//! Each sample is one `record_run`: the run row, 1,000 results, the violations of the failing
//! ones, 1,000 incident states, the incident events and their outbox rows — one transaction.
//! Env: `INVAR_BENCH_RUNS` (default 30), `INVAR_TEST_POSTGRES` (default loopback `test`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::incident::{self, Observation, Policy, Signal, SubjectKind};
use invar_core::{InvariantResult, Outcome, RunReport, Secret};
use invar_store::*;
use serde_json::json;
use std::time::Instant;

const INVARIANTS: usize = 1000;

fn report(n: usize, at: DateTime<Utc>) -> RunReport {
    let results: Vec<InvariantResult> = (0..INVARIANTS)
        .map(|i| {
            // 10% fail with 5 violations each; which ones shifts every run, so incidents
            // open and resolve as they would in a busy history.
            let failing = (i + n).is_multiple_of(10);
            let outcome = if failing {
                Outcome::Fail
            } else {
                Outcome::Pass
            };
            InvariantResult {
                id: format!("INV-{i:04}"),
                title: format!("Invariant number {i} holds"),
                severity: "major".into(),
                outcome,
                reason: failing.then(|| "fail_when held: `row.missing > 0`".to_string()),
                examined: 1000,
                vacuous: false,
                duration_ms: 2,
                measured: json!({"sample": 1000, "missing": if failing { 5 } else { 0 }})
                    .as_object()
                    .unwrap()
                    .clone(),
                violations_total: if failing { 5 } else { 0 },
                violations: if failing {
                    (0..5)
                        .map(|k| json!({"id": k, "status": "running", "agent": "a-1"}))
                        .collect()
                } else {
                    vec![]
                },
                runbook: Some("https://runbooks.example.com/inv".into()),
                silenced: None,
            }
        })
        .collect();
    let mut report = RunReport::new(
        format!("bench-{n:06}-{}", uuid::Uuid::now_v7().simple()),
        "sweep",
        invar_core::Trigger::Schedule,
        at,
    );
    report.duration_ms = 900;
    report.set_results(results, vec![], invar_core::FailOn::Fail);
    report
}

async fn bench(store: &dyn Store, runs: usize) -> Vec<f64> {
    let start = Utc::now();
    let mut samples = Vec::with_capacity(runs);
    for n in 0..runs {
        let at = start + TimeDelta::minutes(15 * n as i64);
        let r = report(n, at);
        let obs: Vec<Observation> = r
            .results
            .iter()
            .map(|x| Observation {
                held_by: Vec::new(),
                subject: x.id.clone(),
                kind: SubjectKind::Invariant,
                signal: Signal::from_outcome(x.outcome),
                policy: Policy::default(),
                sources: vec!["app".into()],
            })
            .collect();
        let planner = |input: &PlanInput| {
            let mut k = 0;
            let mut id = || {
                k += 1;
                format!("{}-{k}", r.run_id)
            };
            let adv = incident::advance(&input.states, &obs, at, &mut id);
            let outbox = adv
                .events
                .iter()
                .filter_map(|e| {
                    let notice = e.notice?;
                    let key = format!("{}:{}:ops", e.incident_id.clone()?, notice.as_str());
                    Some(NewDelivery {
                        id: uuid::Uuid::now_v7().to_string(),
                        idempotency_key: key,
                        sink: "ops".into(),
                        notice: notice.as_str().into(),
                        incident_id: e.incident_id.clone(),
                        subject: e.subject.clone(),
                        payload: json!({"subject": e.subject}),
                        created_at: at,
                    })
                })
                .collect();
            Plan {
                states: adv.states,
                events: adv.events,
                outbox,
                ..Plan::default()
            }
        };
        let rec = RunRecord {
            report: &r,
            sources: vec![vec!["app".to_string()]; INVARIANTS],
            remembered: vec![],
        };
        let t = Instant::now();
        store.record_run(&rec, &planner).await.expect("record");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples
}

fn summary(name: &str, mut s: Vec<f64>) {
    // The first run creates every incident state; report it apart from the steady state.
    let first = s.remove(0);
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| s[((s.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<9} 1,000 invariants: first {first:.1} ms; then median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} runs)",
        pct(0.5),
        pct(0.95),
        s[s.len() - 1],
        s.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by backend name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |b: &str| filter.is_empty() || filter.iter().any(|f| b.contains(f.as_str()));
    let runs: usize = std::env::var("INVAR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(2);
    if wants("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(&dir.path().join("history.db")).await.unwrap();
        summary("sqlite", bench(&store, runs).await);
    }
    if wants("postgres") {
        let url = std::env::var("INVAR_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("invar_bench_{}", uuid::Uuid::now_v7().simple());
        match connect_postgres(&Secret::new(url), Some(&schema)).await {
            Ok(store) => {
                summary("postgres", bench(&store, runs).await);
                store.drop_schema(&schema).await.unwrap();
            }
            Err(e) => println!("postgres  skipped: {e}"),
        }
    }
}
