//! Wall-clock time for the scheduler. Production reads the system clock; tests use a clock
//! that follows tokio's (pausable) time, so days of schedule run in milliseconds, or a
//! scaled clock shared by several processes (`INVAR_WATCH_TEST_CLOCK`), so two real watchers
//! tick every second instead of every minute.

use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// `base` at the tokio instant `at`, then tokio time (which tests may pause and advance).
    Tokio {
        base: DateTime<Utc>,
        at: tokio::time::Instant,
    },
    /// `anchor + (system now − anchor) × scale`: processes given the same anchor and scale
    /// share one accelerated timeline.
    Scaled {
        anchor: DateTime<Utc>,
        scale: u32,
    },
}

/// The longest single sleep: the scheduler re-reads the clock at least this often, so a wall
/// clock step (NTP, suspend) delays a tick by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

impl Clock {
    /// A clock that reads `base` now and then follows tokio time.
    pub fn tokio(base: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base,
            at: tokio::time::Instant::now(),
        }
    }

    /// From `INVAR_WATCH_TEST_CLOCK=ANCHOR_UNIX_SECONDS:SCALE` (tests only), else the system.
    pub fn from_env() -> Clock {
        let Ok(v) = std::env::var("INVAR_WATCH_TEST_CLOCK") else {
            return Clock::System;
        };
        let parsed = v.split_once(':').and_then(|(a, s)| {
            let anchor = DateTime::from_timestamp(a.parse().ok()?, 0)?;
            let scale: u32 = s.parse().ok().filter(|s| *s >= 1)?;
            Some(Clock::Scaled { anchor, scale })
        });
        parsed.unwrap_or_else(|| {
            tracing::warn!("INVAR_WATCH_TEST_CLOCK is malformed; using the system clock");
            Clock::System
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, at } => {
                *base + TimeDelta::from_std(at.elapsed()).unwrap_or(TimeDelta::MAX)
            }
            Clock::Scaled { anchor, scale } => {
                let real = Utc::now() - *anchor;
                *anchor + real * (*scale as i32)
            }
        }
    }

    /// Sleeps until `t` on this clock (in bounded steps, re-reading the clock).
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        loop {
            let left = t - self.now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            let real = match self {
                Clock::Scaled { scale, .. } => left / *scale,
                _ => left,
            };
            tokio::time::sleep(real.min(MAX_SLEEP) + Duration::from_millis(1)).await;
        }
    }

    /// A duration on this clock as real time (for leases and grace periods in tests).
    pub fn real(&self, d: Duration) -> Duration {
        match self {
            Clock::Scaled { scale, .. } => d / *scale,
            _ => d,
        }
    }
}
