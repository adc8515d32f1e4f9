//! The scheduler: one loop per scheduled suite that sleeps until the next cron tick (on the
//! watcher's [`Clock`]) and hands it to the watcher, which claims it once across replicas.
//! Runs are spawned, so a long run does not delay the next tick: that tick finds the suite
//! busy and is recorded as `lock_skipped`.

use crate::clock::Clock;
use crate::schedule::{MisfireDecision, Schedule, misfire};
use crate::watcher::Watcher;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Calls `on_tick` for every tick of `schedule` after `from`, in order, each when the clock
/// reaches it, until `stop` turns true. A tick is never delivered twice; when the clock jumps
/// past several ticks at once, only the latest of them is delivered.
pub async fn drive<F, Fut>(
    schedule: &Schedule,
    clock: &Clock,
    from: DateTime<Utc>,
    mut on_tick: F,
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut cursor = from;
    loop {
        let Some(next) = schedule.next_after(cursor) else {
            return;
        };
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // After a stall (a suspended machine, a clock step) several ticks may be past: only
        // the latest runs, not a burst of one run and many lock_skipped records.
        let mut latest = next;
        let mut passed = 0u32;
        while let Some(n) = schedule.next_after(latest)
            && n <= clock.now()
            && passed < 100_000
        {
            latest = n;
            passed += 1;
        }
        if passed > 0 {
            tracing::warn!(passed, from = %next, to = %latest, "the clock jumped past ticks: only the latest runs");
        }
        on_tick(latest).await;
        cursor = latest;
    }
}

/// Starts one loop per scheduled suite (and the misfire catch-up runs); returns their handles.
pub fn start(
    watcher: Arc<Watcher>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for slot in watcher.slots() {
        let Some(schedule) = slot.schedule.clone() else {
            continue;
        };
        let w = watcher.clone();
        let slot = slot.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let name = slot.suite.name.clone();
            let now = w.clock.now();
            catch_up(&w, &name, &schedule, slot.suite.misfire, now).await;
            slot.set_next_run(schedule.next_after(now));
            let on_tick = |tick: DateTime<Utc>| {
                let w = w.clone();
                let name = name.clone();
                let slot = slot.clone();
                let schedule = schedule.clone();
                async move {
                    slot.set_next_run(schedule.next_after(tick));
                    w.spawn_tick(name, tick, false);
                }
            };
            drive(&schedule, &w.clock.clone(), now, on_tick, stop).await;
        }));
    }
    handles
}

/// After downtime: `misfire: run_once` runs one catch-up for the latest missed tick (claimed
/// like any tick, so one replica does it); `skip` only logs what was missed.
async fn catch_up(
    w: &Arc<Watcher>,
    suite: &str,
    schedule: &Schedule,
    policy: invar_core::Misfire,
    now: DateTime<Utc>,
) {
    // Ticks whose run was recorded: a tick claimed by a replica that died mid-run was missed.
    let last = match w.store.last_finished_tick(suite).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, suite, "cannot read the last tick; no misfire catch-up");
            return;
        }
    };
    match misfire(schedule, policy, last, now) {
        MisfireDecision::None => {}
        MisfireDecision::Skip { missed, count } => {
            tracing::warn!(suite, count, latest = %missed, "missed ticks skipped (misfire: skip)");
        }
        MisfireDecision::RunOnce { missed, count } => {
            tracing::warn!(suite, count, latest = %missed, "missed ticks: one catch-up run (misfire: run_once)");
            // Reclaimed if a replica claimed it and died before recording its run.
            w.spawn_tick(suite.to_string(), missed, true);
        }
    }
}
