//! The scheduler loop under paused tokio time: days of cron ticks across both DST changes in
//! America/New_York, and in Asia/Tokyo and UTC (no DST), are delivered exactly once each, in
//! order, at the right instants — no double run in the repeated hour, no lost run in the
//! skipped one. The loop is the production one ([`invar_watch::scheduler::drive`]); only the
//! clock follows paused tokio time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeZone, Utc};
use invar_watch::clock::Clock;
use invar_watch::schedule::Schedule;
use invar_watch::scheduler::drive;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Drives `expr` in `tz` from `from` (exclusive) to `until` (inclusive), both UTC, recording
/// every delivered tick and the clock reading when it was delivered.
async fn ticks(
    expr: &str,
    tz: &str,
    from: &str,
    until: &str,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let schedule = Schedule::parse(expr, Some(tz)).unwrap();
    let clock = Clock::tokio(utc(from));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let end = utc(until);
    let c = clock.clone();
    let s = seen.clone();
    let on_tick = move |tick: DateTime<Utc>| {
        let c = c.clone();
        let s = s.clone();
        let stop_tx = stop_tx.clone();
        async move {
            if tick <= end {
                s.lock().unwrap().push((tick, c.now()));
            }
            if tick >= end {
                let _ = stop_tx.send(true);
            }
        }
    };
    drive(&schedule, &clock, utc(from), on_tick, stop_rx).await;
    let out = seen.lock().unwrap().clone();
    // Every tick delivered at (or a moment after) its instant, never before, never twice.
    for w in out.windows(2) {
        assert!(w[0].0 < w[1].0, "ticks out of order or repeated: {w:?}");
    }
    for (tick, at) in &out {
        assert!(at >= tick, "tick {tick} delivered early, at {at}");
        assert!(
            (*at - *tick).num_seconds() < 2,
            "tick {tick} delivered late, at {at}"
        );
    }
    out
}

fn instants(v: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<String> {
    v.iter().map(|(t, _)| t.to_rfc3339()).collect()
}

#[tokio::test(start_paused = true)]
async fn new_york_fixed_time_job_in_the_skipped_hour_runs_once() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    let got = ticks(
        "30 2 * * *",
        "America/New_York",
        "2026-03-06T12:00:00Z",
        "2026-03-10T00:00:00Z",
    )
    .await;
    assert_eq!(
        instants(&got),
        [
            "2026-03-07T07:30:00+00:00", // 02:30 EST
            "2026-03-08T07:00:00+00:00", // the gap's end, 03:00 EDT: not lost
            "2026-03-09T06:30:00+00:00", // 02:30 EDT
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn new_york_fixed_time_job_in_the_repeated_hour_runs_once() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let got = ticks(
        "30 1 * * *",
        "America/New_York",
        "2026-10-30T12:00:00Z",
        "2026-11-03T00:00:00Z",
    )
    .await;
    assert_eq!(
        instants(&got),
        [
            "2026-10-31T05:30:00+00:00",
            "2026-11-01T05:30:00+00:00", // first showing (EDT) only: no double run
            "2026-11-02T06:30:00+00:00",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn new_york_hourly_job_follows_elapsed_time_across_both_changes() {
    let spring = ticks(
        "0 * * * *",
        "America/New_York",
        "2026-03-08T05:00:00Z",
        "2026-03-09T04:00:00Z",
    )
    .await;
    // The local day of 2026-03-08 has 23 hours (01:00 EST to 00:00 EDT next day: 23 ticks),
    // each one elapsed hour after the last: nothing inside the gap, nothing doubled.
    let day: Vec<_> = spring
        .iter()
        .filter(|(t, _)| *t <= utc("2026-03-09T04:00:00Z"))
        .collect();
    assert_eq!(day.len(), 23, "{spring:?}");
    for w in spring.windows(2) {
        assert_eq!((w[1].0 - w[0].0).num_minutes(), 60, "{spring:?}");
    }
    let fall = ticks(
        "0 * * * *",
        "America/New_York",
        "2026-11-01T03:00:00Z",
        "2026-11-01T09:00:00Z",
    )
    .await;
    assert_eq!(
        instants(&fall),
        [
            "2026-11-01T04:00:00+00:00", // 00:00 EDT
            "2026-11-01T05:00:00+00:00", // 01:00 EDT
            "2026-11-01T06:00:00+00:00", // 01:00 EST (the repeated hour is real elapsed time)
            "2026-11-01T07:00:00+00:00", // 02:00 EST
            "2026-11-01T08:00:00+00:00",
            "2026-11-01T09:00:00+00:00",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn tokyo_weekly_job_runs_on_monday_morning_local_time() {
    // 04:00 JST on Mondays is 19:00 UTC on Sundays; Japan has no DST.
    let got = ticks(
        "0 4 * * MON",
        "Asia/Tokyo",
        "2026-03-01T00:00:00Z",
        "2026-03-22T19:00:00Z",
    )
    .await;
    assert_eq!(
        instants(&got),
        [
            "2026-03-01T19:00:00+00:00",
            "2026-03-08T19:00:00+00:00",
            "2026-03-15T19:00:00+00:00",
            "2026-03-22T19:00:00+00:00",
        ]
    );
    // The US change weekend means nothing in Tokyo: every day at 02:30 JST, 3 days.
    let daily = ticks(
        "30 2 * * *",
        "Asia/Tokyo",
        "2026-03-07T00:00:00Z",
        "2026-03-09T17:30:00Z",
    )
    .await;
    assert_eq!(
        instants(&daily),
        [
            "2026-03-07T17:30:00+00:00",
            "2026-03-08T17:30:00+00:00",
            "2026-03-09T17:30:00+00:00"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn utc_quarter_hour_job_over_a_day_has_96_ticks() {
    let got = ticks(
        "*/15 * * * *",
        "UTC",
        "2026-10-31T23:59:00Z",
        "2026-11-01T23:45:00Z",
    )
    .await;
    assert_eq!(got.len(), 96);
    assert_eq!(
        got[0].0,
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    );
}
