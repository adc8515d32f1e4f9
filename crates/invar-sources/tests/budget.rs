//! The suite's `budget`: checks that have not started when it runs out are `skip` with a
//! `budget:` reason and counted in `skipped_budget`; checks already running finish.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::Outcome;
use invar_sources::{Engine, RunOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ten one-second commands (distinct by their env, so they are ten probes): commands share a
/// bound of 8, so two of them wait for a permit — past the 300ms budget.
fn config(budget: &str) -> String {
    let mut y = format!("suites:\n  quick: {{ budget: {budget} }}\ninvariants:\n");
    for i in 1..=10 {
        y.push_str(&format!(
            "  - id: C-{i:02}\n    title: slow check {i}\n    probe: {{ command: {{ run: [sleep, \"1\"], env: {{ N: \"{i}\" }}, parse: text }} }}\n    fail_when: row.exit_code != 0\n"
        ));
    }
    y
}

#[test]
fn checks_not_started_when_the_budget_is_spent_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(&path, config("300ms")).unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(Arc::new(cfg));
    let t0 = Instant::now();
    let report = rt
        .block_on(engine.run(&RunOptions {
            suite: "quick".into(),
            ..RunOptions::default()
        }))
        .report;
    let took = t0.elapsed();

    let skipped: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip)
        .collect();
    let passed = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Pass)
        .count();
    // The eight that started before the deadline ran to the end (past the deadline).
    assert_eq!(passed, 8, "{report:#?}");
    assert_eq!(skipped.len(), 2, "{report:#?}");
    for r in &skipped {
        let reason = r.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("budget: the suite's 300ms budget was spent"),
            "{reason}"
        );
    }
    assert_eq!(report.skipped_budget, 2);
    assert_eq!(report.counts.skip, 2);
    assert_eq!(report.counts.pass, 8);
    // The skipped ones never ran: one round of commands, not two.
    assert!(took < Duration::from_millis(1900), "took {took:?}");
}

#[test]
fn a_budget_not_spent_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    // A generous budget never skips: the same ten checks all pass.
    std::fs::write(
        &path,
        config("1m").replace("sleep, \"1\"", "sleep, \"0.05\""),
    )
    .unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(Engine::new(Arc::new(cfg)).run(&RunOptions {
            suite: "quick".into(),
            ..RunOptions::default()
        }))
        .report;
    assert_eq!(report.counts.pass, 10, "{report:#?}");
    assert_eq!(report.skipped_budget, 0);
}
