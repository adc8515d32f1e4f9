//! `invar report`: the operator's audit over a calendar month or a recent window, as
//! Markdown or JSON.

use super::Ctx;
use super::history::{print_from_store, ts};
use crate::cli::{ReportArgs, ReportFormat};
use crate::exit::{Exit, usage};
use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Utc};
use invar_store::{ReportData, Store};
use std::fmt::Write as _;
use std::time::Duration;

/// `invar report [--month YYYY-MM | --since D] [--format markdown|json] [--output FILE]`.
pub fn execute(args: &ReportArgs, cx: &Ctx) -> Result<Exit> {
    let (from, to) = match range(args.month.as_deref(), args.since) {
        Ok(r) => r,
        Err(e) => return Ok(usage(e)),
    };
    let json = args.format == ReportFormat::Json;
    print_from_store(cx, async |_, store: &dyn Store| {
        let data = store.report(from, to).await?;
        let text = if json {
            serde_json::to_string_pretty(&data)? + "\n"
        } else {
            report_markdown(&data)
        };
        match &args.output {
            Some(f) => {
                std::fs::write(f, text).with_context(|| format!("writing {}", f.display()))?;
                Ok(String::new())
            }
            None => Ok(text),
        }
    })
}

/// The range of `--month YYYY-MM` (UTC) or `--since D` (until now).
fn range(
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
            let at = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
            Ok((at(start), at(next)))
        }
        (None, Some(d)) => Ok((since_ago(now, d)?, now)),
        (None, None) => {
            let start = now
                .date_naive()
                .with_day(1)
                .unwrap_or_else(|| now.date_naive());
            Ok((start.and_time(chrono::NaiveTime::MIN).and_utc(), now))
        }
    }
}

/// `now - d`, or what is wrong with `--since D` (further back than a date can be).
pub(super) fn since_ago(now: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, String> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!(
                "`--since`: {} s is further back than a date can be",
                d.as_secs()
            )
        })
}

fn report_markdown(r: &ReportData) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_ago_refuses_what_no_date_can_be() {
        let now = Utc::now();
        assert_eq!(
            since_ago(now, Duration::from_secs(3600)),
            Ok(now - chrono::TimeDelta::hours(1))
        );
        assert!(since_ago(now, Duration::MAX).is_err());
        assert!(since_ago(now, Duration::from_secs(400_000 * 365 * 86_400)).is_err());
    }
}
