//! Reading rows by column name. Each table has one select list (`*_COLS`), used by every
//! query of it, and one decoder that reads those columns by name.

use super::{db, decode};
use crate::Result;
use crate::types::*;
use chrono::{DateTime, Utc};
use invar_core::{Counts, InvariantResult, Outcome, RunProblem};

/// `runs`, as [`run_summary`] reads it.
pub(super) const RUN_COLS: &str = "run_id, suite, trigger, started_at, duration_ms, status, \
     exit_code, n_pass, n_warn, n_fail, n_skip, n_error, automation_error, lock_skipped, \
     skipped_budget, sources_unavailable";

/// `results`, as [`invariant_result`] and [`result_entry`] read it.
pub(super) const RESULT_COLS: &str = "run_id, seq, invariant_id, started_at, suite, title, \
     severity, outcome, reason, examined, vacuous, duration_ms, measured, violations_total, \
     runbook";

/// `results` for the status page's strip of recent outcomes and its trend chart, as
/// [`outcome_at`] reads it (the few columns it shows: it reads many rows per invariant).
pub(super) const OUTCOME_COLS: &str =
    "invariant_id, run_id, started_at, outcome, reason, violations_total, measured";

/// `incidents`, as [`incident_row`] reads it.
pub(super) const INCIDENT_COLS: &str = "id, subject, kind, title, severity, opened_at, \
     opened_run_id, resolved_at, resolved_run_id, last_red_at";

/// `violations`, as [`violation_row`] reads it.
pub(super) const VIOLATION_COLS: &str = "id, run_id, invariant_id, severity, at, observed";

/// `outbox`, as [`delivery`] reads it.
pub(super) const DELIVERY_COLS: &str = "id, idempotency_key, sink, notice, incident_id, \
     subject, payload, created_at, status, attempts, next_attempt_at, delivered_at, last_error";

/// `delivery_attempts`, as [`attempt`] reads it.
pub(super) const ATTEMPT_COLS: &str = "delivery_id, attempt, at, duration_ms, ok, code, error";

/// `remembered_states`, as [`remembered`] reads it.
pub(super) const REMEMBERED_COLS: &str = "invariant_id, key, state, seen_at";

/// `incident_states`, as the planner's input and `incident_states` read it.
pub(super) const INCIDENT_STATE_COLS: &str = "subject, state";

/// `silences`, as [`silence`] reads it.
pub(super) const SILENCE_COLS: &str =
    "id, matcher, starts_at, ends_at, reason, created_by, created_at, expired_at";

/// `cols` with each column qualified by `alias` (for joins).
pub(super) fn qualified(alias: &str, cols: &str) -> String {
    cols.split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's columns by name, whatever the backend.
pub trait Cols {
    fn i64(&self, col: &str) -> Result<i64>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn flag(&self, col: &str) -> Result<bool>;

    /// The column `col` as `T`.
    fn get<T: Col>(&self, col: &str) -> Result<T>
    where
        Self: Sized,
    {
        T::get(self, col)
    }
}

impl<R> Cols for R
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn i64(&self, col: &str) -> Result<i64> {
        self.try_get(col).map_err(db)
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).map_err(db)
    }
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).map_err(db)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).map_err(db)
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).map_err(db)
    }
}

/// A type a column is read as.
pub trait Col: Sized {
    fn get(row: &impl Cols, col: &str) -> Result<Self>;
}

impl Col for i64 {
    fn get(row: &impl Cols, col: &str) -> Result<i64> {
        row.i64(col)
    }
}
impl Col for Option<i64> {
    fn get(row: &impl Cols, col: &str) -> Result<Option<i64>> {
        row.opt_i64(col)
    }
}
impl Col for String {
    fn get(row: &impl Cols, col: &str) -> Result<String> {
        row.text(col)
    }
}
impl Col for Option<String> {
    fn get(row: &impl Cols, col: &str) -> Result<Option<String>> {
        row.opt_text(col)
    }
}
impl Col for bool {
    fn get(row: &impl Cols, col: &str) -> Result<bool> {
        row.flag(col)
    }
}
/// Unix milliseconds.
impl Col for DateTime<Utc> {
    fn get(row: &impl Cols, col: &str) -> Result<DateTime<Utc>> {
        Ok(from_ms(i64::get(row, col)?))
    }
}
impl Col for Option<DateTime<Utc>> {
    fn get(row: &impl Cols, col: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(row.opt_i64(col)?.map(from_ms))
    }
}
/// A count or size, stored as BIGINT (negative reads as 0).
impl Col for u64 {
    fn get(row: &impl Cols, col: &str) -> Result<u64> {
        Ok(i64::get(row, col)?.max(0) as u64)
    }
}
/// JSON stored as text.
impl Col for serde_json::Value {
    fn get(row: &impl Cols, col: &str) -> Result<serde_json::Value> {
        json(row, col)
    }
}

/// The JSON text in `col`, parsed.
pub(super) fn json<T: serde::de::DeserializeOwned>(row: &impl Cols, col: &str) -> Result<T> {
    serde_json::from_str(&String::get(row, col)?).map_err(decode)
}

pub(super) fn outcome_of(s: &str) -> Result<Outcome> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(decode)
}

/// [`RUN_COLS`].
pub(super) fn run_summary(r: &impl Cols) -> Result<RunSummary> {
    Ok(RunSummary {
        run_id: r.get("run_id")?,
        suite: r.get("suite")?,
        trigger: r.get("trigger")?,
        started_at: r.get("started_at")?,
        duration_ms: r.get::<i64>("duration_ms")? as u64,
        status: r.get("status")?,
        exit_code: r.get::<i64>("exit_code")? as i32,
        counts: Counts {
            pass: r.get::<i64>("n_pass")? as u64,
            warn: r.get::<i64>("n_warn")? as u64,
            fail: r.get::<i64>("n_fail")? as u64,
            skip: r.get::<i64>("n_skip")? as u64,
            error: r.get::<i64>("n_error")? as u64,
        },
        automation_error: r.get("automation_error")?,
        lock_skipped: r.get("lock_skipped")?,
        skipped_budget: r.get::<i64>("skipped_budget")? as u64,
        sources_unavailable: json::<Vec<RunProblem>>(r, "sources_unavailable")?,
    })
}

/// [`RESULT_COLS`], with the violations read apart.
pub(super) fn invariant_result(
    r: &impl Cols,
    violations: Vec<serde_json::Value>,
) -> Result<InvariantResult> {
    Ok(InvariantResult {
        id: r.get("invariant_id")?,
        title: r.get("title")?,
        severity: r.get("severity")?,
        outcome: outcome_of(&r.get::<String>("outcome")?)?,
        reason: r.get("reason")?,
        examined: r.get::<i64>("examined")? as u64,
        vacuous: r.get("vacuous")?,
        duration_ms: r.get::<i64>("duration_ms")? as u64,
        measured: json(r, "measured")?,
        violations_total: r.get::<i64>("violations_total")? as u64,
        violations,
        runbook: r.get("runbook")?,
        silenced: None,
    })
}

/// [`RESULT_COLS`] and the run's `trigger`.
pub(super) fn result_entry(r: &impl Cols) -> Result<ResultEntry> {
    Ok(ResultEntry {
        run_id: r.get("run_id")?,
        suite: r.get("suite")?,
        trigger: r.get("trigger")?,
        started_at: r.get("started_at")?,
        id: r.get("invariant_id")?,
        title: r.get("title")?,
        severity: r.get("severity")?,
        outcome: r.get("outcome")?,
        reason: r.get("reason")?,
        examined: r.get::<i64>("examined")? as u64,
        vacuous: r.get("vacuous")?,
        duration_ms: r.get::<i64>("duration_ms")? as u64,
        measured: json(r, "measured")?,
        violations_total: r.get::<i64>("violations_total")? as u64,
    })
}

/// [`OUTCOME_COLS`].
pub(super) fn outcome_at(r: &impl Cols) -> Result<OutcomeAt> {
    Ok(OutcomeAt {
        run_id: r.get("run_id")?,
        started_at: r.get("started_at")?,
        outcome: r.get("outcome")?,
        reason: r.get("reason")?,
        violations_total: r.get("violations_total")?,
        measured: json(r, "measured")?,
    })
}

/// [`INCIDENT_COLS`].
pub(super) fn incident_row(r: &impl Cols) -> Result<IncidentRow> {
    Ok(IncidentRow {
        id: r.get("id")?,
        subject: r.get("subject")?,
        kind: r.get("kind")?,
        title: r.get("title")?,
        severity: r.get("severity")?,
        opened_at: r.get("opened_at")?,
        opened_run_id: r.get("opened_run_id")?,
        resolved_at: r.get("resolved_at")?,
        resolved_run_id: r.get("resolved_run_id")?,
        last_red_at: r.get("last_red_at")?,
    })
}

/// [`VIOLATION_COLS`].
pub(super) fn violation_row(r: &impl Cols) -> Result<ViolationRow> {
    Ok(ViolationRow {
        id: r.get("id")?,
        run_id: r.get("run_id")?,
        invariant: r.get("invariant_id")?,
        severity: r.get("severity")?,
        at: r.get("at")?,
        observed: r.get("observed")?,
    })
}

/// [`DELIVERY_COLS`].
pub(super) fn delivery(r: &impl Cols) -> Result<Delivery> {
    Ok(Delivery {
        id: r.get("id")?,
        idempotency_key: r.get("idempotency_key")?,
        sink: r.get("sink")?,
        notice: r.get("notice")?,
        incident_id: r.get("incident_id")?,
        subject: r.get("subject")?,
        payload: r.get("payload")?,
        created_at: r.get("created_at")?,
        status: if r.get::<String>("status")? == "delivered" {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Pending
        },
        attempts: r.get::<i64>("attempts")? as u32,
        next_attempt_at: r.get("next_attempt_at")?,
        delivered_at: r.get("delivered_at")?,
        last_error: r.get("last_error")?,
    })
}

/// [`ATTEMPT_COLS`].
pub(super) fn attempt(r: &impl Cols) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_id: r.get("delivery_id")?,
        attempt: r.get::<i64>("attempt")? as u32,
        at: r.get("at")?,
        duration_ms: r.get::<i64>("duration_ms")? as u64,
        ok: r.get("ok")?,
        code: r.get::<Option<i64>>("code")?.map(|c| c as i32),
        error: r.get("error")?,
        next_attempt_at: None,
    })
}

/// [`REMEMBERED_COLS`].
pub(super) fn remembered(r: &impl Cols) -> Result<RememberedState> {
    Ok(RememberedState {
        invariant: r.get("invariant_id")?,
        key: r.get("key")?,
        state: r.get("state")?,
        seen_at: r.get("seen_at")?,
    })
}

/// [`SILENCE_COLS`].
pub(super) fn silence(r: &impl Cols) -> Result<Silence> {
    Ok(Silence {
        id: r.get("id")?,
        matcher: r.get("matcher")?,
        starts_at: r.get("starts_at")?,
        ends_at: r.get("ends_at")?,
        reason: r.get("reason")?,
        created_by: r.get("created_by")?,
        created_at: r.get("created_at")?,
        expired_at: r.get("expired_at")?,
    })
}
