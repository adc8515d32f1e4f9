//! [`History`] on any backend: recording a run in one transaction, and reading runs, results,
//! violations, incidents and the report back.

use super::rows::{self, Cols, INCIDENT_COLS, INCIDENT_STATE_COLS, REMEMBERED_COLS, RESULT_COLS};
use super::rows::{OUTCOME_COLS, RUN_COLS, VIOLATION_COLS};
use super::{Arg, Backend, Exec, Filter, Insert, SqlStore, Stmt, db, json_text, limit_of};
use crate::types::*;
use crate::{History, Planner, Result, StoreError};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use invar_core::incident::{EventKind, IncidentState};
use invar_core::{Retention, RunReport};
use std::collections::BTreeMap;
use std::time::Duration;

mod measurements;
mod report;

const INSERT_RESULTS: Insert = Insert {
    head: "INSERT INTO results (run_id, seq, invariant_id, started_at, suite, title, severity, \
           outcome, reason, examined, vacuous, duration_ms, measured, violations_total, \
           runbook, sources)",
    tail: "",
    cols: 16,
};
const INSERT_VIOLATIONS: Insert = Insert {
    head: "INSERT INTO violations (run_id, invariant_id, severity, seq, at, observed)",
    tail: "",
    cols: 6,
};
const INSERT_REMEMBERED: Insert = Insert {
    head: "INSERT INTO remembered_states (invariant_id, key, state, seen_at)",
    // The newer observation wins: two runs of one `transitions` invariant (two suites at
    // once) may record out of order.
    tail: "ON CONFLICT (invariant_id, key) DO UPDATE SET state = excluded.state, \
           seen_at = excluded.seen_at WHERE excluded.seen_at >= remembered_states.seen_at",
    cols: 4,
};
const INSERT_STATES: Insert = Insert {
    head: "INSERT INTO incident_states (subject, state, updated_at)",
    tail: "ON CONFLICT (subject) DO UPDATE SET state = excluded.state, \
           updated_at = excluded.updated_at",
    cols: 3,
};
const INSERT_INCIDENTS: Insert = Insert {
    head: "INSERT INTO incidents (id, subject, kind, title, severity, opened_at, opened_run_id, \
           last_red_at)",
    tail: "",
    cols: 8,
};
const INSERT_EVENTS: Insert = Insert {
    head: "INSERT INTO incident_events (run_id, subject, incident_id, event, notice, at, detail)",
    tail: "",
    cols: 7,
};
const INSERT_OUTBOX: Insert = Insert {
    head: "INSERT INTO outbox (id, idempotency_key, sink, notice, incident_id, subject, run_id, \
           payload, created_at, status, attempts, next_attempt_at)",
    tail: "ON CONFLICT (idempotency_key) DO NOTHING",
    cols: 12,
};

/// Every stored incident state, by subject.
async fn read_states(c: &mut impl Exec) -> Result<BTreeMap<String, IncidentState>> {
    let sql = format!("SELECT {INCIDENT_STATE_COLS} FROM incident_states");
    let mut out = BTreeMap::new();
    for row in c.fetch_all(Stmt::built(sql)).await? {
        out.insert(row.get("subject")?, rows::json(&row, "state")?);
    }
    Ok(out)
}

/// What the planner sees: the states, and who was sent a firing or reminder of each open
/// incident (with the latest time).
async fn plan_input(c: &mut impl Exec) -> Result<PlanInput> {
    let mut input = PlanInput {
        states: read_states(c).await?,
        ..PlanInput::default()
    };
    let notified = Stmt::new(
        "SELECT o.incident_id, o.sink, max(o.created_at) AS last FROM outbox o \
         JOIN incidents i ON i.id = o.incident_id \
         WHERE i.resolved_at IS NULL AND o.notice IN ('firing', 'reminder') \
         GROUP BY o.incident_id, o.sink",
    );
    for row in c.fetch_all(notified).await? {
        input
            .notified
            .entry(row.get("incident_id")?)
            .or_default()
            .insert(row.get("sink")?, row.get("last")?);
    }
    Ok(input)
}

fn insert_run(r: &RunReport, at: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO runs (run_id, suite, trigger, started_at, duration_ms, status, exit_code, \
         n_pass, n_warn, n_fail, n_skip, n_error, automation_error, lock_skipped, \
         skipped_budget, sources_unavailable) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
    )
    .bind(&r.run_id)
    .bind(&r.suite)
    .bind(r.trigger.as_str())
    .bind(at)
    .bind(r.duration_ms as i64)
    .bind(r.status.as_str())
    .bind(i64::from(r.exit_code))
    .bind(r.counts.pass as i64)
    .bind(r.counts.warn as i64)
    .bind(r.counts.fail as i64)
    .bind(r.counts.skip as i64)
    .bind(r.counts.error as i64)
    .bind(r.automation_error)
    .bind(r.lock_skipped)
    .bind(r.skipped_budget as i64)
    .bind(json_text(&r.sources_unavailable))
}

/// The rows of `results` and `violations` for a run.
fn result_rows(run: &RunRecord<'_>, at: i64) -> (Vec<Vec<Arg>>, Vec<Vec<Arg>>) {
    let r = run.report;
    let mut results = Vec::with_capacity(r.results.len());
    let mut violations = Vec::new();
    for (i, res) in r.results.iter().enumerate() {
        let sources = run.sources.get(i).cloned().unwrap_or_default();
        results.push(vec![
            Arg::S(r.run_id.clone()),
            Arg::I(i as i64),
            Arg::S(res.id.clone()),
            Arg::I(at),
            Arg::S(r.suite.clone()),
            Arg::S(res.title.clone()),
            Arg::S(res.severity.clone()),
            Arg::S(res.outcome.as_str().to_string()),
            Arg::N(res.reason.clone()),
            Arg::I(res.examined as i64),
            Arg::B(res.vacuous),
            Arg::I(res.duration_ms as i64),
            Arg::S(json_text(&res.measured)),
            Arg::I(res.violations_total as i64),
            Arg::N(res.runbook.clone()),
            Arg::S(json_text(&sources)),
        ]);
        for (j, v) in res.violations.iter().enumerate() {
            violations.push(vec![
                Arg::S(r.run_id.clone()),
                Arg::S(res.id.clone()),
                Arg::S(res.severity.clone()),
                Arg::I(j as i64),
                Arg::I(at),
                Arg::S(json_text(v)),
            ]);
        }
    }
    (results, violations)
}

/// What a plan writes about incidents: the new states, the events, the incidents it opens and
/// those it resolves (by resolution time).
struct IncidentRows {
    states: Vec<Vec<Arg>>,
    events: Vec<Vec<Arg>>,
    opened: Vec<Vec<Arg>>,
    resolved: BTreeMap<i64, Vec<String>>,
}

fn incident_rows(plan: &Plan, run_id: &str, at: i64) -> IncidentRows {
    let states = plan
        .states
        .iter()
        .map(|s| vec![Arg::S(s.subject.clone()), Arg::S(json_text(s)), Arg::I(at)])
        .collect();
    let mut events = Vec::with_capacity(plan.events.len());
    let mut opened = Vec::new();
    let mut resolved: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in &plan.events {
        let now = ms(e.at);
        events.push(vec![
            Arg::S(run_id.to_string()),
            Arg::S(e.subject.clone()),
            Arg::N(e.incident_id.clone()),
            Arg::S(e.kind.as_str().to_string()),
            Arg::N(e.notice.map(|n| n.as_str().to_string())),
            Arg::I(now),
            Arg::S(json_text(e)),
        ]);
        match (e.kind, &e.incident_id) {
            (EventKind::Opened, Some(id)) => {
                let info = plan.subjects.get(&e.subject).cloned().unwrap_or_default();
                opened.push(vec![
                    Arg::S(id.clone()),
                    Arg::S(e.subject.clone()),
                    Arg::S(e.subject_kind.as_str().to_string()),
                    Arg::S(info.title),
                    Arg::S(info.severity),
                    Arg::I(now),
                    Arg::S(run_id.to_string()),
                    Arg::NI(e.last_red_at.map(ms)),
                ]);
            }
            (EventKind::Resolved, Some(id)) => {
                resolved.entry(now).or_default().push(id.clone());
            }
            _ => {}
        }
    }
    IncidentRows {
        states,
        events,
        opened,
        resolved,
    }
}

fn outbox_rows(plan: &Plan, run_id: &str) -> Vec<Vec<Arg>> {
    plan.outbox
        .iter()
        .map(|d| {
            let created = ms(d.created_at);
            vec![
                Arg::S(d.id.clone()),
                Arg::S(d.idempotency_key.clone()),
                Arg::S(d.sink.clone()),
                Arg::S(d.notice.clone()),
                Arg::N(d.incident_id.clone()),
                Arg::S(d.subject.clone()),
                Arg::S(run_id.to_string()),
                Arg::S(json_text(&d.payload)),
                Arg::I(created),
                Arg::S("pending".into()),
                Arg::I(0),
                Arg::I(created),
            ]
        })
        .collect()
}

impl<B: Backend> SqlStore<B> {
    async fn record_run_inner(&self, run: &RunRecord<'_>, plan: &Planner<'_>) -> Result<Recorded> {
        let r = run.report;
        let at = ms(r.started_at);
        let mut tx = B::begin_write(&self.pool).await?;
        // What the planner sees, read under the write lock.
        let input = plan_input(&mut *tx).await?;
        let plan = plan(&input);

        tx.execute(insert_run(r, at)).await?;
        let (results, violations) = result_rows(run, at);
        let (n_results, n_violations) = (results.len(), violations.len());
        B::insert(&mut tx, INSERT_RESULTS, results).await?;
        B::insert(&mut tx, INSERT_VIOLATIONS, violations).await?;
        let remembered = run
            .remembered
            .iter()
            .map(|s| {
                vec![
                    Arg::S(s.invariant.clone()),
                    Arg::S(s.key.clone()),
                    Arg::S(s.state.clone()),
                    Arg::I(ms(s.seen_at)),
                ]
            })
            .collect();
        B::insert(&mut tx, INSERT_REMEMBERED, remembered).await?;

        let inc = incident_rows(&plan, &r.run_id, at);
        B::insert(&mut tx, INSERT_STATES, inc.states).await?;
        // An incident opens and resolves in different runs, so opening first is enough.
        B::insert(&mut tx, INSERT_INCIDENTS, inc.opened).await?;
        for (at_ms, ids) in inc.resolved {
            B::resolve(&mut tx, at_ms, &r.run_id, ids).await?;
        }
        B::insert(&mut tx, INSERT_EVENTS, inc.events).await?;
        let outbox = outbox_rows(&plan, &r.run_id);
        let n_outbox = outbox.len();
        B::insert(&mut tx, INSERT_OUTBOX, outbox).await?;
        tx.commit().await.map_err(db)?;
        Ok(Recorded {
            run_id: r.run_id.clone(),
            results: n_results,
            violations: n_violations,
            events: plan.events,
            deliveries: n_outbox,
        })
    }

    async fn run_report_inner(&self, run_id: &str) -> Result<Option<RunReport>> {
        let by_id = format!("SELECT {RUN_COLS} FROM runs WHERE run_id = $1");
        let Some(row) = self.fetch_optional(Stmt::built(by_id).bind(run_id)).await? else {
            return Ok(None);
        };
        let s = rows::run_summary(&row)?;
        let mut violations: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        let of_run = format!(
            "SELECT {VIOLATION_COLS} FROM violations WHERE run_id = $1 ORDER BY invariant_id, seq"
        );
        for v in self.fetch_all(Stmt::built(of_run).bind(run_id)).await? {
            violations
                .entry(v.get("invariant_id")?)
                .or_default()
                .push(v.get("observed")?);
        }
        let results_of =
            format!("SELECT {RESULT_COLS} FROM results WHERE run_id = $1 ORDER BY seq");
        let mut results = Vec::new();
        for r in self.fetch_all(Stmt::built(results_of).bind(run_id)).await? {
            let id: String = r.get("invariant_id")?;
            results.push(rows::invariant_result(
                &r,
                violations.remove(&id).unwrap_or_default(),
            )?);
        }
        Ok(Some(RunReport {
            run_id: s.run_id,
            suite: s.suite,
            trigger: invar_core::Trigger::parse(&s.trigger)
                .ok_or_else(|| StoreError::Decode(format!("run trigger `{}`", s.trigger)))?,
            started_at: s.started_at,
            duration_ms: s.duration_ms,
            status: rows::outcome_of(&s.status)?,
            exit_code: s.exit_code,
            counts: s.counts,
            automation_error: s.automation_error,
            assessment_failures: s.counts.fail,
            lock_skipped: s.lock_skipped,
            skipped_budget: s.skipped_budget,
            sources_unavailable: s.sources_unavailable,
            results,
        }))
    }

    async fn violations_inner(&self, q: &ViolationQuery) -> Result<Page<ViolationRow>> {
        let mut f = Filter::default();
        if let Some(s) = &q.invariant {
            f.add("invariant_id = {}", s);
        }
        if let Some(s) = &q.severity {
            f.add("severity = {}", s);
        }
        if let Some(t) = q.since {
            f.add("at >= {}", ms(t));
        }
        let limit = limit_of(q.limit);
        let order = format!("ORDER BY at DESC, id DESC LIMIT {}", limit + 1);
        let sql = match &q.cursor {
            None => format!(
                "SELECT {VIOLATION_COLS} FROM violations {} {order}",
                f.where_sql()
            ),
            Some(c) => {
                let id: i64 = c
                    .parse()
                    .map_err(|_| StoreError::Invalid(format!("invalid cursor `{c}`")))?;
                // After the cursor's row in (at, id) order: the rest of its `at`, then
                // everything older — two index range scans. (A row-value `(at, id) < (…)`
                // makes SQLite seek on `at` alone and step over every row of that `at` it
                // already served: a big run's pages would get slower and slower.)
                let n = f.next();
                f.args.push(Arg::I(id));
                let at = format!("(SELECT at FROM violations WHERE id = ${n})");
                let branch = |cond: String| {
                    let mut clauses = f.clauses.clone();
                    clauses.push(cond);
                    format!(
                        "SELECT * FROM (SELECT {VIOLATION_COLS} FROM violations WHERE {} {order})",
                        clauses.join(" AND ")
                    )
                };
                format!(
                    "{} a UNION ALL {} b {order}",
                    branch(format!("at = {at} AND id < ${n}")),
                    branch(format!("at < {at}")),
                )
            }
        };
        let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
        let mut items = rows
            .iter()
            .map(rows::violation_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|v| v.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn violation_stats_inner(&self, since: Option<DateTime<Utc>>) -> Result<ViolationStats> {
        let mut f = Filter::default();
        if let Some(t) = since {
            f.add("at >= {}", ms(t));
        }
        let sql = format!(
            "SELECT invariant_id, severity, count(*) AS n, min(at) AS first_at, \
             max(at) AS last_at FROM violations {} \
             GROUP BY invariant_id, severity \
             ORDER BY count(*) DESC, invariant_id, severity",
            f.where_sql()
        );
        let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
        let mut stats = ViolationStats {
            since,
            ..ViolationStats::default()
        };
        for r in &rows {
            let s = InvariantViolationStats {
                id: r.get("invariant_id")?,
                severity: r.get("severity")?,
                count: r.get("n")?,
                first_at: r.get("first_at")?,
                last_at: r.get("last_at")?,
            };
            stats.total += s.count;
            *stats.by_severity.entry(s.severity.clone()).or_default() += s.count;
            stats.invariants.push(s);
        }
        Ok(stats)
    }

    async fn latest_outcomes_inner(
        &self,
        per_invariant: u32,
    ) -> Result<BTreeMap<String, Vec<OutcomeAt>>> {
        let mut out: BTreeMap<String, Vec<OutcomeAt>> = BTreeMap::new();
        if per_invariant == 0 {
            return Ok(out);
        }
        let n = i64::from(per_invariant.min(10_000));
        // A window over the whole of `results` sorts every row ever kept (seconds at a
        // million). Instead: the distinct invariants by a loose index scan (`inv`), each one's
        // N-th newest start time by an index probe (`bound`), and the window only over the rows
        // from there on — all through `results_invariant_started`.
        let sql = format!(
            "WITH RECURSIVE inv(id) AS ( \
                 SELECT min(invariant_id) FROM results \
                 UNION ALL \
                 SELECT (SELECT min(r.invariant_id) FROM results r WHERE r.invariant_id > inv.id) \
                 FROM inv WHERE inv.id IS NOT NULL \
             ), bound(id, since) AS ( \
                 SELECT inv.id, COALESCE((SELECT x.started_at FROM results x \
                     WHERE x.invariant_id = inv.id \
                     ORDER BY x.started_at DESC LIMIT 1 OFFSET $1), $3) \
                 FROM inv WHERE inv.id IS NOT NULL \
             ) \
             SELECT {OUTCOME_COLS} FROM ( \
                 SELECT {}, ROW_NUMBER() OVER (PARTITION BY r.invariant_id \
                     ORDER BY r.started_at DESC, r.run_id DESC, r.seq DESC) AS rn \
                 FROM bound b JOIN results r \
                     ON r.invariant_id = b.id AND r.started_at >= b.since \
             ) c WHERE rn <= $2 ORDER BY invariant_id, rn",
            rows::qualified("r", OUTCOME_COLS)
        );
        let latest = Stmt::built(sql).bind(n - 1).bind(n).bind(i64::MIN);
        for r in &self.fetch_all(latest).await? {
            out.entry(r.get("invariant_id")?)
                .or_default()
                .push(rows::outcome_at(r)?);
        }
        Ok(out)
    }

    async fn prune_inner(&self, retention: Retention, now: DateTime<Utc>) -> Result<PruneCounts> {
        let cut = |d: Duration| ms(now) - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        let runs_cut = cut(retention.runs);
        let viol_cut = cut(retention.violations);
        let mut tx = B::begin_write(&self.pool).await?;
        let mut exec = async |sql: &'static str, v: i64| -> Result<u64> {
            tx.execute(Stmt::new(sql).bind(v)).await
        };
        let results = exec("DELETE FROM results WHERE started_at < $1", runs_cut).await?;
        let runs = exec("DELETE FROM runs WHERE started_at < $1", runs_cut).await?;
        let violations = exec("DELETE FROM violations WHERE at < $1", viol_cut).await?;
        let incidents = exec(
            "DELETE FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < $1",
            runs_cut,
        )
        .await?;
        exec("DELETE FROM incident_events WHERE at < $1", runs_cut).await?;
        exec(
            "DELETE FROM delivery_attempts WHERE delivery_id IN \
             (SELECT id FROM outbox WHERE status = 'delivered' AND delivered_at < $1)",
            runs_cut,
        )
        .await?;
        let deliveries = exec(
            "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < $1",
            runs_cut,
        )
        .await?;
        // Claimed ticks age like runs, but each suite keeps its latest: `last_tick` decides
        // misfires and the dead-man's switch.
        exec(
            "DELETE FROM schedule_ticks WHERE tick < $1 AND tick < \
             (SELECT max(t.tick) FROM schedule_ticks t WHERE t.suite = schedule_ticks.suite)",
            runs_cut,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(PruneCounts {
            runs,
            results,
            violations,
            incidents,
            deliveries,
        })
    }
}

impl<B: Backend> History for SqlStore<B> {
    fn record_run<'a>(
        &'a self,
        run: &'a RunRecord<'a>,
        plan: &'a Planner<'a>,
    ) -> BoxFuture<'a, Result<Recorded>> {
        Box::pin(self.record_run_inner(run, plan))
    }

    fn incident_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, IncidentState>>> {
        Box::pin(async move {
            let mut c = self.pool.acquire().await.map_err(db)?;
            read_states(&mut *c).await
        })
    }

    fn runs<'a>(&'a self, q: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunSummary>>> {
        Box::pin(async move {
            let mut f = Filter::default();
            if let Some(s) = &q.suite {
                f.add("suite = {}", s);
            }
            if let Some(t) = q.since {
                f.add("started_at >= {}", ms(t));
            }
            if let Some(t) = q.until {
                f.add("started_at < {}", ms(t));
            }
            let sql = format!(
                "SELECT {RUN_COLS} FROM runs {} ORDER BY started_at DESC, run_id DESC LIMIT {}",
                f.where_sql(),
                limit_of(q.limit)
            );
            let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
            rows.iter().map(rows::run_summary).collect()
        })
    }

    fn run_report<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunReport>>> {
        Box::pin(self.run_report_inner(run_id))
    }

    fn results<'a>(&'a self, q: &'a ResultQuery) -> BoxFuture<'a, Result<Vec<ResultEntry>>> {
        Box::pin(async move {
            let mut f = Filter::default();
            if let Some(s) = &q.invariant {
                f.add("r.invariant_id = {}", s);
            }
            if let Some(s) = &q.suite {
                f.add("r.suite = {}", s);
            }
            if let Some(t) = q.since {
                f.add("r.started_at >= {}", ms(t));
            }
            let sql = format!(
                "SELECT {}, u.trigger FROM results r JOIN runs u ON u.run_id = r.run_id {} \
                 ORDER BY r.started_at DESC, r.run_id DESC, r.seq LIMIT {}",
                rows::qualified("r", RESULT_COLS),
                f.where_sql(),
                limit_of(q.limit)
            );
            let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
            rows.iter().map(rows::result_entry).collect()
        })
    }

    fn incidents<'a>(&'a self, q: &'a IncidentQuery) -> BoxFuture<'a, Result<Vec<IncidentRow>>> {
        Box::pin(async move {
            let mut f = Filter::default();
            if q.open_only {
                f.clauses.push("resolved_at IS NULL".into());
            }
            if let Some(s) = &q.subject {
                f.add("subject = {}", s);
            }
            if let Some(t) = q.since {
                f.add("(opened_at >= {} OR resolved_at >= {})", ms(t));
            }
            let sql = format!(
                "SELECT {INCIDENT_COLS} FROM incidents {} \
                 ORDER BY opened_at DESC, id DESC LIMIT {}",
                f.where_sql(),
                limit_of(q.limit)
            );
            let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
            rows.iter().map(rows::incident_row).collect()
        })
    }

    fn violations<'a>(
        &'a self,
        q: &'a ViolationQuery,
    ) -> BoxFuture<'a, Result<Page<ViolationRow>>> {
        Box::pin(self.violations_inner(q))
    }

    fn violation(&self, id: i64) -> BoxFuture<'_, Result<Option<ViolationRow>>> {
        Box::pin(async move {
            let sql = format!("SELECT {VIOLATION_COLS} FROM violations WHERE id = $1");
            self.fetch_optional(Stmt::built(sql).bind(id))
                .await?
                .as_ref()
                .map(rows::violation_row)
                .transpose()
        })
    }

    fn violation_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<ViolationStats>> {
        Box::pin(self.violation_stats_inner(since))
    }

    fn latest_outcomes(
        &self,
        per_invariant: u32,
    ) -> BoxFuture<'_, Result<BTreeMap<String, Vec<OutcomeAt>>>> {
        Box::pin(self.latest_outcomes_inner(per_invariant))
    }

    fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BoxFuture<'_, Result<ReportData>> {
        Box::pin(self.report_inner(from, to))
    }

    fn prune(
        &self,
        retention: Retention,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<PruneCounts>> {
        Box::pin(self.prune_inner(retention, now))
    }

    fn remembered<'a>(&'a self, invariant: &'a str) -> BoxFuture<'a, Result<Vec<RememberedState>>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {REMEMBERED_COLS} FROM remembered_states \
                 WHERE invariant_id = $1 ORDER BY key"
            );
            let rows = self.fetch_all(Stmt::built(sql).bind(invariant)).await?;
            rows.iter().map(rows::remembered).collect()
        })
    }

    fn forget_before<'a>(
        &'a self,
        invariant: &'a str,
        before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(
            self.execute(
                Stmt::new("DELETE FROM remembered_states WHERE invariant_id = $1 AND seen_at < $2")
                    .bind(invariant)
                    .bind(ms(before)),
            ),
        )
    }

    fn measurements<'a>(
        &'a self,
        q: &'a MeasurementQuery,
    ) -> BoxFuture<'a, Result<Page<Measurement>>> {
        Box::pin(self.measurements_inner(q))
    }

    fn incident_events(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<IncidentEventRow>>> {
        Box::pin(self.incident_events_inner(since, limit))
    }
}
