//! The operator's audit over a time range ([`crate::History::report`]): one aggregate query
//! per section, each row read by its column aliases.

use super::super::rows::{self, Cols, INCIDENT_COLS};
use super::super::{Backend, RowOf, SqlStore, Stmt};
use crate::Result;
use crate::types::*;
use chrono::{DateTime, Utc};
use invar_core::RunProblem;
use std::collections::BTreeMap;

/// Incidents opened or resolved in `[$1, $2)`, or open across it.
const INCIDENTS_IN_RANGE: &str = "WHERE (opened_at >= $1 AND opened_at < $2) \
     OR (resolved_at >= $1 AND resolved_at < $2) \
     OR (opened_at < $1 AND resolved_at IS NULL) \
     ORDER BY opened_at, id";

fn counts(m: BTreeMap<String, u64>) -> Vec<Count> {
    m.into_iter()
        .map(|(name, count)| Count { name, count })
        .collect()
}

/// `n` (a count) per `name`.
fn count_rows<R: Cols>(rows: &[R]) -> Result<Vec<Count>> {
    rows.iter()
        .map(|r| {
            Ok(Count {
                name: r.get("name")?,
                count: r.get("n")?,
            })
        })
        .collect()
}

/// Incidents opened and resolved in the range, with the median and longest time to resolve.
struct Resolution {
    opened: u64,
    resolved: u64,
    median_ms: Option<u64>,
    max_ms: Option<u64>,
}

fn resolution(incidents: &[IncidentRow], from: DateTime<Utc>, to: DateTime<Utc>) -> Resolution {
    let in_range = |t: DateTime<Utc>| t >= from && t < to;
    let opened = incidents.iter().filter(|i| in_range(i.opened_at)).count() as u64;
    let mut ttr: Vec<u64> = incidents
        .iter()
        .filter_map(|i| {
            i.resolved_at
                .filter(|t| in_range(*t))
                .map(|t| (t - i.opened_at).num_milliseconds().max(0) as u64)
        })
        .collect();
    ttr.sort_unstable();
    Resolution {
        opened,
        resolved: ttr.len() as u64,
        median_ms: (!ttr.is_empty()).then(|| ttr[ttr.len() / 2]),
        max_ms: ttr.last().copied(),
    }
}

impl<B: Backend> SqlStore<B> {
    /// `sql` with the range bound as `$1` and `$2`.
    async fn in_range(&self, sql: &'static str, a: i64, b: i64) -> Result<Vec<RowOf<B>>> {
        self.fetch_all(Stmt::new(sql).bind(a).bind(b)).await
    }

    async fn suite_runs(&self, a: i64, b: i64) -> Result<Vec<SuiteRuns>> {
        let rows = self
            .in_range(
                "SELECT suite, trigger, count(*) AS n_runs, \
                 count(*) FILTER (WHERE status = 'pass') AS n_pass, \
                 count(*) FILTER (WHERE status = 'warn') AS n_warn, \
                 count(*) FILTER (WHERE status = 'fail') AS n_fail, \
                 count(*) FILTER (WHERE status = 'error') AS n_error, \
                 count(*) FILTER (WHERE lock_skipped) AS n_lock_skipped, \
                 COALESCE(CAST(sum(skipped_budget) AS BIGINT), 0) AS n_skipped_budget \
                 FROM runs WHERE started_at >= $1 AND started_at < $2 \
                 GROUP BY suite, trigger ORDER BY suite, trigger",
                a,
                b,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SuiteRuns {
                    suite: r.get("suite")?,
                    trigger: r.get("trigger")?,
                    runs: r.get("n_runs")?,
                    pass: r.get("n_pass")?,
                    warn: r.get("n_warn")?,
                    fail: r.get("n_fail")?,
                    error: r.get("n_error")?,
                    lock_skipped: r.get("n_lock_skipped")?,
                    skipped_budget: r.get("n_skipped_budget")?,
                })
            })
            .collect()
    }

    async fn outcomes(&self, a: i64, b: i64) -> Result<Vec<InvariantOutcomes>> {
        let rows = self
            .in_range(
                "SELECT invariant_id, max(title) AS title, max(severity) AS severity, \
                 count(*) AS n_runs, \
                 count(*) FILTER (WHERE outcome = 'pass') AS n_pass, \
                 count(*) FILTER (WHERE outcome = 'warn') AS n_warn, \
                 count(*) FILTER (WHERE outcome = 'fail') AS n_fail, \
                 count(*) FILTER (WHERE outcome = 'skip') AS n_skip, \
                 count(*) FILTER (WHERE outcome = 'error') AS n_error, \
                 count(*) FILTER (WHERE vacuous AND outcome = 'pass') AS n_vacuous \
                 FROM results WHERE started_at >= $1 AND started_at < $2 \
                 GROUP BY invariant_id ORDER BY invariant_id",
                a,
                b,
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(InvariantOutcomes {
                    id: r.get("invariant_id")?,
                    title: r.get("title")?,
                    severity: r.get("severity")?,
                    runs: r.get("n_runs")?,
                    pass: r.get("n_pass")?,
                    warn: r.get("n_warn")?,
                    fail: r.get("n_fail")?,
                    skip: r.get("n_skip")?,
                    error: r.get("n_error")?,
                    vacuous: r.get("n_vacuous")?,
                })
            })
            .collect()
    }

    /// Skipped results by [`skip_category`].
    async fn skips(&self, a: i64, b: i64) -> Result<BTreeMap<String, u64>> {
        let mut skips: BTreeMap<String, u64> = BTreeMap::new();
        for r in self
            .in_range(
                "SELECT reason, count(*) AS n FROM results \
                 WHERE outcome = 'skip' AND started_at >= $1 AND started_at < $2 \
                 GROUP BY reason",
                a,
                b,
            )
            .await?
        {
            let reason: Option<String> = r.get("reason")?;
            *skips
                .entry(skip_category(reason.as_deref()).to_string())
                .or_default() += r.get::<u64>("n")?;
        }
        Ok(skips)
    }

    /// Error results per source their invariant reads (`(none)` for none).
    async fn errors_by_source(&self, a: i64, b: i64) -> Result<BTreeMap<String, u64>> {
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for r in self
            .in_range(
                "SELECT sources, count(*) AS n FROM results \
                 WHERE outcome = 'error' AND started_at >= $1 AND started_at < $2 \
                 GROUP BY sources",
                a,
                b,
            )
            .await?
        {
            let n: u64 = r.get("n")?;
            let list: Vec<String> = rows::json(&r, "sources")?;
            if list.is_empty() {
                *errors.entry("(none)".into()).or_default() += n;
            }
            for s in list {
                *errors.entry(s).or_default() += n;
            }
        }
        Ok(errors)
    }

    /// Runs that listed each source unavailable.
    async fn unavailable(&self, a: i64, b: i64) -> Result<BTreeMap<String, u64>> {
        let mut unavailable: BTreeMap<String, u64> = BTreeMap::new();
        for r in self
            .in_range(
                "SELECT sources_unavailable FROM runs \
                 WHERE sources_unavailable <> '[]' AND started_at >= $1 AND started_at < $2",
                a,
                b,
            )
            .await?
        {
            for s in rows::json::<Vec<RunProblem>>(&r, "sources_unavailable")? {
                if let Some(name) = s.source_name() {
                    *unavailable.entry(name.to_string()).or_default() += 1;
                }
            }
        }
        Ok(unavailable)
    }

    pub(super) async fn report_inner(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ReportData> {
        let (a, b) = (ms(from), ms(to));
        let runs = self.suite_runs(a, b).await?;
        let outcomes = self.outcomes(a, b).await?;
        let vacuous = outcomes
            .iter()
            .filter(|o| o.vacuous > 0)
            .map(|o| Count {
                name: o.id.clone(),
                count: o.vacuous,
            })
            .collect();
        let sql = format!("SELECT {INCIDENT_COLS} FROM incidents {INCIDENTS_IN_RANGE}");
        let incidents = self
            .fetch_all(Stmt::built(sql).bind(a).bind(b))
            .await?
            .iter()
            .map(rows::incident_row)
            .collect::<Result<Vec<_>>>()?;
        let res = resolution(&incidents, from, to);
        let flapping = count_rows(
            &self
                .in_range(
                    "SELECT subject AS name, count(*) AS n FROM incident_events \
                     WHERE event = 'flapping' AND at >= $1 AND at < $2 \
                     GROUP BY subject ORDER BY subject",
                    a,
                    b,
                )
                .await?,
        )?;
        Ok(ReportData {
            from,
            to,
            runs,
            outcomes,
            incidents,
            incidents_opened: res.opened,
            incidents_resolved: res.resolved,
            median_time_to_resolve_ms: res.median_ms,
            max_time_to_resolve_ms: res.max_ms,
            flapping,
            vacuous,
            skips_by_reason: counts(self.skips(a, b).await?),
            errors_by_source: counts(self.errors_by_source(a, b).await?),
            unavailable_by_source: counts(self.unavailable(a, b).await?),
        })
    }
}
