//! What the watcher knows right now, in one plain snapshot: the status page and `/metrics`
//! are pure renderings of it, so both are tested without a server.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Everything `/` and `/metrics` show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusSnapshot {
    pub generated_at: DateTime<Utc>,
    /// `invar --version` text, e.g. `0.1.0 (abc1234)`.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// In config order.
    pub suites: Vec<SuiteStatus>,
    /// In config order.
    pub invariants: Vec<InvariantStatus>,
    pub deliveries: DeliveryCounts,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SuiteStatus {
    pub name: String,
    /// The 5-field cron expression; None for suites run only on demand.
    pub schedule: Option<String>,
    /// IANA zone (`UTC` when the suite names none).
    pub timezone: String,
    /// The next tick, None without a schedule.
    pub next_run: Option<DateTime<Utc>>,
    /// The most recent recorded run of this suite (any trigger, any replica).
    pub last_run: Option<LastRun>,
    /// A run of this suite is in progress in this process.
    pub running: bool,
    /// The dead-man's switch: a scheduled tick passed more than `overdue_after` ago and no run
    /// of it was recorded.
    pub overdue: bool,
    /// The tick that is overdue.
    pub overdue_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastRun {
    pub run_id: String,
    /// `cli`, `schedule` or `api`.
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `pass`, `warn`, `fail` or `error`.
    pub status: String,
    pub lock_skipped: bool,
    pub skipped_budget: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvariantStatus {
    pub id: String,
    pub title: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// `ok` (no open incident) or `firing` (an open incident).
    pub incident: IncidentStatus,
    /// When the open incident opened.
    pub incident_since: Option<DateTime<Utc>>,
    /// The latest recorded outcome: `pass`, `warn`, `fail`, `skip`, `error`; None if never run.
    pub last_outcome: Option<String>,
    pub last_reason: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// When the outcome last changed (the oldest run of the current streak).
    pub last_change: Option<DateTime<Utc>>,
    /// Violations in the latest result.
    pub violations: u64,
    /// The silence holding its notices now, if any.
    pub silenced: Option<invar_core::SilencedBy>,
    /// Recent outcomes, oldest first (at most [`RECENT_RUNS`]).
    pub recent: Vec<RecentOutcome>,
    /// Its main measure over the same runs, and its incident timeline.
    pub trend: Trend,
}

/// The status page's trend chart and incident timeline of one invariant.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Trend {
    /// The measure charted ([`main_measure`]); None when no recent run measured a number.
    pub measure: Option<String>,
    /// Its value in each of [`InvariantStatus::recent`] (aligned, oldest first); None where
    /// that run did not measure it.
    pub values: Vec<Option<f64>>,
    /// Incident events since the oldest of the recent runs, oldest first.
    pub events: Vec<TimelineEvent>,
}

/// One incident event on the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    /// `opened`, `released` (a held notice sent), `flapping` or `resolved`.
    pub event: String,
    /// The notice queued with it (`firing`, `resolved`, `flapping`), None when held back.
    pub notice: Option<String>,
}

/// Counters that say how a check was made rather than what it found: never the chart's
/// measure while another number is there.
const BOOKKEEPING: [&str; 3] = ["exit_code", "null_keys_ignored", "within_grace"];

/// The measure an invariant's chart shows, from its recent `measured` maps: `count` (the rows
/// or bad rows a check saw) — unless it never exceeds 1, as for a one-row probe whose columns
/// are what it measures: then the first other numeric key by name that is not bookkeeping
/// (`exit_code`, `null_keys_ignored`, `within_grace`), else `count` still, else the first
/// numeric key. The choice depends only on the data shown, so it is stable while the check
/// keeps its shape.
pub fn main_measure<'a>(
    measured: impl Iterator<Item = &'a serde_json::Map<String, serde_json::Value>> + Clone,
) -> Option<String> {
    let numeric = |k: &str| {
        measured
            .clone()
            .any(|m| m.get(k).is_some_and(|v| v.is_number()))
    };
    let count_varies = measured
        .clone()
        .filter_map(|m| m.get("count").and_then(serde_json::Value::as_f64))
        .any(|c| c > 1.0);
    if count_varies {
        return Some("count".into());
    }
    let keys: std::collections::BTreeSet<&String> = measured
        .clone()
        .flat_map(|m| m.iter())
        .filter(|(_, v)| v.is_number())
        .map(|(k, _)| k)
        .collect();
    keys.iter()
        .find(|k| k.as_str() != "count" && !BOOKKEEPING.contains(&k.as_str()))
        .map(|k| k.to_string())
        .or_else(|| numeric("count").then(|| "count".to_string()))
        .or_else(|| keys.first().map(|k| k.to_string()))
}

/// The trend of one invariant from its recent results (newest first, as the store lists them)
/// and its incident events (oldest first): events before the oldest of those runs are left out.
pub fn trend_of(
    newest_first: &[invar_store::OutcomeAt],
    events: &[invar_store::IncidentEventRow],
) -> Trend {
    let measure = main_measure(newest_first.iter().map(|r| &r.measured));
    let values = match &measure {
        Some(m) => newest_first
            .iter()
            .rev()
            .map(|r| r.measured.get(m).and_then(serde_json::Value::as_f64))
            .collect(),
        None => Vec::new(),
    };
    let events = match newest_first.last() {
        Some(oldest) => events
            .iter()
            .filter(|e| e.at >= oldest.started_at)
            .map(|e| TimelineEvent {
                at: e.at,
                event: e.event.clone(),
                notice: e.notice.clone(),
            })
            .collect(),
        None => Vec::new(),
    };
    Trend {
        measure,
        values,
        events,
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Ok,
    Firing,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentOutcome {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub outcome: String,
}

/// How many recent outcomes each invariant's strip shows.
pub const RECENT_RUNS: usize = 20;

/// Alert deliveries, all time (the outbox keeps them until retention prunes them).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Waiting for a first or next attempt.
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Map, Value, json};

    fn maps(v: &[Value]) -> Vec<Map<String, Value>> {
        v.iter().map(|m| m.as_object().unwrap().clone()).collect()
    }

    #[test]
    fn the_main_measure_is_count_unless_a_one_row_probe_measures_more() {
        let pick = |v: &[Value]| main_measure(maps(v).iter());
        // Rows or bad rows counted: count.
        assert_eq!(
            pick(&[json!({"count": 0}), json!({"count": 7, "x": 1})]).as_deref(),
            Some("count")
        );
        // A one-row probe: its first column that is not bookkeeping.
        assert_eq!(
            pick(&[
                json!({"count": 1, "exit_code": 0, "n": 10, "z": 2}),
                json!({"count": 1, "n": 12})
            ])
            .as_deref(),
            Some("n")
        );
        // Only count and bookkeeping: count; only bookkeeping: it; nothing numeric: none.
        assert_eq!(
            pick(&[json!({"count": 1, "exit_code": 0})]).as_deref(),
            Some("count")
        );
        assert_eq!(
            pick(&[json!({"exit_code": 3})]).as_deref(),
            Some("exit_code")
        );
        assert_eq!(pick(&[json!({"note": "x"})]), None);
        assert_eq!(pick(&[]), None);
        // Set checks: their counters.
        assert_eq!(
            pick(&[json!({"missing": 2, "only_left": 2, "null_keys_ignored": 0})]).as_deref(),
            Some("missing")
        );
    }

    #[test]
    fn a_trend_is_oldest_first_and_keeps_events_of_its_window() {
        let t = |m: i64| DateTime::from_timestamp(1_700_000_000 + m * 60, 0).unwrap();
        let at = |m: i64, n: Value| invar_store::OutcomeAt {
            run_id: format!("r{m}"),
            started_at: t(m),
            outcome: "pass".into(),
            reason: None,
            violations_total: 0,
            measured: json!({"count": n}).as_object().unwrap().clone(),
        };
        let newest_first = [at(3, json!(5)), at(2, json!("x")), at(1, json!(3))];
        let ev = |m: i64, e: &str| invar_store::IncidentEventRow {
            subject: "A".into(),
            incident_id: Some("i".into()),
            event: e.into(),
            notice: Some("firing".into()),
            at: t(m),
        };
        let tr = trend_of(&newest_first, &[ev(0, "opened"), ev(2, "resolved")]);
        assert_eq!(tr.measure.as_deref(), Some("count"));
        assert_eq!(tr.values, [Some(3.0), None, Some(5.0)]);
        assert_eq!(tr.events.len(), 1);
        assert_eq!(tr.events[0].event, "resolved");
        assert_eq!(trend_of(&[], &[ev(0, "opened")]), Trend::default());
    }
}
