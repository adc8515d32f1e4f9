//! What goes in and comes out of the store: plain data, serialisable for the API and reports.

use chrono::{DateTime, Utc};
use invar_core::incident::{IncidentEvent, IncidentState};
use invar_core::{Counts, RunProblem, RunReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run to record.
pub struct RunRecord<'a> {
    pub report: &'a RunReport,
    /// The sources each result's invariant reads (by result index; missing means none), for
    /// "errors by source" in the report.
    pub sources: Vec<Vec<String>>,
    /// Remembered states to upsert (for `transitions` invariants).
    pub remembered: Vec<RememberedState>,
}

/// What the planner sees, read inside the recording transaction.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub states: BTreeMap<String, IncidentState>,
    /// For each open incident: the sinks sent (queued) a firing or reminder, with the time of
    /// the latest one.
    pub notified: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
}

/// What the planner decided.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// New states of the subjects this run touched.
    pub states: Vec<IncidentState>,
    pub events: Vec<IncidentEvent>,
    /// Titles and severities for incidents this plan opens, by subject.
    pub subjects: BTreeMap<String, SubjectInfo>,
    pub outbox: Vec<NewDelivery>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectInfo {
    pub title: String,
    pub severity: String,
}

/// One notice to deliver to one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    pub id: String,
    /// Stable across retries; receivers dedupe on it.
    pub idempotency_key: String,
    /// The sink's name (never its URL).
    pub sink: String,
    /// `firing`, `resolved`, `reminder` or `flapping`.
    pub notice: String,
    pub incident_id: Option<String>,
    pub subject: String,
    /// The notice's data, rendered per sink at delivery time. Holds no secret.
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What recording a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recorded {
    pub run_id: String,
    pub results: usize,
    pub violations: usize,
    pub events: Vec<IncidentEvent>,
    pub deliveries: usize,
}

/// A remembered state of one key of a `transitions` invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedState {
    pub invariant: String,
    pub key: String,
    pub state: String,
    pub seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub suite: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// 0 means the default (50).
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub suite: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub status: String,
    pub exit_code: i32,
    pub counts: Counts,
    pub automation_error: bool,
    pub lock_skipped: bool,
    pub skipped_budget: u64,
    pub sources_unavailable: Vec<RunProblem>,
}

#[derive(Debug, Clone, Default)]
pub struct ResultQuery {
    pub invariant: Option<String>,
    pub suite: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    pub run_id: String,
    pub suite: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub id: String,
    pub title: String,
    pub severity: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub examined: u64,
    pub vacuous: bool,
    pub duration_ms: u64,
    pub measured: serde_json::Map<String, serde_json::Value>,
    pub violations_total: u64,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub open_only: bool,
    pub subject: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRow {
    pub id: String,
    /// An invariant id or `source:NAME`.
    pub subject: String,
    /// `invariant` or `source`.
    pub kind: String,
    pub title: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
    pub opened_run_id: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_run_id: Option<String>,
    /// The last red before it opened ("last red Xm ago").
    pub last_red_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct ViolationQuery {
    pub invariant: Option<String>,
    pub severity: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
    /// From [`Page::next_cursor`].
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationRow {
    pub id: i64,
    pub run_id: String,
    pub invariant: String,
    pub severity: String,
    pub at: DateTime<Utc>,
    /// The observed state, as the check reported it.
    pub observed: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Runs of one suite by one trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteRuns {
    pub suite: String,
    pub trigger: String,
    pub runs: u64,
    /// By run status.
    pub pass: u64,
    pub warn: u64,
    pub fail: u64,
    pub error: u64,
    pub lock_skipped: u64,
    pub skipped_budget: u64,
}

/// Outcomes of one invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantOutcomes {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub runs: u64,
    pub pass: u64,
    pub warn: u64,
    pub fail: u64,
    pub skip: u64,
    pub error: u64,
    pub vacuous: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// The operator's audit over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub runs: Vec<SuiteRuns>,
    pub outcomes: Vec<InvariantOutcomes>,
    /// Incidents opened or resolved in the range.
    pub incidents: Vec<IncidentRow>,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    /// Over incidents resolved in the range.
    pub median_time_to_resolve_ms: Option<u64>,
    pub max_time_to_resolve_ms: Option<u64>,
    /// Subjects that sent a flapping notice, with how many.
    pub flapping: Vec<Count>,
    /// Invariants with vacuous passes, with how many.
    pub vacuous: Vec<Count>,
    /// `thin_data`, `cost_guard`, `budget`, `other`.
    pub skips_by_reason: Vec<Count>,
    /// Error results per source they read (`(none)` when the invariant reads no source), plus
    /// runs that listed the source unavailable.
    pub errors_by_source: Vec<Count>,
    /// Runs that listed each source in `sources_unavailable`.
    pub unavailable_by_source: Vec<Count>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    pub runs: u64,
    pub results: u64,
    pub violations: u64,
    pub incidents: u64,
    pub deliveries: u64,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub incident_id: Option<String>,
    pub subject: Option<String>,
    pub sink: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub idempotency_key: String,
    pub sink: String,
    pub notice: String,
    pub incident_id: Option<String>,
    pub subject: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Scrubbed.
    pub last_error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub delivery_id: String,
    /// 1-based.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    pub ok: bool,
    /// The HTTP status or SMTP reply code, when there was one.
    pub code: Option<i32>,
    /// Scrubbed: never a URL or a credential.
    pub error: Option<String>,
    /// When not ok: when to try again.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Stored violations of one invariant at one severity (an invariant whose severity changed
/// has a row per severity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantViolationStats {
    pub id: String,
    pub severity: String,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// Counts of the stored violations (as recorded, capped per result like the reports), since a
/// time or over everything retention kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationStats {
    pub since: Option<DateTime<Utc>>,
    pub total: u64,
    /// By severity name.
    pub by_severity: BTreeMap<String, u64>,
    /// Most violations first (ties by id, then severity).
    pub invariants: Vec<InvariantViolationStats>,
}

/// One recorded result of an invariant, for the status page's strip of recent runs and its
/// trend chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeAt {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// `pass`, `warn`, `fail`, `skip` or `error`.
    pub outcome: String,
    pub reason: Option<String>,
    pub violations_total: u64,
    /// What it measured (the trend chart's points).
    pub measured: serde_json::Map<String, serde_json::Value>,
}

/// Alert deliveries as the outbox holds them (until retention prunes delivered ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Waiting for a first or next attempt.
    pub pending: u64,
}

/// A silence to store: while active, matching notices are held back (the feature that reads
/// them is not in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSilence {
    /// A CEL expression over the notice, as the operator wrote it.
    pub matcher: String,
    pub starts_at: DateTime<Utc>,
    /// Exclusive: the silence is over at this instant.
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// A UUID v7, given by the store.
    pub id: String,
    pub matcher: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When it was ended early ([`crate::Coordination::expire_silence`]).
    pub expired_at: Option<DateTime<Utc>>,
}

impl Silence {
    /// When it ends (exclusive): its `ends_at`, or when it was expired, if sooner.
    pub fn until(&self) -> DateTime<Utc> {
        self.expired_at
            .map_or(self.ends_at, |e| e.min(self.ends_at))
    }
}

/// Skip reasons grouped for the report.
pub fn skip_category(reason: Option<&str>) -> &'static str {
    let r = reason.unwrap_or("").to_ascii_lowercase();
    if r.starts_with("cost guard") {
        "cost_guard"
    } else if r.contains("budget") {
        "budget"
    } else if r.starts_with("skip_when") || r.contains("on_empty: skip") || r.contains("thin") {
        "thin_data"
    } else {
        "other"
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// A page of one invariant's measured series ([`crate::History::measurements`]).
#[derive(Debug, Clone, Default)]
pub struct MeasurementQuery {
    pub invariant: String,
    pub since: Option<DateTime<Utc>>,
    /// 0 means the default (50).
    pub limit: u32,
    /// From [`Page::next_cursor`]: `MS~RUN_ID` of the previous page's last row.
    pub cursor: Option<String>,
}

/// One recorded result of an invariant as a point of its series: when, how it ended, and what
/// it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// `pass`, `warn`, `fail`, `skip` or `error`.
    pub outcome: String,
    pub measured: serde_json::Map<String, serde_json::Value>,
}

/// One stored incident event (`opened`, `released`, `flapping`, `resolved`), with the notice
/// it queued, if any — the status page's incident timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentEventRow {
    pub subject: String,
    pub incident_id: Option<String>,
    pub event: String,
    /// `firing`, `resolved`, `flapping`, …; None when the notice was held back or suppressed.
    pub notice: Option<String>,
    pub at: DateTime<Utc>,
}
