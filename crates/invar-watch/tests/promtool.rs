//! `/metrics` passes Prometheus' own linter: a realistic snapshot (every outcome, firing and
//! ok incidents, suites with and without a schedule, one overdue, one running) is rendered and
//! fed to `promtool check metrics`, which must exit 0 and complain about nothing.
//!
//! promtool comes from Debian's `prometheus` package (`scripts/ensure-services.sh` installs
//! it). Missing under `CI`: the test fails; on a developer's machine it says loudly that it
//! skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, Duration, TimeZone, Utc};
use invar_watch::metrics;
use invar_watch::status::{
    DeliveryCounts, IncidentStatus, InvariantStatus, LastRun, RECENT_RUNS, RecentOutcome,
    StatusSnapshot, SuiteStatus,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 11, 4, 9, 41, 27).unwrap()
}

fn invariant(id: &str, severity: &str, outcome: Option<&str>, firing: bool) -> InvariantStatus {
    let recent = match outcome {
        None => vec![],
        Some(o) => (0..RECENT_RUNS as i64)
            .map(|k| RecentOutcome {
                run_id: format!("run-{k}"),
                at: now() - Duration::minutes(15 * (RECENT_RUNS as i64 - k)),
                outcome: if k < 12 { "pass" } else { o }.to_string(),
            })
            .collect(),
    };
    InvariantStatus {
        id: id.into(),
        title: format!("{} holds", id.replace('_', " ")),
        severity: severity.into(),
        incident: if firing {
            IncidentStatus::Firing
        } else {
            IncidentStatus::Ok
        },
        incident_since: firing.then(|| now() - Duration::minutes(95)),
        last_outcome: outcome.map(Into::into),
        last_reason: outcome
            .filter(|o| *o != "pass")
            .map(|o| format!("{o}: see the run report")),
        last_run_at: outcome.map(|_| now() - Duration::seconds(87)),
        last_change: outcome.map(|_| Utc.timestamp_millis_opt(1_730_706_543_210).unwrap()),
        violations: if outcome == Some("fail") { 42 } else { 0 },
        silenced: None,
        recent,
        trend: Default::default(),
    }
}

fn realistic() -> StatusSnapshot {
    let last_run = |status: &str, trigger: &str, ms: u64| LastRun {
        run_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        trigger: trigger.into(),
        started_at: now() - Duration::milliseconds(87_250),
        duration_ms: ms,
        status: status.into(),
        lock_skipped: false,
        skipped_budget: 0,
    };
    StatusSnapshot {
        generated_at: now(),
        version: "0.1.0 (abc1234)".into(),
        store: "postgres".into(),
        suites: vec![
            SuiteStatus {
                name: "gate".into(),
                schedule: None,
                timezone: "UTC".into(),
                next_run: None,
                last_run: Some(last_run("pass", "cli", 412)),
                running: false,
                overdue: false,
                overdue_since: None,
            },
            SuiteStatus {
                name: "sweep".into(),
                schedule: Some("*/15 * * * *".into()),
                timezone: "UTC".into(),
                next_run: Some(now() + Duration::seconds(213)),
                last_run: Some(last_run("fail", "schedule", 12_345)),
                running: true,
                overdue: false,
                overdue_since: None,
            },
            SuiteStatus {
                name: "weekly".into(),
                schedule: Some("0 3 * * 1".into()),
                timezone: "Europe/Berlin".into(),
                next_run: Some(now() + Duration::days(7)),
                last_run: Some(LastRun {
                    skipped_budget: 3,
                    ..last_run("warn", "schedule", 1_800_000)
                }),
                running: false,
                overdue: true,
                overdue_since: Some(now() - Duration::hours(7)),
            },
            SuiteStatus {
                name: "monthly".into(),
                schedule: Some("0 4 1 * *".into()),
                timezone: "America/New_York".into(),
                next_run: Some(now() + Duration::days(27)),
                last_run: None,
                running: false,
                overdue: false,
                overdue_since: None,
            },
        ],
        invariants: vec![
            invariant(
                "orders_paid_have_ledger_entries",
                "critical",
                Some("fail"),
                true,
            ),
            invariant("no_orphan_containers", "major", Some("fail"), false),
            invariant("redis_jobs_match_sql", "critical", Some("error"), true),
            invariant("queue_depth_bounded", "major", Some("warn"), false),
            invariant("migrations_applied", "critical", Some("pass"), false),
            invariant("terminal_stays_terminal", "major", Some("pass"), false),
            invariant("daily_volume_plausible", "minor", Some("skip"), false),
            invariant(
                "weird \"id\" with \\ and\nnewline",
                "minor",
                Some("pass"),
                false,
            ),
            invariant("added_yesterday", "minor", None, false),
        ],
        deliveries: DeliveryCounts {
            delivered: 118,
            failed_attempts: 5,
            pending: 2,
        },
    }
}

#[test]
fn promtool_check_metrics_finds_nothing_to_complain_about() {
    let text = metrics::render(&realistic());
    let Some((clean, said)) = invar_testkit::promtool_check_metrics(&text) else {
        return;
    };
    assert!(
        clean,
        "promtool check metrics:\n{said}\n--- the metrics ---\n{text}"
    );

    // The realistic snapshot reaches every family, so promtool linted all of them.
    for family in [
        "invar_build_info",
        "invar_store_info",
        "invar_invariant_outcome",
        "invar_invariant_incident_firing",
        "invar_invariant_violations",
        "invar_invariant_last_run_timestamp_seconds",
        "invar_invariant_last_change_timestamp_seconds",
        "invar_suite_last_run_start_timestamp_seconds",
        "invar_suite_last_run_duration_seconds",
        "invar_suite_last_run_status",
        "invar_suite_running",
        "invar_suite_overdue",
        "invar_suite_next_run_timestamp_seconds",
        "invar_alert_outbox_delivered",
        "invar_alert_outbox_failed_attempts",
        "invar_alert_deliveries_pending",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    assert!(text.contains("invar_suite_overdue{suite=\"weekly\"} 1\n"));
    assert!(text.contains(
        "invar_invariant_incident_firing{id=\"weird \\\"id\\\" with \\\\ and\\nnewline\",severity=\"minor\"} 0\n"
    ));
}

/// promtool is not a rubber stamp: the same check rejects a counter without `_total` (so the
/// test above would catch a lint regression rather than pass on anything).
#[test]
fn promtool_rejects_a_badly_named_counter() {
    let bad = "# HELP invar_alerts Alerts.\n# TYPE invar_alerts counter\ninvar_alerts 1\n";
    let Some((clean, said)) = invar_testkit::promtool_check_metrics(bad) else {
        return;
    };
    assert!(!clean, "promtool accepted a counter without _total: {said}");
}
