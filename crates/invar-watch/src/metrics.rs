//! `/metrics`: the [`StatusSnapshot`] in the Prometheus text exposition format 0.0.4.
//!
//! A pure rendering, so the exact lines are unit-tested and `promtool check metrics` lints a
//! realistic one (`tests/promtool.rs`). Every family has `# HELP` and `# TYPE`; families with
//! no sample are left out. The families (all gauges: nothing here is a `_total` counter, see
//! below):
//!
//! | family | labels | value |
//! |---|---|---|
//! | `invar_build_info` | `version` | 1 |
//! | `invar_store_info` | `backend` (`sqlite`, `postgres`) | 1 |
//! | `invar_invariant_outcome` | `id`, `severity`, `outcome` | one-hot over `pass`, `warn`, `fail`, `skip`, `error`; all 0 for an invariant never run |
//! | `invar_invariant_incident_firing` | `id`, `severity` | 1 while an incident is open, else 0 |
//! | `invar_invariant_violations` | `id`, `severity` | violations in the latest result |
//! | `invar_invariant_last_run_timestamp_seconds` | `id`, `severity` | Unix time of the latest result (absent if never run) |
//! | `invar_invariant_last_change_timestamp_seconds` | `id`, `severity` | Unix time the outcome last changed (absent if never run) |
//! | `invar_invariant_silenced` | `id`, `severity` | 1 while a silence holds back its notices, else 0 |
//! | `invar_invariant_silenced_until_timestamp_seconds` | `id`, `severity`, `silence` | Unix time that silence ends (absent when none holds it) |
//! | `invar_suite_last_run_start_timestamp_seconds` | `suite` | Unix time the latest run started (absent if never run) |
//! | `invar_suite_last_run_duration_seconds` | `suite` | how long the latest run took |
//! | `invar_suite_last_run_status` | `suite`, `status` | one-hot over `pass`, `warn`, `fail`, `error` |
//! | `invar_suite_running` | `suite` | 1 while a run is in progress in this process |
//! | `invar_suite_overdue` | `suite` | 1 when a scheduled tick passed with no run recorded (the dead-man's switch) |
//! | `invar_suite_next_run_timestamp_seconds` | `suite` | Unix time of the next tick (absent without a schedule) |
//! | `invar_alert_outbox_delivered` | | delivered alerts the outbox still keeps |
//! | `invar_alert_outbox_failed_attempts` | | failed delivery attempts the outbox still keeps, each retry counted |
//! | `invar_alert_deliveries_pending` | | alerts waiting for a first or next attempt |
//!
//! The alert families count rows of the store's outbox, which retention prunes: they can go
//! down, so they are gauges named for what they count. As `_total` counters a prune read as a
//! counter reset to `rate()`, and every replica would have reported the store's count as its
//! own. The snapshot holds no secret, and nothing here adds one.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::status::{IncidentStatus, InvariantStatus, StatusSnapshot};

/// The outcomes `invar_invariant_outcome` is one-hot over, in this order.
pub const OUTCOMES: [&str; 5] = ["pass", "warn", "fail", "skip", "error"];
/// The statuses `invar_suite_last_run_status` is one-hot over, in this order.
pub const RUN_STATUSES: [&str; 4] = ["pass", "warn", "fail", "error"];

/// The snapshot as Prometheus text (format 0.0.4); serve it with
/// `Content-Type: text/plain; version=0.0.4; charset=utf-8`.
pub fn render(s: &StatusSnapshot) -> String {
    let mut out = String::new();

    family(
        &mut out,
        "invar_build_info",
        "gauge",
        "The running invar's version; always 1.",
        vec![sample(&[("version", &s.version)], "1".into())],
    );
    family(
        &mut out,
        "invar_store_info",
        "gauge",
        "The history store backend (sqlite or postgres); always 1.",
        vec![sample(&[("backend", &s.store)], "1".into())],
    );
    invariant_families(&mut out, &s.invariants);
    suite_families(&mut out, &s.suites);
    delivery_families(&mut out, &s.deliveries);
    out
}

/// The `invar_invariant_*` families.
fn invariant_families(out: &mut String, inv: &[InvariantStatus]) {
    family(
        out,
        "invar_invariant_outcome",
        "gauge",
        "The invariant's latest outcome, one-hot over pass, warn, fail, skip and error; all 0 if it never ran.",
        inv.iter()
            .flat_map(|i| {
                OUTCOMES.iter().map(move |o| {
                    let on = i.last_outcome.as_deref() == Some(*o);
                    sample(
                        &[("id", &i.id), ("severity", &i.severity), ("outcome", o)],
                        flag(on),
                    )
                })
            })
            .collect(),
    );
    family(
        out,
        "invar_invariant_incident_firing",
        "gauge",
        "1 while the invariant has an open incident, else 0.",
        inv.iter()
            .map(|i| per_invariant(i, flag(i.incident == IncidentStatus::Firing)))
            .collect(),
    );
    family(
        out,
        "invar_invariant_violations",
        "gauge",
        "Violations in the invariant's latest result.",
        inv.iter()
            .map(|i| per_invariant(i, i.violations.to_string()))
            .collect(),
    );
    family(
        out,
        "invar_invariant_last_run_timestamp_seconds",
        "gauge",
        "Unix time of the invariant's latest result.",
        inv.iter()
            .filter_map(|i| {
                let at = i.last_run_at?;
                Some(per_invariant(i, timestamp(at)))
            })
            .collect(),
    );
    family(
        out,
        "invar_invariant_last_change_timestamp_seconds",
        "gauge",
        "Unix time the invariant's outcome last changed (the first run of the current streak).",
        inv.iter()
            .filter_map(|i| {
                let at = i.last_change?;
                Some(per_invariant(i, timestamp(at)))
            })
            .collect(),
    );
    family(
        out,
        "invar_invariant_silenced",
        "gauge",
        "1 while a silence holds back the invariant's notices, else 0.",
        inv.iter()
            .map(|i| per_invariant(i, flag(i.silenced.is_some())))
            .collect(),
    );
    family(
        out,
        "invar_invariant_silenced_until_timestamp_seconds",
        "gauge",
        "Unix time the silence holding the invariant's notices ends; the silence label names it.",
        inv.iter()
            .filter_map(|i| {
                let s = i.silenced.as_ref()?;
                Some(sample(
                    &[("id", &i.id), ("severity", &i.severity), ("silence", &s.id)],
                    timestamp(s.until),
                ))
            })
            .collect(),
    );
}

/// The `invar_suite_*` families.
fn suite_families(out: &mut String, suites: &[crate::status::SuiteStatus]) {
    family(
        out,
        "invar_suite_last_run_start_timestamp_seconds",
        "gauge",
        "Unix time the suite's latest recorded run started (any trigger, any replica).",
        suites
            .iter()
            .filter_map(|su| {
                let run = su.last_run.as_ref()?;
                Some(sample(&[("suite", &su.name)], timestamp(run.started_at)))
            })
            .collect(),
    );
    family(
        out,
        "invar_suite_last_run_duration_seconds",
        "gauge",
        "How long the suite's latest recorded run took.",
        suites
            .iter()
            .filter_map(|su| {
                let run = su.last_run.as_ref()?;
                Some(sample(
                    &[("suite", &su.name)],
                    number(run.duration_ms as f64 / 1000.0),
                ))
            })
            .collect(),
    );
    family(
        out,
        "invar_suite_last_run_status",
        "gauge",
        "The status of the suite's latest recorded run, one-hot over pass, warn, fail and error.",
        suites
            .iter()
            .filter_map(|su| su.last_run.as_ref().map(|run| (su, run)))
            .flat_map(|(su, run)| {
                RUN_STATUSES.iter().map(move |st| {
                    sample(
                        &[("suite", &su.name), ("status", st)],
                        flag(run.status == *st),
                    )
                })
            })
            .collect(),
    );
    family(
        out,
        "invar_suite_running",
        "gauge",
        "1 while a run of the suite is in progress in this process, else 0.",
        suites
            .iter()
            .map(|su| sample(&[("suite", &su.name)], flag(su.running)))
            .collect(),
    );
    family(
        out,
        "invar_suite_overdue",
        "gauge",
        "1 when a scheduled tick of the suite passed more than overdue_after ago with no run recorded, else 0.",
        suites
            .iter()
            .map(|su| sample(&[("suite", &su.name)], flag(su.overdue)))
            .collect(),
    );
    family(
        out,
        "invar_suite_next_run_timestamp_seconds",
        "gauge",
        "Unix time of the suite's next scheduled tick.",
        suites
            .iter()
            .filter_map(|su| {
                let next = su.next_run?;
                Some(sample(&[("suite", &su.name)], timestamp(next)))
            })
            .collect(),
    );
}

/// The `invar_alert_*` families.
fn delivery_families(out: &mut String, d: &crate::status::DeliveryCounts) {
    family(
        out,
        "invar_alert_outbox_delivered",
        "gauge",
        "Delivered alerts the store's outbox still keeps (retention prunes them, so this can go down).",
        vec![sample(&[], d.delivered.to_string())],
    );
    family(
        out,
        "invar_alert_outbox_failed_attempts",
        "gauge",
        "Failed alert delivery attempts the store's outbox still keeps, each retry counted (retention prunes them).",
        vec![sample(&[], d.failed_attempts.to_string())],
    );
    family(
        out,
        "invar_alert_deliveries_pending",
        "gauge",
        "Alerts waiting for a first or next delivery attempt.",
        vec![sample(&[], d.pending.to_string())],
    );
}

/// One sample line without its metric name: `{labels} value`.
struct Sample {
    labels: String,
    value: String,
}

/// A sample labelled with the invariant's id and severity.
fn per_invariant(i: &InvariantStatus, value: String) -> Sample {
    sample(&[("id", &i.id), ("severity", &i.severity)], value)
}

fn sample(labels: &[(&str, &str)], value: String) -> Sample {
    let labels = if labels.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        format!("{{{}}}", pairs.join(","))
    };
    Sample { labels, value }
}

/// Writes `# HELP`, `# TYPE` and the samples of one family; nothing when it has no sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<Sample>) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for s in samples {
        let _ = writeln!(out, "{name}{} {}", s.labels, s.value);
    }
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// Unix seconds, with the milliseconds as a fraction when there are any.
fn timestamp(at: DateTime<Utc>) -> String {
    number(at.timestamp_millis() as f64 / 1000.0)
}

/// Rust's `Display` for `f64` is the shortest exact form and never uses an exponent, which is
/// what the text format wants (`1.5`, `1714564800`).
fn number(v: f64) -> String {
    v.to_string()
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `# HELP` text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::status::{DeliveryCounts, InvariantStatus, LastRun, SuiteStatus};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, h, m, s).unwrap()
    }

    fn invariant(id: &str, severity: &str, outcome: Option<&str>) -> InvariantStatus {
        InvariantStatus {
            id: id.into(),
            title: format!("{id} holds"),
            severity: severity.into(),
            incident: IncidentStatus::Ok,
            incident_since: None,
            last_outcome: outcome.map(Into::into),
            last_reason: None,
            last_run_at: outcome.map(|_| at(12, 0, 0)),
            last_change: outcome.map(|_| at(11, 0, 0)),
            violations: 0,
            silenced: None,
            recent: vec![],
            trend: Default::default(),
        }
    }

    fn small() -> StatusSnapshot {
        let mut orders = invariant("orders_paid", "critical", Some("fail"));
        orders.incident = IncidentStatus::Firing;
        orders.violations = 3;
        orders.silenced = Some(invar_core::SilencedBy {
            id: "sil-1".into(),
            until: at(14, 0, 0),
            reason: "vacuum".into(),
        });
        StatusSnapshot {
            generated_at: at(12, 30, 0),
            version: "0.1.0 (abc1234)".into(),
            store: "sqlite".into(),
            suites: vec![
                SuiteStatus {
                    name: "nightly".into(),
                    schedule: Some("0 3 * * *".into()),
                    timezone: "Europe/Berlin".into(),
                    next_run: Some(at(1, 0, 0) + chrono::Duration::days(1)),
                    last_run: Some(LastRun {
                        run_id: "r1".into(),
                        trigger: "schedule".into(),
                        started_at: Utc.timestamp_millis_opt(1_714_532_400_250).unwrap(),
                        duration_ms: 1500,
                        status: "fail".into(),
                        lock_skipped: false,
                        skipped_budget: 0,
                    }),
                    running: false,
                    overdue: true,
                    overdue_since: Some(at(1, 0, 0)),
                },
                SuiteStatus {
                    name: "gate".into(),
                    schedule: None,
                    timezone: "UTC".into(),
                    next_run: None,
                    last_run: None,
                    running: true,
                    overdue: false,
                    overdue_since: None,
                },
            ],
            invariants: vec![orders, invariant("new_one", "minor", None)],
            deliveries: DeliveryCounts {
                delivered: 7,
                failed_attempts: 2,
                pending: 1,
            },
        }
    }

    #[test]
    fn renders_every_family_with_exact_lines() {
        let text = render(&small());
        let expected = r#"# HELP invar_build_info The running invar's version; always 1.
# TYPE invar_build_info gauge
invar_build_info{version="0.1.0 (abc1234)"} 1
# HELP invar_store_info The history store backend (sqlite or postgres); always 1.
# TYPE invar_store_info gauge
invar_store_info{backend="sqlite"} 1
# HELP invar_invariant_outcome The invariant's latest outcome, one-hot over pass, warn, fail, skip and error; all 0 if it never ran.
# TYPE invar_invariant_outcome gauge
invar_invariant_outcome{id="orders_paid",severity="critical",outcome="pass"} 0
invar_invariant_outcome{id="orders_paid",severity="critical",outcome="warn"} 0
invar_invariant_outcome{id="orders_paid",severity="critical",outcome="fail"} 1
invar_invariant_outcome{id="orders_paid",severity="critical",outcome="skip"} 0
invar_invariant_outcome{id="orders_paid",severity="critical",outcome="error"} 0
invar_invariant_outcome{id="new_one",severity="minor",outcome="pass"} 0
invar_invariant_outcome{id="new_one",severity="minor",outcome="warn"} 0
invar_invariant_outcome{id="new_one",severity="minor",outcome="fail"} 0
invar_invariant_outcome{id="new_one",severity="minor",outcome="skip"} 0
invar_invariant_outcome{id="new_one",severity="minor",outcome="error"} 0
# HELP invar_invariant_incident_firing 1 while the invariant has an open incident, else 0.
# TYPE invar_invariant_incident_firing gauge
invar_invariant_incident_firing{id="orders_paid",severity="critical"} 1
invar_invariant_incident_firing{id="new_one",severity="minor"} 0
# HELP invar_invariant_violations Violations in the invariant's latest result.
# TYPE invar_invariant_violations gauge
invar_invariant_violations{id="orders_paid",severity="critical"} 3
invar_invariant_violations{id="new_one",severity="minor"} 0
# HELP invar_invariant_last_run_timestamp_seconds Unix time of the invariant's latest result.
# TYPE invar_invariant_last_run_timestamp_seconds gauge
invar_invariant_last_run_timestamp_seconds{id="orders_paid",severity="critical"} 1714564800
# HELP invar_invariant_last_change_timestamp_seconds Unix time the invariant's outcome last changed (the first run of the current streak).
# TYPE invar_invariant_last_change_timestamp_seconds gauge
invar_invariant_last_change_timestamp_seconds{id="orders_paid",severity="critical"} 1714561200
# HELP invar_invariant_silenced 1 while a silence holds back the invariant's notices, else 0.
# TYPE invar_invariant_silenced gauge
invar_invariant_silenced{id="orders_paid",severity="critical"} 1
invar_invariant_silenced{id="new_one",severity="minor"} 0
# HELP invar_invariant_silenced_until_timestamp_seconds Unix time the silence holding the invariant's notices ends; the silence label names it.
# TYPE invar_invariant_silenced_until_timestamp_seconds gauge
invar_invariant_silenced_until_timestamp_seconds{id="orders_paid",severity="critical",silence="sil-1"} 1714572000
# HELP invar_suite_last_run_start_timestamp_seconds Unix time the suite's latest recorded run started (any trigger, any replica).
# TYPE invar_suite_last_run_start_timestamp_seconds gauge
invar_suite_last_run_start_timestamp_seconds{suite="nightly"} 1714532400.25
# HELP invar_suite_last_run_duration_seconds How long the suite's latest recorded run took.
# TYPE invar_suite_last_run_duration_seconds gauge
invar_suite_last_run_duration_seconds{suite="nightly"} 1.5
# HELP invar_suite_last_run_status The status of the suite's latest recorded run, one-hot over pass, warn, fail and error.
# TYPE invar_suite_last_run_status gauge
invar_suite_last_run_status{suite="nightly",status="pass"} 0
invar_suite_last_run_status{suite="nightly",status="warn"} 0
invar_suite_last_run_status{suite="nightly",status="fail"} 1
invar_suite_last_run_status{suite="nightly",status="error"} 0
# HELP invar_suite_running 1 while a run of the suite is in progress in this process, else 0.
# TYPE invar_suite_running gauge
invar_suite_running{suite="nightly"} 0
invar_suite_running{suite="gate"} 1
# HELP invar_suite_overdue 1 when a scheduled tick of the suite passed more than overdue_after ago with no run recorded, else 0.
# TYPE invar_suite_overdue gauge
invar_suite_overdue{suite="nightly"} 1
invar_suite_overdue{suite="gate"} 0
# HELP invar_suite_next_run_timestamp_seconds Unix time of the suite's next scheduled tick.
# TYPE invar_suite_next_run_timestamp_seconds gauge
invar_suite_next_run_timestamp_seconds{suite="nightly"} 1714611600
# HELP invar_alert_outbox_delivered Delivered alerts the store's outbox still keeps (retention prunes them, so this can go down).
# TYPE invar_alert_outbox_delivered gauge
invar_alert_outbox_delivered 7
# HELP invar_alert_outbox_failed_attempts Failed alert delivery attempts the store's outbox still keeps, each retry counted (retention prunes them).
# TYPE invar_alert_outbox_failed_attempts gauge
invar_alert_outbox_failed_attempts 2
# HELP invar_alert_deliveries_pending Alerts waiting for a first or next delivery attempt.
# TYPE invar_alert_deliveries_pending gauge
invar_alert_deliveries_pending 1
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = small();
        s.invariants[0].id = "a\\b\"c\nd".into();
        s.version = "1.0 \"dev\"".into();
        let text = render(&s);
        assert!(text.contains(r#"invar_build_info{version="1.0 \"dev\""} 1"#));
        assert!(
            text.contains(
                r#"invar_invariant_incident_firing{id="a\\b\"c\nd",severity="critical"} 1"#
            )
        );
        // Every sample stays on one line: a raw newline would start a bogus sample.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("invar_"),
                "stray line: {line:?}"
            );
        }
    }

    #[test]
    fn one_hot_outcome_has_exactly_one_set_per_run_invariant() {
        let mut s = small();
        s.invariants = OUTCOMES
            .iter()
            .map(|o| invariant(&format!("inv_{o}"), "major", Some(o)))
            .collect();
        let text = render(&s);
        for o in OUTCOMES {
            let ones: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("invar_invariant_outcome{{id=\"inv_{o}\"")))
                .filter(|l| l.ends_with(" 1"))
                .collect();
            assert_eq!(
                ones,
                vec![format!(
                    "invar_invariant_outcome{{id=\"inv_{o}\",severity=\"major\",outcome=\"{o}\"}} 1"
                )]
            );
        }
    }

    #[test]
    fn families_without_samples_are_left_out() {
        let mut s = small();
        s.suites.clear();
        s.invariants.clear();
        let text = render(&s);
        assert!(!text.contains("invar_suite_"));
        assert!(!text.contains("invar_invariant_"));
        assert!(text.contains("invar_build_info{"));
        assert!(text.contains("invar_alert_outbox_delivered 7\n"));
    }
}
