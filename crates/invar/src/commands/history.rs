//! `invar history` and `invar incidents`: what the history store holds, newest first, as a
//! table or JSON.

use super::Ctx;
use crate::cli::{HistoryArgs, IncidentsArgs, ListFormat};
use crate::exit::Exit;
use anyhow::Result;
use chrono::{DateTime, Utc};
use invar_core::Config;
use invar_store::{IncidentQuery, ResultQuery, RunQuery, Store};
use std::fmt::Write as _;

/// `invar history`: `--invariant ID` lists that invariant's results, else whole runs.
pub fn history(args: &HistoryArgs, cx: &Ctx) -> Result<Exit> {
    let since = match args.since.map(|d| super::report::since_ago(Utc::now(), d)) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Ok(crate::exit::usage(e)),
    };
    let json = args.format == ListFormat::Json;
    print_from_store(cx, async |_, store: &dyn Store| {
        render_history(
            store,
            args.invariant.clone(),
            args.suite.clone(),
            since,
            args.limit,
            json,
        )
        .await
    })
}

/// `invar incidents [--open]`.
pub fn incidents(args: &IncidentsArgs, cx: &Ctx) -> Result<Exit> {
    let json = args.format == ListFormat::Json;
    print_from_store(cx, async |cfg, store: &dyn Store| {
        render_incidents(cfg, store, args.open, args.limit, json).await
    })
}

/// Opens the config's history store and prints what `render` makes of it: exit 3 when the
/// config does not load, 2 when the store cannot be opened or read.
pub(super) fn print_from_store(
    cx: &Ctx,
    render: impl AsyncFnOnce(&Config, &dyn Store) -> Result<String>,
) -> Result<Exit> {
    let Some(cfg) = cx.load() else {
        return Ok(Exit::Usage);
    };
    let text = cx.block_on(async {
        let store = super::recording::open(&cfg).await?;
        render(&cfg, store.as_ref()).await
    })?;
    match text {
        Ok(t) => {
            print!("{t}");
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
            Ok(Exit::Automation)
        }
    }
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn ago(d: chrono::TimeDelta) -> String {
    invar_core::units::format_duration(d.to_std().unwrap_or_default())
}

async fn render_history(
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

/// Open incidents of invariants a silence holds now say so (`silenced` in JSON).
async fn render_incidents(
    cfg: &Config,
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
    let now = Utc::now();
    let silences = invar_alerts::active_silences(store, cfg, now).await?;
    let silenced = |i: &invar_store::IncidentRow| {
        let inv = cfg.invariant(&i.subject)?;
        (i.kind == "invariant" && i.resolved_at.is_none())
            .then(|| invar_alerts::silencing(cfg, &silences, inv))
            .flatten()
    };
    if json {
        let mut items = Vec::with_capacity(rows.len());
        for i in &rows {
            let mut v = serde_json::to_value(i)?;
            if let (Some(s), Some(o)) = (silenced(i), v.as_object_mut()) {
                o.insert("silenced".into(), serde_json::to_value(s)?);
            }
            items.push(v);
        }
        return Ok(serde_json::to_string_pretty(&items)? + "\n");
    }
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
        let silence = silenced(&i)
            .map(|s| format!(" · {}", crate::output::silenced_line(&s)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<9} {:<24} {:<8} opened {}  {}{}{}  ({})",
            i.kind,
            i.subject,
            i.severity,
            ts(&i.opened_at),
            state,
            last_red,
            silence,
            i.id
        );
    }
    Ok(out)
}
