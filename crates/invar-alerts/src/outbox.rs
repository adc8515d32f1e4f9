//! The outbox worker: delivers pending rows, oldest first and in order per sink, records every
//! attempt, and never marks a row delivered before the sink accepted it.
//!
//! A notice the receiver refused for good ([`DeliveryError::permanent`], e.g. PagerDuty's
//! 400) is **parked**: its attempt is recorded with the receiver's message, and its next
//! attempt is set [`PARKED_FOR`] ahead, so neither the flush nor the watcher tries it again
//! and it no longer holds back the sink's later notices. It stays in the store, pending,
//! for an operator to see. TODO(issue 17): a `failed` outbox status once the store's outbox
//! trait has one; until then "parked" is read from `next_attempt_at`.

use crate::sinks::{DeliveryError, Sink, build_sink};
use chrono::{DateTime, TimeDelta, Utc};
use invar_core::AlertSink;
use invar_store::{AttemptRecord, Delivery, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exponential backoff with jitter: `base · 2^(attempt-1)`, capped, then a random 50–100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        // Jitter: spread retries of many invar processes over [50 %, 100 %].
        let f = 0.5 + fastrand_f64() * 0.5;
        capped.mul_f64(f)
    }
}

/// A cheap jitter source (no RNG dependency): the clock's nanoseconds, mixed.
fn fastrand_f64() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs().rotate_left(17))
        .unwrap_or(0);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x % 10_000) as f64 / 10_000.0
}

/// How far ahead a refused notice's next attempt is put: never, in practice.
pub const PARKED_FOR: TimeDelta = TimeDelta::days(100 * 365);

/// Whether a row was parked (refused for good) rather than waiting for a retry.
fn parked(d: &Delivery, now: DateTime<Utc>) -> bool {
    d.next_attempt_at > now + PARKED_FOR / 2
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    pub delivered: usize,
    pub failed_attempts: usize,
    /// Still pending when the flush returned (they stay queued).
    pub pending: usize,
    /// Refused by their receiver for good: kept, never retried.
    pub parked: usize,
}

pub struct Outbox {
    store: Arc<dyn Store>,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    owner: String,
    backoff: Backoff,
}

impl Outbox {
    /// An outbox over `store` delivering to the configured sinks.
    pub fn new(store: Arc<dyn Store>, sinks: &[AlertSink]) -> Outbox {
        let map = sinks
            .iter()
            .map(|s| (s.name.clone(), Arc::from(build_sink(s))))
            .collect();
        Outbox::with_sinks(store, map)
    }

    pub fn with_sinks(store: Arc<dyn Store>, sinks: BTreeMap<String, Arc<dyn Sink>>) -> Outbox {
        Outbox {
            store,
            sinks,
            owner: format!(
                "invar-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Outbox {
        self.backoff = backoff;
        self
    }

    /// One-shot delivery (`invar run`): attempts every pending delivery — old ones whose sink
    /// was down included, whether or not they are due — retrying failures with a short
    /// backoff until all are delivered or `within` has passed. What still fails stays queued
    /// (with its next attempt time) for the next run or the watcher. Each sink is delivered
    /// by its own future, so a hung or failing sink never delays another's notices, and an
    /// attempt still running at the deadline is cut there (recorded as failed).
    pub async fn flush(&self, within: Duration) -> Result<FlushReport, StoreError> {
        let deadline = Instant::now() + within;
        let per_sink = futures::future::join_all(
            self.sinks
                .keys()
                .map(|name| self.flush_sink(name, deadline)),
        )
        .await;
        let mut report = FlushReport::default();
        let mut first_error = None;
        for r in per_sink {
            match r {
                Ok((ok, failed)) => {
                    report.delivered += ok;
                    report.failed_attempts += failed;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let now = Utc::now();
        let left = self.store.pending(None, 10_000).await?;
        report.parked = left.iter().filter(|d| parked(d, now)).count();
        report.pending = left.len() - report.parked;
        Ok(report)
    }

    /// `flush` for one sink: (delivered, failed attempts).
    async fn flush_sink(
        &self,
        sink: &str,
        deadline: Instant,
    ) -> Result<(usize, usize), StoreError> {
        let (mut delivered, mut failures) = (0, 0);
        let mut round: u32 = 0;
        loop {
            let pending = self.pending_of(sink, None).await?;
            if pending.is_empty() {
                return Ok((delivered, failures));
            }
            let (ok, failed) = self.round(&pending, Some(deadline)).await?;
            delivered += ok;
            failures += failed;
            if failed == 0 && ok == pending.len() {
                continue;
            }
            round += 1;
            let short = Backoff {
                base: Duration::from_millis(200),
                max: Duration::from_secs(2),
            }
            .delay(round);
            if Instant::now() + short >= deadline {
                return Ok((delivered, failures));
            }
            tokio::time::sleep(short).await;
        }
    }

    /// The pending rows of one sink, oldest first (`due`: only those due by then), parked
    /// ones left out.
    async fn pending_of(
        &self,
        sink: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = Utc::now();
        Ok(self
            .store
            .pending(due, 1000)
            .await?
            .into_iter()
            .filter(|d| d.sink == sink && !parked(d, now))
            .collect())
    }

    /// The watcher's loop: one loop per sink delivers what is due, then sleeps until the next
    /// poll, until `shutdown` resolves; a sink's attempt in progress finishes first. Sinks
    /// are independent: a hung one holds only its own loop.
    pub async fn run(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let loops = futures::future::join_all(
            self.sinks
                .keys()
                .map(|name| self.run_sink(name, poll, stop_rx.clone())),
        );
        let trigger = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(loops, trigger);
    }

    async fn run_sink(
        &self,
        sink: &str,
        poll: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.pending_of(sink, Some(Utc::now())).await {
                Ok(due) if !due.is_empty() => {
                    if let Err(e) = self.round(&due, None).await {
                        tracing::warn!(sink, error = %e, "alert outbox: cannot record a delivery");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(sink, error = %e, "alert outbox: cannot read pending deliveries")
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Attempts each delivery once, in order; after a failure, later rows of the same sink
    /// wait (a resolve never overtakes its firing) — unless the failed row was parked: it
    /// will never go, so waiting for it would hold the sink forever. Returns (delivered,
    /// failed attempts).
    async fn round(
        &self,
        pending: &[Delivery],
        deadline: Option<Instant>,
    ) -> Result<(usize, usize), StoreError> {
        let mut blocked: BTreeSet<&str> = BTreeSet::new();
        let (mut ok, mut failed) = (0, 0);
        for d in pending {
            if blocked.contains(d.sink.as_str()) {
                continue;
            }
            if deadline.is_some_and(|dl| Instant::now() >= dl) {
                break;
            }
            match self.attempt(d, deadline).await? {
                Some(Attempted::Delivered) => ok += 1,
                Some(Attempted::Failed) => {
                    failed += 1;
                    blocked.insert(&d.sink);
                }
                Some(Attempted::Parked) => failed += 1,
                // Another worker holds it.
                None => {
                    blocked.insert(&d.sink);
                }
            }
        }
        Ok((ok, failed))
    }

    /// One attempt of one delivery: claim, send, record. None when another worker holds it.
    /// An attempt still running at `deadline` is cut there.
    async fn attempt(
        &self,
        d: &Delivery,
        deadline: Option<Instant>,
    ) -> Result<Option<Attempted>, StoreError> {
        let sink = self.sinks.get(&d.sink).cloned();
        let timeout = sink
            .as_ref()
            .map_or(Duration::from_secs(10), |s| s.timeout());
        let now = Utc::now();
        let lease = now
            + TimeDelta::from_std(timeout * 2 + Duration::from_secs(5)).unwrap_or(TimeDelta::MAX);
        if !self.store.claim(&d.id, &self.owner, lease, now).await? {
            return Ok(None);
        }
        let started = Instant::now();
        let mut limit = timeout + Duration::from_secs(1);
        if let Some(dl) = deadline {
            limit = limit.min(dl.saturating_duration_since(started));
        }
        let result = match &sink {
            Some(s) => match tokio::time::timeout(limit, s.deliver(d)).await {
                Ok(r) => r,
                Err(_) => Err(DeliveryError::retry(
                    None,
                    format!("timed out after {:.1}s", limit.as_secs_f64()),
                )),
            },
            None => Err(DeliveryError::retry(
                None,
                format!("sink `{}` is not configured", d.sink),
            )),
        };
        let attempt = d.attempts + 1;
        let at: DateTime<Utc> = Utc::now();
        let ms = started.elapsed().as_millis() as u64;
        let rec = match &result {
            Ok(code) => {
                tracing::info!(
                    sink = %d.sink, notice = %d.notice, subject = %d.subject,
                    incident = d.incident_id.as_deref().unwrap_or("-"), attempt, code, ms,
                    "alert delivered"
                );
                AttemptRecord {
                    delivery_id: d.id.clone(),
                    attempt,
                    at,
                    duration_ms: ms,
                    ok: true,
                    code: Some(*code),
                    error: None,
                    next_attempt_at: None,
                }
            }
            Err(e) if e.permanent => {
                tracing::error!(
                    sink = %d.sink, notice = %d.notice, subject = %d.subject, attempt,
                    code = e.code.unwrap_or(0), error = %e.message,
                    "alert refused by its receiver; parked, not retried"
                );
                AttemptRecord {
                    delivery_id: d.id.clone(),
                    attempt,
                    at,
                    duration_ms: ms,
                    ok: false,
                    code: e.code,
                    error: Some(e.message.clone()),
                    next_attempt_at: Some(at + PARKED_FOR),
                }
            }
            Err(e) => {
                let next =
                    at + TimeDelta::from_std(self.backoff.delay(attempt)).unwrap_or(TimeDelta::MAX);
                tracing::warn!(
                    sink = %d.sink, notice = %d.notice, subject = %d.subject, attempt,
                    code = e.code.unwrap_or(0), error = %e.message, next_attempt = %next.to_rfc3339(),
                    "alert delivery failed; it stays queued"
                );
                AttemptRecord {
                    delivery_id: d.id.clone(),
                    attempt,
                    at,
                    duration_ms: ms,
                    ok: false,
                    code: e.code,
                    error: Some(e.message.clone()),
                    next_attempt_at: Some(next),
                }
            }
        };
        self.store.record_attempt(&rec).await?;
        Ok(Some(match result {
            Ok(_) => Attempted::Delivered,
            Err(e) if e.permanent => Attempted::Parked,
            Err(_) => Attempted::Failed,
        }))
    }
}

/// How one attempt ended.
enum Attempted {
    Delivered,
    /// Retried later.
    Failed,
    /// Refused for good.
    Parked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff::default();
        for attempt in 1..30 {
            let d = b.delay(attempt);
            let full = (b.base * (1u32 << (attempt - 1).min(20))).min(b.max);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(b.delay(30) <= Duration::from_secs(3600));
    }
}
