//! The outbox worker: delivers pending rows, oldest first and in order per sink, records every
//! attempt, and never marks a row delivered before the sink accepted it.

use crate::sink::{DeliveryError, Sink, build_sink};
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

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    pub delivered: usize,
    pub failed_attempts: usize,
    /// Still pending when the flush returned (they stay queued).
    pub pending: usize,
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
    /// (with its next attempt time) for the next run or the watcher.
    pub async fn flush(&self, within: Duration) -> Result<FlushReport, StoreError> {
        let deadline = Instant::now() + within;
        let mut report = FlushReport::default();
        let mut round: u32 = 0;
        loop {
            let all = self.store.pending(None, 1000).await?;
            // Rows of a sink this config no longer has wait for it to come back.
            let pending: Vec<Delivery> = all
                .iter()
                .filter(|d| self.sinks.contains_key(&d.sink))
                .cloned()
                .collect();
            if pending.is_empty() {
                report.pending = all.len();
                return Ok(report);
            }
            let (ok, failed) = self.round(&pending, Some(deadline)).await?;
            report.delivered += ok;
            report.failed_attempts += failed;
            if failed == 0 && ok == pending.len() {
                continue;
            }
            round += 1;
            let short = Backoff {
                base: Duration::from_millis(200),
                max: Duration::from_secs(2),
            }
            .delay(round);
            let now = Instant::now();
            if now + short >= deadline {
                report.pending = self.store.pending(None, 10_000).await?.len();
                return Ok(report);
            }
            tokio::time::sleep(short).await;
        }
    }

    /// The watcher's loop: delivers what is due, then sleeps until the next poll, until
    /// `shutdown` resolves.
    pub async fn run(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.store.pending(Some(Utc::now()), 1000).await {
                Ok(due) if !due.is_empty() => {
                    if let Err(e) = self.round(&due, None).await {
                        tracing::warn!(error = %e, "alert outbox: cannot record a delivery");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "alert outbox: cannot read pending deliveries")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Attempts each delivery once, in order; after a failure, later rows of the same sink
    /// wait (a resolve never overtakes its firing). Returns (delivered, failed attempts).
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
            match self.attempt(d).await? {
                Some(true) => ok += 1,
                Some(false) => {
                    failed += 1;
                    blocked.insert(&d.sink);
                }
                // Another worker holds it.
                None => {
                    blocked.insert(&d.sink);
                }
            }
        }
        Ok((ok, failed))
    }

    /// One attempt of one delivery: claim, send, record. None when another worker holds it.
    async fn attempt(&self, d: &Delivery) -> Result<Option<bool>, StoreError> {
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
        let result = match &sink {
            Some(s) => {
                match tokio::time::timeout(timeout + Duration::from_secs(1), s.deliver(d)).await {
                    Ok(r) => r,
                    Err(_) => Err(DeliveryError {
                        code: None,
                        message: format!("timed out after {}s", timeout.as_secs()),
                    }),
                }
            }
            None => Err(DeliveryError {
                code: None,
                message: format!("sink `{}` is not configured", d.sink),
            }),
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
        Ok(Some(result.is_ok()))
    }
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
