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
