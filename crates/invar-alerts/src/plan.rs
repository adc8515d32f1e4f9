//! Which sink gets which notice — pure, run inside the recording transaction.
//!
//! Routing rules:
//! - **firing** (an incident opened, or a held one was released) and **flapping** go to every
//!   sink that admits the subject: named in the invariant's `alerts:` (or, when it names none,
//!   every sink) and at or above the sink's `min_severity`. A source incident takes the
//!   highest severity of the invariants that read that source in this run.
//! - **resolved** goes to exactly the sinks that were sent the firing (even if their filters
//!   changed since), unless a sink says `send_resolved: false`.
//! - **reminder**: while an incident stays open and its firing was released, a sink with
//!   `repeat: D` gets a reminder once D has passed since its last firing or reminder. Held
//!   incidents (their source is down) get none.
//! - **refresh** (`alertmanager`): a reminder every `refresh`, also while held — Alertmanager
//!   resolves an alert nobody re-posts, and the incident is still open. Stored as a
//!   `reminder` row, so at most one per sink and incident per `refresh`.
//! - Sinks that keep their own incident state keyed by invar's incident (`alertmanager`,
//!   `pagerduty`) get no flapping notice: it has no incident to resolve, and their firing and
//!   resolve already say what happened.
//!
//! Idempotency keys are stable per incident, notice and sink (`INC:firing:SINK`), and per run
//! for reminders and flapping notices, so a notice is queued once however often it is
//! planned.

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::incident::{
    EventKind, IncidentEvent, Notice, Observation, SOURCE_PREFIX, SUITE_PREFIX, SubjectKind,
    advance,
};
use invar_core::{AlertSink, Config, InvariantResult, RunReport, Severity};
use invar_store::{NewDelivery, Plan, PlanInput, SubjectInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Forensic violations carried in a notice (the total is always exact).
pub const FORENSIC_LINES: usize = 5;

/// The run a notice comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    pub run_id: String,
    pub suite: String,
    pub trigger: invar_core::Trigger,
    pub started_at: DateTime<Utc>,
}

/// What a notice says, stored in the outbox and rendered per sink at delivery time. It holds
/// no secret: source errors in it were redacted by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    /// `firing`, `resolved`, `reminder` or `flapping`.
    pub notice: String,
    /// `firing` or `resolved` (a reminder and a flapping notice are `firing`).
    pub status: String,
    /// `invariant` or `source`.
    pub subject_kind: String,
    /// The invariant id, or the source name.
    pub subject: String,
    pub incident_id: Option<String>,
    pub title: String,
    pub severity: String,
    /// One line: the verdict's reason, the source's error, or what happened.
    pub summary: String,
    pub runbook: Option<String>,
    pub owner: Option<String>,
    pub violations_total: u64,
    /// The first few violations (observed state).
    pub violations: Vec<serde_json::Value>,
    pub measured: serde_json::Map<String, serde_json::Value>,
    pub run: RunRef,
    pub opened_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The last red before this incident opened ("last red 42m ago").
    pub last_red_at: Option<DateTime<Utc>>,
    /// For flapping: opens and resolves within the last 24 h.
    pub transitions: Option<usize>,
    /// The invariant's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The suites that select the invariant, in config order (the run's suite when none
    /// does; the suite itself for an overdue suite; none for a source): stable for the
    /// incident's life, unlike the run's suite.
    #[serde(default)]
    pub suites: Vec<String>,
}

/// How often a sink is re-sent an open incident: the receiver's refresh, else `repeat`.
fn reminder_interval(sink: &AlertSink) -> Option<Duration> {
    sink.kind.refresh().or(sink.repeat)
}

/// Advances incidents for `observations` from the stored states and routes every notice.
pub fn plan(
    config: &Config,
    report: &RunReport,
    observations: &[Observation],
    input: &PlanInput,
    now: DateTime<Utc>,
) -> Plan {
    let mut n = 0usize;
    let mut new_id = || {
        n += 1;
        format!("inc-{}-{n}", report.run_id)
    };
    let adv = advance(&input.states, observations, now, &mut new_id);
    let run = RunRef {
        run_id: report.run_id.clone(),
        suite: report.suite.clone(),
        trigger: report.trigger,
        started_at: now,
    };
    let results: BTreeMap<&str, &InvariantResult> =
        report.results.iter().map(|r| (r.id.as_str(), r)).collect();
    let info = |subject: &str| subject_info(config, report, observations, &results, subject);

    let mut out = Plan::default();
    for e in &adv.events {
        let (title, severity) = info(&e.subject);
        out.subjects.insert(
            e.subject.clone(),
            SubjectInfo {
                title: title.clone(),
                severity: severity.as_str().to_string(),
            },
        );
        let Some(notice) = e.notice else { continue };
        let payload = payload(config, report, &results, e, notice, &run, &title, severity);
        let sinks: Vec<&AlertSink> = match notice {
            Notice::Firing => admitting(config, &e.subject, severity),
            Notice::Flapping => admitting(config, &e.subject, severity)
                .into_iter()
                .filter(|s| !s.kind.mirrors_incidents())
                .collect(),
            Notice::Resolved => {
                let sent = e.incident_id.as_ref().and_then(|id| input.notified.get(id));
                config
                    .alerts
                    .iter()
                    .filter(|s| s.send_resolved && sent.is_some_and(|m| m.contains_key(&s.name)))
                    .collect()
            }
        };
        for sink in sinks {
            let key = match notice {
                Notice::Flapping => format!("{}:flapping:{}:{}", e.subject, sink.name, run.run_id),
                _ => format!(
                    "{}:{}:{}",
                    e.incident_id.as_deref().unwrap_or(&e.subject),
                    notice.as_str(),
                    sink.name
                ),
            };
            out.outbox
                .push(delivery(key, sink, notice.as_str(), e, &payload, now));
        }
    }

    // Reminders for incidents that stay open.
    for st in &adv.states {
        let Some(open) = &st.open else { continue };
        if !open.alerted || adv.events.iter().any(|e| e.subject == st.subject) {
            continue;
        }
        // Held by a source incident or a silence: no reminders (refreshes go on).
        let held = observations
            .iter()
            .find(|o| o.subject == st.subject)
            .is_some_and(|o| {
                !o.held_by.is_empty()
                    || o.sources.iter().any(|s| {
                        adv.states
                            .iter()
                            .any(|x| x.subject == format!("{SOURCE_PREFIX}{s}") && x.open.is_some())
                    })
            });
        let Some(sent) = input.notified.get(&open.id) else {
            continue;
        };
        for sink in &config.alerts {
            // A refresh keeps the receiver's incident open: it goes on while held.
            if held && sink.kind.refresh().is_none() {
                continue;
            }
            let (Some(repeat), Some(last)) = (reminder_interval(sink), sent.get(&sink.name)) else {
                continue;
            };
            let repeat = TimeDelta::from_std(repeat).unwrap_or(TimeDelta::MAX);
            if now - *last < repeat {
                continue;
            }
            let (title, severity) = info(&st.subject);
            let e = IncidentEvent {
                subject: st.subject.clone(),
                subject_kind: st.kind,
                kind: EventKind::Opened,
                incident_id: Some(open.id.clone()),
                at: now,
                last_red_at: open.last_red_at,
                opened_at: Some(open.opened_at),
                notice: Some(Notice::Firing),
                held_by: vec![],
                transitions: 0,
            };
            let mut p = payload(
                config,
                report,
                &results,
                &e,
                Notice::Firing,
                &run,
                &title,
                severity,
            );
            p.notice = "reminder".into();
            let key = format!("{}:reminder:{}:{}", open.id, sink.name, run.run_id);
            out.outbox
                .push(delivery(key, sink, "reminder", &e, &p, now));
        }
    }
    out.states = adv.states;
    out.events = adv.events;
    out
}

fn delivery(
    key: String,
    sink: &AlertSink,
    notice: &str,
    e: &IncidentEvent,
    payload: &AlertPayload,
    now: DateTime<Utc>,
) -> NewDelivery {
    NewDelivery {
        id: uuid::Uuid::now_v7().to_string(),
        idempotency_key: key,
        sink: sink.name.clone(),
        notice: notice.to_string(),
        incident_id: e.incident_id.clone(),
        subject: e.subject.clone(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        created_at: now,
    }
}

/// Sinks that admit a subject's notices.
fn admitting<'c>(config: &'c Config, subject: &str, severity: Severity) -> Vec<&'c AlertSink> {
    let named: &[String] = config
        .invariant(subject)
        .map(|i| i.alerts.as_slice())
        .unwrap_or(&[]);
    config
        .alerts
        .iter()
        .filter(|s| s.admits(severity, named))
        .collect()
}

/// Title and severity of a subject. A source takes the highest severity of the invariants
/// that read it in this run (major when none is known).
fn subject_info(
    config: &Config,
    report: &RunReport,
    observations: &[Observation],
    results: &BTreeMap<&str, &InvariantResult>,
    subject: &str,
) -> (String, Severity) {
    if let Some(name) = subject.strip_prefix(SOURCE_PREFIX) {
        let sev = observations
            .iter()
            .filter(|o| o.kind == SubjectKind::Invariant && o.sources.iter().any(|s| s == name))
            .filter_map(|o| config.invariant(&o.subject).map(|i| i.severity))
            .max()
            .unwrap_or(Severity::Major);
        let _ = report;
        return (format!("source `{name}` cannot be read"), sev);
    }
    if let Some(name) = subject.strip_prefix(SUITE_PREFIX) {
        // As severe as the most severe invariant the suite runs.
        let sev = config
            .suite(name)
            .map(|s| {
                config
                    .invariants
                    .iter()
                    .filter(|i| s.selects(i).unwrap_or(false))
                    .map(|i| i.severity)
                    .max()
                    .unwrap_or(Severity::Major)
            })
            .unwrap_or(Severity::Major);
        return (format!("scheduled suite `{name}` did not run on time"), sev);
    }
    if let Some(inv) = config.invariant(subject) {
        return (inv.title.clone(), inv.severity);
    }
    match results.get(subject) {
        Some(r) => (r.title.clone(), parse_severity(&r.severity)),
        None => (subject.to_string(), Severity::Major),
    }
}

fn parse_severity(s: &str) -> Severity {
    match s {
        "critical" => Severity::Critical,
        "minor" => Severity::Minor,
        _ => Severity::Major,
    }
}

#[allow(clippy::too_many_arguments)]
fn payload(
    config: &Config,
    report: &RunReport,
    results: &BTreeMap<&str, &InvariantResult>,
    e: &IncidentEvent,
    notice: Notice,
    run: &RunRef,
    title: &str,
    severity: Severity,
) -> AlertPayload {
    let source = e.subject.strip_prefix(SOURCE_PREFIX);
    let suite = e.subject.strip_prefix(SUITE_PREFIX);
    let result = results.get(e.subject.as_str()).copied();
    let inv = config.invariant(&e.subject);
    let summary = match (notice, source, result) {
        _ if suite.is_some() && notice == Notice::Resolved => format!(
            "suite `{}` runs on schedule again",
            suite.unwrap_or_default()
        ),
        _ if suite.is_some() => report
            .sources_unavailable
            .first()
            .map(|s| s.error.clone())
            .unwrap_or_else(|| format!("suite `{}` is overdue", suite.unwrap_or_default())),
        (Notice::Flapping, _, _) => format!(
            "{} changed state {} times in 24h: notices are held until it settles",
            e.subject, e.transitions
        ),
        (Notice::Resolved, Some(name), _) => format!("source `{name}` can be read again"),
        (Notice::Resolved, None, Some(r)) => match &r.reason {
            Some(reason) => format!("holds again ({}): {reason}", r.outcome.as_str()),
            None => format!("holds again ({})", r.outcome.as_str()),
        },
        (_, Some(name), _) => report
            .sources_unavailable
            .iter()
            .find(|s| s.source == name)
            .map(|s| format!("source `{name}` is unavailable: {}", s.error))
            .unwrap_or_else(|| format!("source `{name}` is unavailable")),
        (_, None, Some(r)) => {
            let n = r.violations_total;
            let what = match &r.reason {
                Some(reason) => reason.clone(),
                None => format!("{} failed", r.id),
            };
            if n > 0 {
                format!("{what} ({n} violation{})", if n == 1 { "" } else { "s" })
            } else {
                what
            }
        }
        _ => format!("{} is failing", e.subject),
    };
    let firing = notice != Notice::Resolved;
    let suites: Vec<String> = match (inv, suite) {
        (_, Some(name)) => vec![name.to_string()],
        (Some(i), None) => {
            let mut names: Vec<String> = config
                .suites
                .iter()
                .filter(|s| s.selects(i).unwrap_or(false))
                .map(|s| s.name.clone())
                .collect();
            if names.is_empty() {
                names.push(run.suite.clone());
            }
            names
        }
        (None, None) => Vec::new(),
    };
    AlertPayload {
        notice: notice.as_str().to_string(),
        status: if firing { "firing" } else { "resolved" }.to_string(),
        subject_kind: e.subject_kind.as_str().to_string(),
        subject: source.or(suite).unwrap_or(&e.subject).to_string(),
        incident_id: e.incident_id.clone(),
        title: title.to_string(),
        severity: severity.as_str().to_string(),
        summary,
        runbook: inv
            .and_then(|i| i.runbook.clone())
            .or_else(|| result.and_then(|r| r.runbook.clone())),
        owner: inv.and_then(|i| i.owner.clone()),
        violations_total: if firing {
            result.map_or(0, |r| r.violations_total)
        } else {
            0
        },
        violations: if firing {
            result
                .map(|r| r.violations.iter().take(FORENSIC_LINES).cloned().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        },
        measured: result.map(|r| r.measured.clone()).unwrap_or_default(),
        run: run.clone(),
        opened_at: e.opened_at.or(if firing { Some(e.at) } else { None }),
        resolved_at: (!firing).then_some(e.at),
        last_red_at: e.last_red_at,
        transitions: (notice == Notice::Flapping).then_some(e.transitions),
        tags: inv.map(|i| i.tags.clone()).unwrap_or_default(),
        suites,
    }
}
