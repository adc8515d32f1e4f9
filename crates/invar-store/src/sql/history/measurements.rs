//! What trends are drawn from: one invariant's measured series a page at a time
//! ([`crate::History::measurements`], for `GET /api/v1/invariants/{id}/measurements`), and the
//! incident events of a window ([`crate::History::incident_events`], the status page's
//! incident timeline).

use super::super::rows::{Cols, json};
use super::super::{Arg, Backend, Filter, SqlStore, Stmt, limit_of};
use crate::types::*;
use crate::{Result, StoreError};
use chrono::{DateTime, Utc};

/// `MS~RUN_ID`, as [`Page::next_cursor`] of a measurements page gives it.
fn parse_cursor(c: &str) -> Result<(i64, String)> {
    c.split_once('~')
        .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| StoreError::Invalid(format!("invalid cursor `{c}`")))
}

fn measurement(r: &impl Cols) -> Result<Measurement> {
    Ok(Measurement {
        run_id: r.get("run_id")?,
        started_at: r.get("started_at")?,
        outcome: r.get("outcome")?,
        measured: json(r, "measured")?,
    })
}

impl<B: Backend> SqlStore<B> {
    pub(super) async fn measurements_inner(
        &self,
        q: &MeasurementQuery,
    ) -> Result<Page<Measurement>> {
        let mut f = Filter::default();
        f.add("invariant_id = {}", q.invariant.as_str());
        if let Some(t) = q.since {
            f.add("started_at >= {}", ms(t));
        }
        if let Some(c) = &q.cursor {
            let (t, run) = parse_cursor(c)?;
            // After the cursor's row in (started_at, run_id) descending order; the bound on
            // `started_at` alone keeps it one range scan of `results_invariant_started`.
            let n = f.next();
            f.clauses.push(format!(
                "started_at <= ${n} AND (started_at < ${n} OR run_id < ${})",
                n + 1
            ));
            f.args.push(Arg::I(t));
            f.args.push(Arg::S(run));
        }
        let limit = limit_of(q.limit);
        let sql = format!(
            "SELECT run_id, started_at, outcome, measured FROM results {} \
             ORDER BY started_at DESC, run_id DESC LIMIT {}",
            f.where_sql(),
            limit + 1
        );
        let rows = self.fetch_all(Stmt::built(sql).bind_all(f.args)).await?;
        let mut items = rows.iter().map(measurement).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items
                .last()
                .map(|m| format!("{}~{}", ms(m.started_at), m.run_id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(super) async fn incident_events_inner(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<IncidentEventRow>> {
        let sql = format!(
            "SELECT subject, incident_id, event, notice, at FROM incident_events \
             WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT {}",
            limit_of(limit)
        );
        let rows = self.fetch_all(Stmt::built(sql).bind(ms(since))).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(IncidentEventRow {
                    subject: r.get("subject")?,
                    incident_id: r.get("incident_id")?,
                    event: r.get("event")?,
                    notice: r.get("notice")?,
                    at: r.get("at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}
