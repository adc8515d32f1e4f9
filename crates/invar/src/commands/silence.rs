//! `invar silence add|list|expire`: one-off silences in the config's history store.

use super::Ctx;
use super::history::print_from_store;
use crate::cli::{ListFormat, SilenceAddArgs, SilenceCommand, SilenceListArgs};
use crate::exit::Exit;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use invar_store::{NewSilence, Silence, Store};
use std::fmt::Write as _;

pub fn execute(cmd: &SilenceCommand, cx: &Ctx) -> Result<Exit> {
    match cmd {
        SilenceCommand::Add(args) => add(args, cx),
        SilenceCommand::List(args) => list(args, cx),
        SilenceCommand::Expire { id } => {
            let id = id.clone();
            print_from_store(cx, async move |_, store: &dyn Store| {
                if store.expire_silence(&id, Utc::now()).await? {
                    Ok(format!("expired {id}\n"))
                } else {
                    bail!("no active silence has id `{id}`")
                }
            })
        }
    }
}

/// The new silence from the arguments, checked before the store is opened (exit 3).
fn new_silence(
    matcher: &str,
    duration: std::time::Duration,
    reason: &str,
    starts: Option<&str>,
    by: &str,
) -> Result<NewSilence, String> {
    let now = Utc::now();
    let starts_at = match starts {
        None => now,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("`--starts {s}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&Utc),
    };
    invar_alerts::new_silence(matcher, starts_at, duration, reason, by, now)
        .map_err(|e| format!("`invar silence add`: {e}"))
}

fn add(args: &SilenceAddArgs, cx: &Ctx) -> Result<Exit> {
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let new = match new_silence(
        &args.matcher,
        args.duration,
        &args.reason,
        args.starts.as_deref(),
        &by,
    ) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    print_from_store(cx, async move |_, store: &dyn Store| {
        let s = store
            .add_silence(&new)
            .await
            .context("adding the silence")?;
        Ok(format!("{}\n", s.id))
    })
}

fn list(args: &SilenceListArgs, cx: &Ctx) -> Result<Exit> {
    let (all, json) = (args.all, args.format == ListFormat::Json);
    print_from_store(cx, async move |_, store: &dyn Store| {
        let now = Utc::now();
        let items = store.silences((!all).then_some(now)).await?;
        Ok(render(&items, json))
    })
}

fn render(items: &[Silence], json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(&serde_json::json!({ "items": items }))
            .unwrap_or_default()
            + "\n";
    }
    if items.is_empty() {
        return "no silences\n".into();
    }
    let mut out = String::new();
    for s in items {
        let ends = s.until();
        let _ = writeln!(
            out,
            "{}  {} → {}  {}  by {}{}",
            s.id,
            s.starts_at.format("%Y-%m-%d %H:%M"),
            ends.format("%Y-%m-%d %H:%M UTC"),
            s.matcher,
            s.created_by,
            if s.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", s.reason)
            }
        );
    }
    out
}
