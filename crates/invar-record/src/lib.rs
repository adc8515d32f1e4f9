//! Recording one run into the history store: the run with its incident transitions and outbox
//! rows (one transaction), the states `transitions` invariants remember, forgetting keys unseen
//! for longer than `remember`, and pruning what retention no longer keeps. Its own crate so
//! that `invar run` and `invar watch` share it without the CLI depending on the daemon;
//! delivering the outbox is the caller's business (a bounded flush for one-shot commands, the
//! outbox worker for the watcher).

use anyhow::{Context, Result};
use chrono::Utc;
use invar_core::{Check, Config, Remembered, RunReport};
use invar_store::{Recorded, RememberedState, Store};
use std::collections::HashMap;

/// The states every `transitions` invariant of the config remembers, by invariant id.
pub async fn load_remembered(
    store: &dyn Store,
    cfg: &Config,
) -> Result<HashMap<String, Vec<Remembered>>> {
    let mut out = HashMap::new();
    for inv in &cfg.invariants {
        if !matches!(inv.check, Check::Transitions(_)) {
            continue;
        }
        let states = store
            .remembered(&inv.id)
            .await
            .with_context(|| format!("reading the states `{}` remembers", inv.id))?;
        out.insert(
            inv.id.clone(),
            states
                .into_iter()
                .map(|s| Remembered {
                    key: s.key,
                    state: s.state,
                    seen_at: s.seen_at,
                })
                .collect(),
        );
    }
    Ok(out)
}

/// Records one run and what follows from it, except delivery (see the module doc).
pub async fn record(
    store: &dyn Store,
    cfg: &Config,
    report: &mut RunReport,
    remembered: HashMap<String, Vec<Remembered>>,
) -> Result<Recorded> {
    let mut states = Vec::new();
    let mut forget = Vec::new();
    for (id, list) in &remembered {
        if let Some(inv) = cfg.invariant(id)
            && let Check::Transitions(tc) = &inv.check
        {
            forget.push((id.clone(), tc.remember));
        }
        states.extend(list.iter().map(|r| RememberedState {
            invariant: id.clone(),
            key: r.key.clone(),
            state: r.state.clone(),
            seen_at: r.seen_at,
        }));
    }
    let recorded = invar_alerts::record_run_with(store, cfg, report, states)
        .await
        .context("recording the run")?;
    let now = report.started_at;
    for (id, remember) in forget {
        let before = now - chrono::Duration::from_std(remember).unwrap_or(chrono::Duration::MAX);
        store
            .forget_before(&id, before)
            .await
            .with_context(|| format!("forgetting old states of `{id}`"))?;
    }
    for e in &recorded.events {
        tracing::info!(event = ?e, "incident");
    }
    store
        .prune(cfg.retention, Utc::now())
        .await
        .context("pruning old history")?;
    Ok(recorded)
}

/// The most recent runs of a window `hist` reads (the store's page limit): 104 days of
/// 15-minute runs.
pub const HISTORY_RUNS: u32 = 10_000;

/// The earlier runs each invariant with `history:` sees at `now` in a run of `suite`: one
/// query per such invariant, cut to `now − window` (and, with `same_weekday`, to runs on
/// `now`'s weekday in the suite's time zone). A run counts when its probe was read: its
/// outcome is not `error` and it measured `count` (a check skipped by `skip_if` or the budget
/// measured nothing).
pub async fn load_history(
    store: &dyn Store,
    cfg: &Config,
    suite: &str,
    now: chrono::DateTime<Utc>,
) -> Result<HashMap<String, Vec<invar_core::hist::PastRun>>> {
    use invar_core::hist::{PastRun, weekday};
    let zone = cfg.suite(suite).and_then(|s| s.timezone.as_deref());
    let today = weekday(now, zone);
    let mut out = HashMap::new();
    for inv in &cfg.invariants {
        let Some(h) = &inv.history else { continue };
        let since = chrono::TimeDelta::from_std(h.window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w));
        // Only what `hist` needs (start, outcome, measured), over the invariant's index.
        let rows = store
            .measurements(&invar_store::MeasurementQuery {
                invariant: inv.id.clone(),
                since,
                limit: HISTORY_RUNS,
                cursor: None,
            })
            .await
            .with_context(|| format!("reading the history of `{}`", inv.id))?
            .items;
        let past: Vec<PastRun> = rows
            .into_iter()
            .filter(|r| r.started_at < now && r.outcome != "error")
            .filter(|r| {
                r.measured
                    .get("count")
                    .is_some_and(serde_json::Value::is_number)
            })
            .filter(|r| !h.same_weekday || weekday(r.started_at, zone) == today)
            .map(|r| PastRun {
                at: r.started_at,
                measured: r.measured,
            })
            .collect();
        out.insert(inv.id.clone(), past);
    }
    Ok(out)
}

/// For each invariant with a `vacuous_after` (its own, else the suite's) whose every recorded
/// run for at least that long was a vacuous pass: when it last examined anything (its oldest
/// run of the streak when it never did). One query per such invariant, newest first.
pub async fn load_vacuity(
    store: &dyn Store,
    cfg: &Config,
    suite: &str,
    now: chrono::DateTime<Utc>,
) -> Result<HashMap<String, chrono::DateTime<Utc>>> {
    let suite_after = cfg.suite(suite).and_then(|s| s.vacuous_after);
    let mut out = HashMap::new();
    for inv in &cfg.invariants {
        let Some(after) = inv.vacuous_after.or(suite_after) else {
            continue;
        };
        let Some(after) = chrono::TimeDelta::from_std(after).ok() else {
            continue;
        };
        let rows = store
            .results(&invar_store::ResultQuery {
                invariant: Some(inv.id.clone()),
                limit: HISTORY_RUNS,
                ..Default::default()
            })
            .await
            .with_context(|| format!("reading the recent results of `{}`", inv.id))?;
        // Newest first: the streak of vacuous passes, up to the first run that examined
        // something (or decided otherwise).
        let streak: Vec<_> = rows
            .iter()
            .take_while(|r| r.vacuous && r.outcome == "pass")
            .collect();
        let Some(oldest) = streak.last() else {
            continue;
        };
        let since = rows
            .get(streak.len())
            .map_or(oldest.started_at, |examined| examined.started_at);
        if now - oldest.started_at >= after {
            out.insert(inv.id.clone(), since);
        }
    }
    Ok(out)
}
