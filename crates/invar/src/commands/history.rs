//! `invar history` and `invar incidents`: what the history store holds, newest first, as a
//! table or JSON (and `history` as CSV, with an invariant's measured series).

use super::Ctx;
use super::series::{Series, csv_field};
use crate::cli::{HistoryArgs, HistoryFormat, IncidentsArgs, ListFormat};
use crate::exit::Exit;
use anyhow::Result;
use chrono::{DateTime, Utc};
use invar_core::Config;
use invar_store::{IncidentQuery, ResultEntry, ResultQuery, RunQuery, RunSummary, Store};
use std::fmt::Write as _;
use std::io::IsTerminal;

/// `invar history`: `--invariant ID` lists that invariant's results and its measured series,
/// else whole runs.
pub fn history(args: &HistoryArgs, cx: &Ctx) -> Result<Exit> {
    let since = match args.since.map(|d| super::report::since_ago(Utc::now(), d)) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Ok(crate::exit::usage(e)),
    };
    let out = Out {
        format: args.format,
        terminal: std::io::stdout().is_terminal(),
    };
    print_from_store(cx, async |_, store: &dyn Store| match &args.invariant {
        Some(id) => {
            let q = ResultQuery {
                invariant: Some(id.clone()),
                suite: args.suite.clone(),
                since,
                limit: args.limit,
            };
            render_results(id, &store.results(&q).await?, out)
        }
        None => {
            let q = RunQuery {
                suite: args.suite.clone(),
                since,
                until: None,
                limit: args.limit,
            };
            render_runs(&store.runs(&q).await?, out)
        }
    })
}

/// How `invar history` prints: the format, and whether stdout is a terminal (sparklines).
#[derive(Clone, Copy)]
struct Out {
    format: HistoryFormat,
    terminal: bool,
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

/// One invariant's results, newest first, then its measured series.
fn render_results(id: &str, rows: &[ResultEntry], out: Out) -> Result<String> {
    let series = Series::new(rows);
    let mut text = String::new();
    match out.format {
        HistoryFormat::Json => {
            return Ok(serde_json::to_string_pretty(&series.json(id, rows))? + "\n");
        }
        HistoryFormat::Csv => return Ok(series.csv()),
        HistoryFormat::Table => {}
    }
    let _ = writeln!(
        text,
        "history of `{id}` ({} results, newest first)",
        rows.len()
    );
    for r in rows {
        let _ = writeln!(
            text,
            "  {}  {:<5}  {:<8} run {}  {}{}",
            ts(&r.started_at),
            r.outcome,
            r.suite,
            &r.run_id[..r.run_id.len().min(13)],
            r.reason.as_deref().unwrap_or_default(),
            if r.violations_total > 0 {
                format!(" ({} violations)", r.violations_total)
            } else {
                String::new()
            }
        );
    }
    text.push_str(&series.table(out.terminal));
    Ok(text)
}

/// Whole runs, newest first (CSV: one row per run).
fn render_runs(rows: &[RunSummary], out: Out) -> Result<String> {
    let mut text = String::new();
    match out.format {
        HistoryFormat::Json => return Ok(serde_json::to_string_pretty(rows)? + "\n"),
        HistoryFormat::Csv => {
            text.push_str(
                "started_at,run_id,suite,trigger,status,duration_ms,pass,warn,fail,skip,error,exit_code\n",
            );
            for r in rows {
                let c = r.counts;
                let _ = writeln!(
                    text,
                    "{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    csv_field(&r.run_id),
                    csv_field(&r.suite),
                    csv_field(&r.trigger),
                    csv_field(&r.status),
                    r.duration_ms,
                    c.pass,
                    c.warn,
                    c.fail,
                    c.skip,
                    c.error,
                    r.exit_code
                );
            }
            return Ok(text);
        }
        HistoryFormat::Table => {}
    }
    let _ = writeln!(text, "{} runs, newest first", rows.len());
    for r in rows {
        let c = r.counts;
        let _ = writeln!(
            text,
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
    Ok(text)
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
