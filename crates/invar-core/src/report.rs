//! Outcomes, verdicts and the run report (the JSON contract of `invar run --format json`).

use crate::model::FailOn;
use serde::{Deserialize, Serialize};

/// How one invariant came out. Order is "worst last" for `status`, with skip counting as pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Warn,
    /// The invariant is false: an assessment failure.
    Fail,
    /// Could not be assessed (thin data, cost guard, budget); never a pass.
    Skip,
    /// The engine could not evaluate (source down, bad query, timeout): an automation error.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
            Outcome::Error => "error",
        }
    }
    /// Rank for the run status: pass = skip < warn < fail < error.
    fn rank(self) -> u8 {
        match self {
            Outcome::Pass | Outcome::Skip => 0,
            Outcome::Warn => 1,
            Outcome::Fail => 2,
            Outcome::Error => 3,
        }
    }
}

/// Violations kept in a report per invariant; the total is always exact.
pub const VIOLATIONS_CAP: usize = 100;

/// The decision for one invariant, from a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Rows (or keys) examined.
    pub examined: u64,
    /// A pass that examined nothing.
    pub vacuous: bool,
    /// The values the decision was made on.
    pub measured: serde_json::Map<String, serde_json::Value>,
    pub violations_total: u64,
    /// The first violations, capped at [`VIOLATIONS_CAP`].
    pub violations: Vec<serde_json::Value>,
}

impl Verdict {
    pub fn new(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            reason: None,
            examined: 0,
            vacuous: false,
            measured: serde_json::Map::new(),
            violations_total: 0,
            violations: Vec::new(),
        }
    }
    pub fn error(reason: impl Into<String>) -> Verdict {
        Verdict {
            reason: Some(reason.into()),
            ..Verdict::new(Outcome::Error)
        }
    }
    pub fn skip(reason: impl Into<String>) -> Verdict {
        Verdict {
            reason: Some(reason.into()),
            ..Verdict::new(Outcome::Skip)
        }
    }
    pub fn with_reason(mut self, reason: impl Into<String>) -> Verdict {
        self.reason = Some(reason.into());
        self
    }
    /// Adds violations, keeping the first [`VIOLATIONS_CAP`] and counting them all.
    pub fn push_violation(&mut self, v: serde_json::Value) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_CAP {
            self.violations.push(v);
        }
    }
    pub fn measure(&mut self, key: &str, v: impl Into<serde_json::Value>) {
        self.measured.insert(key.to_string(), v.into());
    }
}

/// One invariant's line in the run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvariantResult {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub examined: u64,
    pub vacuous: bool,
    pub duration_ms: u64,
    pub measured: serde_json::Map<String, serde_json::Value>,
    pub violations_total: u64,
    pub violations: Vec<serde_json::Value>,
    pub runbook: Option<String>,
    /// The silence holding back this invariant's notices at the run's instant (set when the
    /// run is recorded; absent when none matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced: Option<SilencedBy>,
}

/// Which silence holds an invariant's notices, until when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilencedBy {
    /// `config:FILE:LINE` for a window of the config, the store's id for a one-off.
    pub id: String,
    /// Exclusive.
    pub until: chrono::DateTime<chrono::Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pass: u64,
    pub warn: u64,
    pub fail: u64,
    pub skip: u64,
    pub error: u64,
}

impl Counts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Warn => self.warn += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Skip => self.skip += 1,
            Outcome::Error => self.error += 1,
        }
    }
    pub fn total(&self) -> u64 {
        self.pass + self.warn + self.fail + self.skip + self.error
    }
}

/// What started a run (`trigger` in the report and the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `invar run` (and each run of a `--hold`).
    Cli,
    /// A scheduled tick of `invar watch`.
    Schedule,
    /// `POST /api/v1/runs`.
    Api,
    /// The watchdog's record of a scheduled run that did not happen (the dead-man's switch).
    Watchdog,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Watchdog => "watchdog",
        }
    }
    /// The stored name back; None for a name this version does not know.
    pub fn parse(s: &str) -> Option<Trigger> {
        [
            Trigger::Cli,
            Trigger::Schedule,
            Trigger::Api,
            Trigger::Watchdog,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run could not decide what it was asked, an entry of the report's
/// `sources_unavailable` (`{source, error}`, the contract): a source that could not be read,
/// or — with `kind` — a problem of the run itself, named `suite` (its `select` failed) or
/// `schedule` (the watchdog's record of an overdue suite). Only `kind: source` entries are
/// about a configured source, whatever a source happens to be called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProblem {
    pub source: String,
    /// Already redacted.
    pub error: String,
    #[serde(default, skip_serializing_if = "ProblemKind::is_source")]
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `source` names a configured source that could not be read.
    #[default]
    Source,
    /// The suite's `select` could not be evaluated: nothing was run.
    Select,
    /// A scheduled run did not happen (recorded by the watchdog).
    Overdue,
}

impl ProblemKind {
    pub fn is_source(&self) -> bool {
        *self == ProblemKind::Source
    }
}

impl RunProblem {
    /// A configured source that could not be read.
    pub fn source(name: impl Into<String>, error: impl Into<String>) -> RunProblem {
        RunProblem {
            source: name.into(),
            error: error.into(),
            kind: ProblemKind::Source,
        }
    }
    /// The suite's `select` failed.
    pub fn select(error: impl Into<String>) -> RunProblem {
        RunProblem {
            source: "suite".into(),
            error: error.into(),
            kind: ProblemKind::Select,
        }
    }
    /// A scheduled tick passed with no run.
    pub fn overdue(error: impl Into<String>) -> RunProblem {
        RunProblem {
            source: "schedule".into(),
            error: error.into(),
            kind: ProblemKind::Overdue,
        }
    }
    /// The configured source this is about, if it is about one.
    pub fn source_name(&self) -> Option<&str> {
        self.kind.is_source().then_some(self.source.as_str())
    }
}

/// The JSON run report; field names are a documented contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub suite: String,
    pub trigger: Trigger,
    /// RFC 3339, UTC, milliseconds (`2026-12-04T18:32:02.123Z`).
    #[serde(with = "rfc3339_millis")]
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    pub status: Outcome,
    pub exit_code: i32,
    pub counts: Counts,
    pub automation_error: bool,
    pub assessment_failures: u64,
    pub lock_skipped: bool,
    pub skipped_budget: u64,
    pub sources_unavailable: Vec<RunProblem>,
    pub results: Vec<InvariantResult>,
}

impl RunReport {
    /// A report with no results yet: status `pass`, exit 0, nothing counted.
    pub fn new(
        run_id: String,
        suite: &str,
        trigger: Trigger,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> RunReport {
        RunReport {
            run_id,
            suite: suite.to_string(),
            trigger,
            started_at,
            duration_ms: 0,
            status: Outcome::Pass,
            exit_code: 0,
            counts: Counts::default(),
            automation_error: false,
            assessment_failures: 0,
            lock_skipped: false,
            skipped_budget: 0,
            sources_unavailable: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Sets the results and what the contract derives from them — counts, status, exit code,
    /// `automation_error`, `assessment_failures` — the one way: a run that decided nothing
    /// because sources were unavailable is an automation error (status `error`, exit 2).
    pub fn set_results(
        &mut self,
        results: Vec<InvariantResult>,
        sources_unavailable: Vec<RunProblem>,
        fail_on: FailOn,
    ) {
        let mut counts = Counts::default();
        for r in &results {
            counts.add(r.outcome);
        }
        let nothing_decided = results.is_empty() && !sources_unavailable.is_empty();
        self.automation_error = counts.error > 0 || nothing_decided;
        self.status = if nothing_decided {
            Outcome::Error
        } else {
            run_status(&results)
        };
        self.exit_code = if nothing_decided {
            2
        } else {
            exit_code(&counts, fail_on)
        };
        self.counts = counts;
        self.assessment_failures = counts.fail;
        self.sources_unavailable = sources_unavailable;
        self.results = results;
    }
}

/// The worst outcome, skip counting as pass.
pub fn run_status(results: &[InvariantResult]) -> Outcome {
    results
        .iter()
        .map(|r| r.outcome)
        .max_by_key(|o| o.rank())
        .map(|o| if o == Outcome::Skip { Outcome::Pass } else { o })
        .unwrap_or(Outcome::Pass)
}

/// Exit code per the contract: 2 on any error, else 1 on a failure the suite cares about, else 0.
pub fn exit_code(counts: &Counts, fail_on: FailOn) -> i32 {
    if counts.error > 0 {
        return 2;
    }
    match fail_on {
        FailOn::Never => 0,
        FailOn::Fail if counts.fail > 0 => 1,
        FailOn::Warn if counts.fail + counts.warn > 0 => 1,
        _ => 0,
    }
}

/// The report's timestamps as the JSON contract writes them: RFC 3339 in UTC with milliseconds;
/// any RFC 3339 offset is read.
mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_at_is_rfc3339_utc_with_millis_and_reads_any_offset() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-04T19:32:02.123456+01:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let r = RunReport::new("r".into(), "all", Trigger::Cli, t);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["started_at"], "2026-12-04T18:32:02.123Z");
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.started_at.timestamp_millis(), t.timestamp_millis());
        let mut bad = serde_json::to_value(&r).unwrap();
        bad["started_at"] = "yesterday".into();
        assert!(serde_json::from_value::<RunReport>(bad).is_err());
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let c = |fail, warn, error| Counts {
            pass: 1,
            warn,
            fail,
            skip: 1,
            error,
        };
        assert_eq!(exit_code(&c(0, 0, 0), FailOn::Fail), 0);
        assert_eq!(exit_code(&c(0, 1, 0), FailOn::Fail), 0);
        assert_eq!(exit_code(&c(0, 1, 0), FailOn::Warn), 1);
        assert_eq!(exit_code(&c(1, 0, 0), FailOn::Fail), 1);
        assert_eq!(exit_code(&c(1, 0, 0), FailOn::Never), 0);
        assert_eq!(exit_code(&c(1, 0, 1), FailOn::Fail), 2);
        assert_eq!(exit_code(&c(0, 0, 1), FailOn::Never), 2);
    }
}
