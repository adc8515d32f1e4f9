//! invar-alerts: from a recorded run to notices in people's hands — the incident planning that
//! decides which sink gets which notice, the sinks (`slack`, `webhook`, `email`,
//! `alertmanager`, `pagerduty`: one module each under `sinks/`) and the outbox worker that
//! delivers them.
//!
//! The flow for one run:
//! 1. [`record_run`] observes the report (core [`invar_core::incident::observe`]), advances
//!    every subject's incident state and routes each notice to its sinks ([`plan()`]), and
//!    hands all of it to the store, which writes run, results, violations, states, events and
//!    outbox rows in **one transaction**.
//! 2. [`Outbox::flush`] (one-shot `invar run`) or [`Outbox::run`] (the watcher) delivers pending
//!    rows — oldest first, in order per sink — and records every attempt. A row is marked
//!    delivered only after a 2xx (HTTP) or an accepted message (SMTP); a failure schedules
//!    the next attempt with exponential backoff and jitter. Nothing is dropped: a sink outage
//!    delays notices, and the idempotency key (stable across retries) lets a receiver dedupe
//!    the rare retry of a notice whose success reply was lost.
//!
//! Secrets: sink URLs and SMTP credentials live only in the config's [`invar_core::Secret`]s,
//! PagerDuty routing keys in [`invar_core::SecretToken`]s, Alertmanager headers in
//! [`invar_core::HeaderValue`]s.
//! The outbox holds sink *names*; every delivery error is stripped of URLs
//! (`reqwest::Error::without_url`) and scrubbed of the sink's URL, path, user and password
//! before it is logged or stored.

mod outbox;
mod plan;
mod render;
mod sinks;

pub use outbox::{Backoff, FlushReport, Outbox};
pub use plan::{AlertPayload, RunRef, plan};
pub use render::{email_html, email_subject, email_text, slack_message, webhook_body};
pub use sinks::{
    AlertmanagerSink, DeliveryError, EmailSink, HttpSink, PagerdutySink, Sink, alertmanager_alerts,
    build_sink, pagerduty_event, scrub,
};

use chrono::{DateTime, Utc};
use invar_core::incident::observe;
use invar_core::silence::ActiveSilence;
use invar_core::{Config, RunReport, SilencedBy};
use invar_store::{Recorded, RememberedState, RunRecord, Store, StoreError};

/// Records a run and everything it causes — incident transitions and their outbox rows — in
/// one transaction. `--dry-run` must not call this.
pub async fn record_run(
    store: &dyn Store,
    config: &Config,
    report: &RunReport,
) -> Result<Recorded, StoreError> {
    record_run_with(store, config, &mut report.clone(), Vec::new()).await
}

/// [`record_run`], also upserting the states `transitions` invariants remember from this run
/// (in the same transaction as the run). Marks in `report` which invariants a silence holds
/// (`silenced`), the same marks that hold back their firing notices.
pub async fn record_run_with(
    store: &dyn Store,
    config: &Config,
    report: &mut RunReport,
    remembered: Vec<RememberedState>,
) -> Result<Recorded, StoreError> {
    let now = report.started_at;
    let silences = active_silences(store, config, now).await?;
    mark_silenced(config, report, &silences);
    let mut observations = observe(config, report);
    hold_silenced(report, &mut observations);
    let sources: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            config
                .invariant(&r.id)
                .map(|i| i.check.sources().into_iter().map(str::to_string).collect())
                .unwrap_or_default()
        })
        .collect();
    let record = RunRecord {
        report,
        sources,
        remembered,
    };
    let planner = |input: &invar_store::PlanInput| plan(config, report, &observations, input, now);
    store.record_run(&record, &planner).await
}

/// The silences in force at `now`: the config's windows open then, and the store's one-offs.
pub async fn active_silences(
    store: &dyn Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<ActiveSilence>, StoreError> {
    let mut active = invar_core::silence::active_rules(&config.silences, now);
    for s in store.silences(Some(now)).await? {
        match ActiveSilence::compile(&s.id, &s.matcher, s.until(), &s.reason) {
            Ok(a) => active.push(a),
            Err(e) => tracing::warn!(error = %e, "a stored silence matches nothing"),
        }
    }
    Ok(active)
}

/// Marks each result whose invariant a silence matches with that silence (`silenced`).
pub fn mark_silenced(config: &Config, report: &mut RunReport, silences: &[ActiveSilence]) {
    for r in &mut report.results {
        r.silenced = None;
    }
    if silences.is_empty() {
        return;
    }
    let by_id: std::collections::HashMap<&str, &invar_core::Invariant> = config
        .invariants
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    for r in &mut report.results {
        let Some(inv) = by_id.get(r.id.as_str()).copied() else {
            continue;
        };
        let (held, errors) = invar_core::silence::holding(silences, inv, &report.suite);
        for e in errors {
            tracing::warn!(invariant = %inv.id, error = %e, "a silence could not be matched");
        }
        r.silenced = held.map(|s| SilencedBy {
            id: s.id.clone(),
            until: s.until,
            reason: s.reason.clone(),
        });
    }
}

/// The silence holding `inv` now, outside a run (`invar incidents`, the status page,
/// `/metrics`): tried as a run of each suite that selects it, then of `all`; the first wins.
pub fn silencing(
    config: &Config,
    silences: &[ActiveSilence],
    inv: &invar_core::Invariant,
) -> Option<SilencedBy> {
    if silences.is_empty() {
        return None;
    }
    let suites = config
        .suites
        .iter()
        .filter(|s| s.selects(inv).unwrap_or(false))
        .map(|s| s.name.as_str())
        .chain(std::iter::once("all"));
    suites
        .filter_map(|suite| invar_core::silence::holding(silences, inv, suite).0)
        .next()
        .map(|s| SilencedBy {
            id: s.id.clone(),
            until: s.until,
            reason: s.reason.clone(),
        })
}

/// Holds the firing notice of each invariant the report marks as silenced (`silence <id>
/// until <t>`): it waits until a run after the silence, and is never sent if it resolves first.
pub fn hold_silenced(report: &RunReport, observations: &mut [invar_core::incident::Observation]) {
    let silenced: std::collections::HashMap<&str, &SilencedBy> = report
        .results
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.silenced.as_ref()?)))
        .collect();
    if silenced.is_empty() {
        return;
    }
    for o in observations
        .iter_mut()
        .filter(|o| o.kind == invar_core::incident::SubjectKind::Invariant)
    {
        if let Some(s) = silenced.get(o.subject.as_str()) {
            o.held_by
                .push(format!("silence {} until {}", s.id, s.until.to_rfc3339()));
        }
    }
}

/// A one-off silence as the CLI and the API make it: `matcher` checked, `[starts_at,
/// starts_at + duration)`. The error names what is wrong (`match`, `for` or the start).
pub fn new_silence(
    matcher: &str,
    starts_at: DateTime<Utc>,
    duration: std::time::Duration,
    reason: &str,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<invar_store::NewSilence, String> {
    invar_core::silence::compile_matcher(matcher).map_err(|e| {
        format!("`{matcher}` is not a valid CEL matcher over id, severity, tags and suite: {e}")
    })?;
    let len = chrono::TimeDelta::from_std(duration)
        .ok()
        .filter(|d| *d > chrono::TimeDelta::zero())
        .ok_or("the duration must be longer than 0s and at most 10 years")?;
    let ends_at = starts_at
        .checked_add_signed(len)
        .ok_or("the start + the duration is past the year 9999")?;
    Ok(invar_store::NewSilence {
        matcher: matcher.to_string(),
        starts_at,
        ends_at,
        reason: reason.to_string(),
        created_by: created_by.to_string(),
        created_at: now,
    })
}
