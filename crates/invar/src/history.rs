//! Recording runs (store + outbox flush + retention) and the read commands over the history:
//! `invar history`, `invar incidents`, `invar report`.

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Utc};
use invar_core::{Check, Config, Remembered, RunReport, StoreSpec};
use invar_store::{IncidentQuery, ReportData, ResultQuery, RunQuery, Store};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a one-shot command waits for pending alerts before leaving them queued.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

pub async fn open(cfg: &Config) -> Result<Arc<dyn Store>> {
    let store = invar_store::open(&cfg.store)
        .await
        .context("opening the history store")?;
    Ok(Arc::from(store))
}

/// Opens the store only to read what `transitions` invariants remember (`--dry-run`): None when
/// the config has no `transitions` invariant or the SQLite store was never created (nothing
/// remembered; a dry run does not create it).
pub async fn open_for_memory(cfg: &Config) -> Result<Option<Arc<dyn Store>>> {
    let any = cfg
        .invariants
        .iter()
        .any(|i| matches!(i.check, Check::Transitions(_)));
    if !any {
        return Ok(None);
    }
    if let StoreSpec::Sqlite { path } = &cfg.store
        && !path.exists()
    {
        return Ok(None);
    }
    open(cfg).await.map(Some)
}

/// The states every `transitions` invariant of the config remembers, by invariant id.
pub async fn load_remembered(
    store: &dyn Store,
    cfg: &Config,
) -> Result<HashMap<String, Vec<Remembered>>> {
    invar_watch::recorder::load_remembered(store, cfg).await
}

/// Records one run (see [`invar_watch::recorder::record`]), then tries every pending delivery
/// within a bounded wait; what fails stays queued for the next run.
pub async fn record(
    store: &Arc<dyn Store>,
    cfg: &Config,
    report: &RunReport,
    remembered: HashMap<String, Vec<Remembered>>,
) -> Result<()> {
    invar_watch::recorder::record(store.as_ref(), cfg, report, remembered).await?;
    let outbox = invar_alerts::Outbox::new(store.clone(), &cfg.alerts);
    let flushed = outbox
        .flush(FLUSH_WAIT)
        .await
        .context("delivering alerts")?;
    if flushed.delivered > 0 {
        eprintln!("alerts: {} delivered", flushed.delivered);
    }
    if flushed.pending > 0 {
        eprintln!(
            "alerts: {} still queued after {} failed attempts; they are retried on the next run",
            flushed.pending, flushed.failed_attempts
        );
    }
    Ok(())
}

/// `--artifacts DIR`: the run report at `DIR/YYYY-MM-DD/<run_id>.json` (UTC date).
pub fn write_artifact(dir: &Path, report: &RunReport) -> Result<std::path::PathBuf> {
    let day = report.started_at.get(..10).unwrap_or("unknown-date");
    let folder = dir.join(day);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join(format!("{}.json", report.run_id));
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn ago(d: chrono::TimeDelta) -> String {
    invar_core::units::format_duration(d.to_std().unwrap_or_default())
}

pub async fn history(
    store: &dyn Store,
    invariant: Option<String>,
    suite: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: u32,
    json: bool,
) -> Result<String> {
    let mut out = String::new();
    if let Some(id) = invariant {
        let q = ResultQuery {
            invariant: Some(id.clone()),
            suite,
            since,
            limit,
        };
        let rows = store.results(&q).await?;
        if json {
            return Ok(serde_json::to_string_pretty(&rows)? + "\n");
        }
        let _ = writeln!(
            out,
            "history of `{id}` ({} results, newest first)",
            rows.len()
        );
        for r in rows {
            let _ = writeln!(
                out,
                "  {}  {:<5}  {:<8} run {}  {}{}",
                ts(&r.started_at),
                r.outcome,
                r.suite,
                &r.run_id[..r.run_id.len().min(13)],
                r.reason.unwrap_or_default(),
                if r.violations_total > 0 {
                    format!(" ({} violations)", r.violations_total)
                } else {
                    String::new()
                }
            );
        }
    } else {
        let q = RunQuery {
            suite,
            since,
            until: None,
            limit,
        };
        let rows = store.runs(&q).await?;
        if json {
            return Ok(serde_json::to_string_pretty(&rows)? + "\n");
        }
        let _ = writeln!(out, "{} runs, newest first", rows.len());
        for r in rows {
            let c = r.counts;
            let _ = writeln!(
                out,
                "  {}  {:<6} {:<10} {:<8} {:>6} ms  pass {} warn {} fail {} skip {} error {}  exit {}  {}",
                ts(&r.started_at),
                r.status,
                r.suite,
                r.trigger,
                r.duration_ms,
                c.pass,
                c.warn,
                c.fail,
                c.skip,
                c.error,
                r.exit_code,
                r.run_id
            );
        }
    }
    Ok(out)
}

pub async fn incidents(
    store: &dyn Store,
    open_only: bool,
    limit: u32,
    json: bool,
) -> Result<String> {
    let rows = store
        .incidents(&IncidentQuery {
            open_only,
            limit,
            ..Default::default()
        })
        .await?;
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let now = Utc::now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}incidents",
        rows.len(),
        if open_only { "open " } else { "" }
    );
    for i in rows {
        let state = match i.resolved_at {
            None => format!("OPEN for {}", ago(now - i.opened_at)),
            Some(r) => format!("resolved after {}", ago(r - i.opened_at)),
        };
        let last_red = i
            .last_red_at
            .map(|t| format!(" · last red {} ago", ago(now - t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<9} {:<24} {:<8} opened {}  {}{}  ({})",
            i.kind,
            i.subject,
            i.severity,
            ts(&i.opened_at),
            state,
            last_red,
            i.id
        );
    }
    Ok(out)
}

/// The range of `--month YYYY-MM` (UTC) or `--since D` (until now).
pub fn range(
    month: Option<&str>,
    since: Option<Duration>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let now = Utc::now();
    match (month, since) {
        (Some(m), _) => {
            let start = chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
                .map_err(|_| format!("`--month {m}`: expected YYYY-MM"))?;
            let next = if start.month() == 12 {
                chrono::NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
            }
            .ok_or("month out of range")?;
            let at = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            Ok((at(start), at(next)))
        }
        (None, Some(d)) => Ok((
            now - chrono::TimeDelta::from_std(d).map_err(|e| e.to_string())?,
            now,
        )),
        (None, None) => {
            let start = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
                .expect("first of month");
            Ok((start.and_hms_opt(0, 0, 0).expect("midnight").and_utc(), now))
        }
    }
}

pub fn report_markdown(r: &ReportData) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# invar audit: {} → {}\n", ts(&r.from), ts(&r.to));
    let _ = writeln!(o, "## Runs per suite and trigger\n");
    let _ = writeln!(
        o,
        "| suite | trigger | runs | pass | warn | fail | error | lock skipped | skipped (budget) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &r.runs {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.suite,
            s.trigger,
            s.runs,
            s.pass,
            s.warn,
            s.fail,
            s.error,
            s.lock_skipped,
            s.skipped_budget
        );
    }
    let _ = writeln!(o, "\n## Outcomes per invariant\n");
    let _ = writeln!(
        o,
        "| id | severity | runs | pass | warn | fail | skip | error | vacuous |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for i in &r.outcomes {
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            i.id, i.severity, i.runs, i.pass, i.warn, i.fail, i.skip, i.error, i.vacuous
        );
    }
    let ms = |v: Option<u64>| {
        v.map(|m| invar_core::units::format_duration(Duration::from_millis(m)))
            .unwrap_or_else(|| "—".into())
    };
    let _ = writeln!(
        o,
        "\n## Incidents\n\n{} opened, {} resolved · time to resolve: median {}, max {}\n",
        r.incidents_opened,
        r.incidents_resolved,
        ms(r.median_time_to_resolve_ms),
        ms(r.max_time_to_resolve_ms)
    );
    for i in &r.incidents {
        let resolved = i
            .resolved_at
            .map(|t| format!("resolved {}", ts(&t)))
            .unwrap_or_else(|| "still open".into());
        let _ = writeln!(
            o,
            "- `{}` ({}) opened {} — {}",
            i.subject,
            i.severity,
            ts(&i.opened_at),
            resolved
        );
    }
    let list = |title: &str, items: &[invar_store::Count]| {
        let mut s = format!("\n## {title}\n\n");
        if items.is_empty() {
            s.push_str("none\n");
        }
        for c in items {
            let _ = writeln!(s, "- `{}`: {}", c.name, c.count);
        }
        s
    };
    o.push_str(&list("Flapping invariants", &r.flapping));
    o.push_str(&list("Vacuous passes", &r.vacuous));
    o.push_str(&list("Skips by reason", &r.skips_by_reason));
    o.push_str(&list("Errors by source", &r.errors_by_source));
    o.push_str(&list(
        "Sources unavailable (runs)",
        &r.unavailable_by_source,
    ));
    o
}
