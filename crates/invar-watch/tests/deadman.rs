//! The dead-man's switch as an incident subject: the watchdog's record is red for
//! `suite:NAME`, a recorded scheduled run is green, and the incident opens once and resolves
//! once however many overdue ticks go by.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::incident::{IncidentState, Notice, Signal, SubjectKind, advance, observe};
use invar_core::{Config, RunReport, Trigger};
use std::collections::BTreeMap;

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(
        &path,
        "suites:\n  sweep: { select: \"true\", schedule: \"*/15 * * * *\" }\n  gate: { select: \"true\" }\n\
         invariants:\n  - id: A-1\n    title: a\n    probe: { values: [x] }\n    fail_when: count == 0.0\n",
    )
    .unwrap();
    let cfg = invar_config::load(&path).unwrap();
    (dir, cfg)
}

fn report(suite: &str, trigger: Trigger, lock_skipped: bool) -> RunReport {
    let mut r = invar_watch::watcher::lock_skipped_report(suite, trigger, Utc::now());
    r.lock_skipped = lock_skipped;
    r
}

fn suite_signal(cfg: &Config, r: &RunReport) -> Option<Signal> {
    observe(cfg, r)
        .into_iter()
        .find(|o| o.kind == SubjectKind::Suite)
        .map(|o| {
            assert_eq!(o.subject, format!("suite:{}", r.suite));
            o.signal
        })
}

#[test]
fn watchdog_records_are_red_and_scheduled_runs_green_for_scheduled_suites_only() {
    let (_d, cfg) = config();
    assert_eq!(
        suite_signal(&cfg, &report("sweep", Trigger::Watchdog, false)),
        Some(Signal::Red)
    );
    assert_eq!(
        suite_signal(&cfg, &report("sweep", Trigger::Schedule, false)),
        Some(Signal::Green)
    );
    // A lock_skipped tick did not run; an API or CLI run says nothing about the schedule.
    assert_eq!(
        suite_signal(&cfg, &report("sweep", Trigger::Schedule, true)),
        None
    );
    assert_eq!(
        suite_signal(&cfg, &report("sweep", Trigger::Api, false)),
        None
    );
    // A suite without a schedule has no dead-man's switch.
    assert_eq!(
        suite_signal(&cfg, &report("gate", Trigger::Watchdog, false)),
        None
    );
}

#[test]
fn an_overdue_suite_alerts_once_and_resolves_once() {
    let (_d, cfg) = config();
    let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
    let mut states: BTreeMap<String, IncidentState> = BTreeMap::new();
    let mut n = 0;
    let mut notices = Vec::new();
    let runs = [
        Trigger::Schedule,
        Trigger::Watchdog,
        Trigger::Watchdog,
        Trigger::Watchdog,
        Trigger::Schedule,
        Trigger::Schedule,
    ];
    for (i, trigger) in runs.iter().enumerate() {
        let obs: Vec<_> = observe(&cfg, &report("sweep", *trigger, false))
            .into_iter()
            .filter(|o| o.kind == SubjectKind::Suite)
            .collect();
        let adv = advance(
            &states,
            &obs,
            t0 + TimeDelta::minutes(15 * i as i64),
            &mut || {
                n += 1;
                format!("inc-{n}")
            },
        );
        for e in adv.events {
            if let Some(notice) = e.notice {
                notices.push((notice, i));
            }
        }
        for s in adv.states {
            states.insert(s.subject.clone(), s);
        }
    }
    assert_eq!(notices, vec![(Notice::Firing, 1), (Notice::Resolved, 4)]);
}

#[test]
fn run_problems_open_no_source_incident_whatever_a_source_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    // Sources named like the run's own problems.
    std::fs::write(
        &path,
        "sources:\n  suite: { type: sqlite, path: a.db }\n  schedule: { type: sqlite, path: b.db }\n\
         suites:\n  sweep: { select: \"true\", schedule: \"*/15 * * * *\" }\n\
         invariants:\n  - id: A-1\n    title: a\n    probe: { source: suite, sql: \"SELECT 1 AS n\" }\n    fail_when: row.n == 0.0\n",
    )
    .unwrap();
    let cfg = invar_config::load(&path).unwrap();
    let sources = |r: &RunReport| -> Vec<(String, Signal)> {
        observe(&cfg, r)
            .into_iter()
            .filter(|o| o.kind == SubjectKind::Source)
            .map(|o| (o.subject, o.signal))
            .collect()
    };
    let mut r = report("sweep", Trigger::Api, false);
    r.set_results(
        vec![],
        vec![invar_core::RunProblem::select(
            "`select` failed: no such field",
        )],
        invar_core::FailOn::Fail,
    );
    assert_eq!(
        sources(&r),
        vec![],
        "a failed select is not source `suite` down"
    );
    let mut w = report("sweep", Trigger::Watchdog, false);
    w.set_results(
        vec![],
        vec![invar_core::RunProblem::overdue("not recorded within 2m")],
        invar_core::FailOn::Fail,
    );
    assert_eq!(sources(&w), vec![]);
    // The wire form keeps `{source, error}` and adds `kind` for the run's own problems.
    let j = serde_json::to_value(&r.sources_unavailable).unwrap();
    assert_eq!(
        j,
        serde_json::json!([{"source": "suite", "error": "`select` failed: no such field", "kind": "select"}])
    );
    let down = invar_core::RunProblem::source("suite", "unable to open database file");
    assert_eq!(
        serde_json::to_value(&down).unwrap(),
        serde_json::json!({"source": "suite", "error": "unable to open database file"})
    );
    let mut d = report("sweep", Trigger::Api, false);
    d.set_results(vec![], vec![down], invar_core::FailOn::Fail);
    assert_eq!(sources(&d), vec![("source:suite".to_string(), Signal::Red)]);
}
