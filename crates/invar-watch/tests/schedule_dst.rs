//! Cron-in-a-zone arithmetic across DST changes: exact UTC instants for New York, London and
//! Sydney around their 2026 transitions, Tokyo (no DST) and UTC; a brute-force minute-by-minute
//! oracle of the documented rules; croner's own zoned iteration where the two agree by design;
//! parse errors; misfire decisions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, Datelike, TimeDelta, Utc, Weekday};
use croner::parser::{CronParser, Seconds};
use invar_core::model::Misfire;
use invar_watch::schedule::{MISFIRE_COUNT_CAP, MisfireDecision, Schedule, misfire};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
}

fn sched(expr: &str, zone: &str) -> Schedule {
    Schedule::parse(expr, Some(zone)).unwrap_or_else(|e| panic!("{expr} in {zone}: {e}"))
}

/// Every tick in `(from, to)`, by `next_after` in a loop.
fn ticks(s: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let (mut t, to) = (utc(from), utc(to));
    let mut out = Vec::new();
    while let Some(next) = s.next_after(t) {
        assert!(
            next > t,
            "{}: next_after({t}) = {next} went backwards",
            s.expr()
        );
        if next >= to {
            break;
        }
        out.push(next);
        t = next;
    }
    out
}

fn all(list: &[&str]) -> Vec<DateTime<Utc>> {
    list.iter().map(|s| utc(s)).collect()
}

fn assert_spacing(ts: &[DateTime<Utc>], secs: i64) {
    for w in ts.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            secs,
            "between {} and {}",
            w[0],
            w[1]
        );
    }
}

// ---- New York, 2026-03-08 (02:00 EST -> 03:00 EDT at 07:00Z) ---------------------------------

#[test]
fn ny_spring_fixed_job_in_the_gap_runs_once_after_it() {
    let s = sched("30 2 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-03-06T00:00:00Z", "2026-03-11T00:00:00Z"),
        all(&[
            "2026-03-06T07:30:00Z", // 02:30 EST
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z", // 02:30 does not exist: 03:00 EDT, the end of the gap
            "2026-03-09T06:30:00Z", // 02:30 EDT
            "2026-03-10T06:30:00Z",
        ])
    );
}

#[test]
fn ny_spring_fixed_lists_collapse_into_one_run_after_the_gap() {
    // Hour lists are fixed-time too (Vixie: no `*` in minute or hour): the 02:30 run is kept.
    let s = sched("30 2,14 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"),
        all(&["2026-03-08T07:00:00Z", "2026-03-08T18:30:00Z"])
    );
    // Two skipped times: one run.
    let s = sched("0,30 2 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-03-08T00:00:00Z", "2026-03-10T00:00:00Z"),
        all(&[
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T06:30:00Z"
        ])
    );
    // A skipped time and the time right after the gap: one run at 03:00 EDT.
    let s = sched("0 2,3 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-03-08T00:00:00Z", "2026-03-10T00:00:00Z"),
        all(&[
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T07:00:00Z"
        ])
    );
}

#[test]
fn ny_spring_hourly_has_23_ticks_and_none_in_the_gap() {
    let s = sched("0 * * * *", "America/New_York");
    // The local day 2026-03-08: 00:00 EST (05:00Z) to 00:00 EDT on the 9th (04:00Z).
    let day = ticks(&s, "2026-03-08T04:59:59Z", "2026-03-09T04:00:00Z");
    assert_eq!(day.len(), 23);
    assert_eq!(day[0], utc("2026-03-08T05:00:00Z"));
    assert_eq!(day[1], utc("2026-03-08T06:00:00Z")); // 01:00 EST
    assert_eq!(day[2], utc("2026-03-08T07:00:00Z")); // 03:00 EDT: no 02:00
    assert_spacing(&day, 3600);
}

#[test]
fn ny_spring_every_15_minutes_follows_elapsed_time() {
    let s = sched("*/15 * * * *", "America/New_York");
    let day = ticks(&s, "2026-03-08T04:59:59Z", "2026-03-09T04:00:00Z");
    assert_eq!(day.len(), 23 * 4);
    assert_spacing(&day, 900);
    assert!(day.contains(&utc("2026-03-08T06:45:00Z"))); // 01:45 EST
    assert!(day.contains(&utc("2026-03-08T07:00:00Z"))); // 03:00 EDT
}

// ---- New York, 2026-11-01 (02:00 EDT -> 01:00 EST at 06:00Z) ---------------------------------

#[test]
fn ny_fall_fixed_job_in_the_repeated_hour_runs_once() {
    let s = sched("30 1 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-10-30T00:00:00Z", "2026-11-03T00:00:00Z"),
        all(&[
            "2026-10-30T05:30:00Z",
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z", // 01:30 EDT, the first showing; not 06:30Z (01:30 EST)
            "2026-11-02T06:30:00Z", // 01:30 EST
        ])
    );
    // Lists are fixed-time: no double run either.
    let s = sched("30 1,13 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-10-31T12:00:00Z", "2026-11-02T00:00:00Z"),
        all(&[
            "2026-10-31T17:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T18:30:00Z"
        ])
    );
}

#[test]
fn ny_fall_hourly_has_25_ticks_one_per_elapsed_hour() {
    let s = sched("0 * * * *", "America/New_York");
    // The local day 2026-11-01: 00:00 EDT (04:00Z) to 00:00 EST on the 2nd (05:00Z).
    let day = ticks(&s, "2026-11-01T03:59:59Z", "2026-11-02T05:00:00Z");
    assert_eq!(day.len(), 25);
    assert_eq!(day[1], utc("2026-11-01T05:00:00Z")); // 01:00 EDT
    assert_eq!(day[2], utc("2026-11-01T06:00:00Z")); // 01:00 EST, the repeated hour
    assert_eq!(day[3], utc("2026-11-01T07:00:00Z")); // 02:00 EST
    assert_spacing(&day, 3600);
}

#[test]
fn ny_fall_wildcard_jobs_tick_on_both_showings_of_the_repeated_hour() {
    let s = sched("*/30 1 * * *", "America/New_York");
    assert_eq!(
        ticks(&s, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
        all(&[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:30:00Z",
        ])
    );
    let s = sched("*/15 * * * *", "America/New_York");
    let day = ticks(&s, "2026-11-01T03:59:59Z", "2026-11-02T05:00:00Z");
    assert_eq!(day.len(), 25 * 4);
    assert_spacing(&day, 900);
}

// ---- no DST -------------------------------------------------------------------------------

#[test]
fn tokyo_monday_0400_is_sunday_1900_utc() {
    let s = sched("0 4 * * MON", "Asia/Tokyo");
    let got = ticks(&s, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");
    assert_eq!(
        got,
        all(&[
            "2026-03-01T19:00:00Z",
            "2026-03-08T19:00:00Z",
            "2026-03-15T19:00:00Z",
            "2026-03-22T19:00:00Z",
            "2026-03-29T19:00:00Z",
        ])
    );
    assert!(got.iter().all(|t| t.weekday() == Weekday::Sun));
}

#[test]
fn tokyo_and_utc_are_unaffected_by_american_dst_days() {
    for (zone, fixed) in [
        (
            "Asia/Tokyo",
            ["2026-03-07T17:30:00Z", "2026-10-31T17:30:00Z"],
        ),
        ("UTC", ["2026-03-08T02:30:00Z", "2026-11-01T02:30:00Z"]),
    ] {
        let s = sched("30 2 * * *", zone);
        assert_eq!(
            ticks(&s, "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z"),
            all(&fixed[..1])
        );
        assert_eq!(
            ticks(&s, "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z"),
            all(&fixed[1..])
        );
        let hourly = sched("0 * * * *", zone);
        for from in ["2026-03-07T23:59:59Z", "2026-10-31T23:59:59Z"] {
            let end = (utc(from) + TimeDelta::days(1)).to_rfc3339();
            let day = ticks(&hourly, from, &end);
            assert_eq!(day.len(), 24, "{zone} from {from}");
            assert_spacing(&day, 3600);
        }
    }
    let s = Schedule::parse("0 4 * * MON", None).unwrap();
    assert_eq!(s.timezone_name(), "UTC");
    assert_eq!(
        ticks(&s, "2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z"),
        all(&["2026-03-02T04:00:00Z", "2026-03-09T04:00:00Z"])
    );
}

// ---- Europe/London and the southern hemisphere ------------------------------------------

#[test]
fn london_2026_both_changes() {
    // 2026-03-29 01:00 GMT -> 02:00 BST at 01:00Z; 2026-10-25 02:00 BST -> 01:00 GMT at 01:00Z.
    let s = sched("30 1 * * *", "Europe/London");
    assert_eq!(
        ticks(&s, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
        all(&[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z", // 01:30 skipped: 02:00 BST
            "2026-03-30T00:30:00Z",
        ])
    );
    assert_eq!(
        ticks(&s, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
        all(&[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z", // 01:30 BST only, not 01:30 GMT (01:30Z)
            "2026-10-26T01:30:00Z",
        ])
    );
}

#[test]
fn sydney_2026_both_changes() {
    // 2026-04-05 03:00 AEDT -> 02:00 AEST at 04-04 16:00Z;
    // 2026-10-04 02:00 AEST -> 03:00 AEDT at 10-03 16:00Z.
    let s = sched("30 2 * * *", "Australia/Sydney");
    assert_eq!(
        ticks(&s, "2026-04-03T00:00:00Z", "2026-04-06T00:00:00Z"),
        all(&[
            "2026-04-03T15:30:00Z",
            "2026-04-04T15:30:00Z", // 02:30 AEDT, first showing; not 16:30Z (02:30 AEST)
            "2026-04-05T16:30:00Z",
        ])
    );
    assert_eq!(
        ticks(&s, "2026-10-02T00:00:00Z", "2026-10-05T00:00:00Z"),
        all(&[
            "2026-10-02T16:30:00Z",
            "2026-10-03T16:00:00Z", // 02:30 skipped: 03:00 AEDT
            "2026-10-04T15:30:00Z",
        ])
    );
    let hourly = sched("0 * * * *", "Australia/Sydney");
    // Local 2026-04-05 (00:00 AEDT = 04-04 13:00Z to 00:00 AEST = 04-05 14:00Z): 25 hours.
    assert_eq!(
        ticks(&hourly, "2026-04-04T12:59:59Z", "2026-04-05T14:00:00Z").len(),
        25
    );
    // Local 2026-10-04 (00:00 AEST = 10-03 14:00Z to 00:00 AEDT = 10-04 13:00Z): 23 hours.
    assert_eq!(
        ticks(&hourly, "2026-10-03T13:59:59Z", "2026-10-04T13:00:00Z").len(),
        23
    );
}

// ---- syntax --------------------------------------------------------------------------------

#[test]
fn vixie_day_of_month_or_day_of_week() {
    // Both restricted: Fridays OR the 13th.
    let s = sched("0 0 13 * FRI", "UTC");
    let days: Vec<u32> = ticks(&s, "2026-03-01T00:00:00Z", "2026-04-18T00:00:00Z")
        .iter()
        .map(|t| t.month() * 100 + t.day())
        .collect();
    assert_eq!(days, [306, 313, 320, 327, 403, 410, 413, 417]);
    // `?` is `*` in the day fields; 7 and 0 are Sunday; names are case-insensitive.
    let window = ("2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z");
    let mondays = ticks(&sched("0 0 * * MON", "UTC"), window.0, window.1);
    assert_eq!(mondays.len(), 9);
    assert_eq!(
        ticks(&sched("0 0 ? * mon", "UTC"), window.0, window.1),
        mondays
    );
    let sundays = ticks(&sched("0 0 * * SUN", "UTC"), window.0, window.1);
    assert_eq!(
        ticks(&sched("0 0 * * 7", "UTC"), window.0, window.1),
        sundays
    );
    assert_eq!(
        ticks(&sched("0 0 * * 0", "UTC"), window.0, window.1),
        sundays
    );
}

#[test]
fn ranges_steps_lists_and_month_names() {
    let s = sched("0 9-17/4 * * MON-FRI", "UTC");
    assert_eq!(
        ticks(&s, "2026-03-06T00:00:00Z", "2026-03-10T00:00:00Z"),
        all(&[
            "2026-03-06T09:00:00Z", // Friday
            "2026-03-06T13:00:00Z",
            "2026-03-06T17:00:00Z",
            "2026-03-09T09:00:00Z", // Monday
            "2026-03-09T13:00:00Z",
            "2026-03-09T17:00:00Z",
        ])
    );
    let s = sched("5,35 0 1 JAN,JUL *", "UTC");
    assert_eq!(
        ticks(&s, "2026-01-01T00:00:00Z", "2027-01-01T00:06:00Z"),
        all(&[
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:35:00Z",
            "2026-07-01T00:05:00Z",
            "2026-07-01T00:35:00Z",
            "2027-01-01T00:05:00Z",
        ])
    );
}

#[test]
fn parse_errors_name_the_bad_part() {
    let err = |expr: &str, zone: Option<&str>| Schedule::parse(expr, zone).unwrap_err();
    let e = err("0 0 4 * * MON", None);
    assert!(e.contains("5 fields") && e.contains("found 6"), "{e}");
    let e = err("@daily", None);
    assert!(e.contains("5 fields") && e.contains("found 1"), "{e}");
    let e = err("61 * * * *", None);
    assert!(e.contains("minute field `61`"), "{e}");
    let e = err("0 25 * * *", None);
    assert!(e.contains("hour field `25`"), "{e}");
    let e = err("0 0 32 * *", None);
    assert!(e.contains("day-of-month field `32`"), "{e}");
    let e = err("0 0 * FOO *", None);
    assert!(e.contains("month field `FOO`"), "{e}");
    let e = err("0 0 * * FUNDAY", None);
    assert!(e.contains("day-of-week field `FUNDAY`"), "{e}");
    let e = err("0 0 * * +MON", None);
    assert!(e.contains("`+MON`") && e.contains("Vixie"), "{e}");
    let e = err("0 0 30 2 *", None);
    assert!(e.contains("never fires"), "{e}");
    let e = err("0 4 * * MON", Some("Mars/Olympus_Mons"));
    assert!(e.contains("unknown time zone `Mars/Olympus_Mons`"), "{e}");

    let s = Schedule::parse("  0 4 * * MON ", Some("Asia/Tokyo")).unwrap();
    assert_eq!(s.expr(), "0 4 * * MON");
    assert_eq!(s.timezone_name(), "Asia/Tokyo");
    assert_eq!(
        Schedule::parse("0 4 * * MON", None)
            .unwrap()
            .timezone_name(),
        "UTC"
    );
}

// ---- latest_at_or_before -------------------------------------------------------------------

#[test]
fn latest_at_or_before_at_and_between_ticks() {
    let s = sched("30 2 * * *", "America/New_York");
    let at = |t: &str| s.latest_at_or_before(utc(t)).unwrap();
    // Exactly at a tick, and just after (sub-second too).
    assert_eq!(at("2026-03-07T07:30:00Z"), utc("2026-03-07T07:30:00Z"));
    assert_eq!(at("2026-03-07T07:30:00.999Z"), utc("2026-03-07T07:30:00Z"));
    assert_eq!(at("2026-03-07T07:29:59.999Z"), utc("2026-03-06T07:30:00Z"));
    // The gap tick.
    assert_eq!(at("2026-03-08T07:00:00Z"), utc("2026-03-08T07:00:00Z"));
    assert_eq!(at("2026-03-08T06:59:59Z"), utc("2026-03-07T07:30:00Z"));
    assert_eq!(at("2026-03-08T23:00:00Z"), utc("2026-03-08T07:00:00Z"));

    // In the repeated hour: a fixed job's only 01:30 is the first showing...
    let s = sched("30 1 * * *", "America/New_York");
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-01T06:45:00Z")), // 01:45 EST
        Some(utc("2026-11-01T05:30:00Z"))
    );
    // ...while a wildcard job ticked again at 01:30 EST.
    let s = sched("*/30 1 * * *", "America/New_York");
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-01T06:45:00Z")),
        Some(utc("2026-11-01T06:30:00Z"))
    );
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-01T05:59:59Z")), // 01:59:59 EDT
        Some(utc("2026-11-01T05:30:00Z"))
    );
}

// ---- brute-force oracle ------------------------------------------------------------------

/// The documented rules, applied minute by minute with croner matching civil times only.
fn oracle(expr: &str, zone: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expr)
        .unwrap();
    let tz = TimeZone::get(zone).unwrap();
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let fixed = !fields[0].contains('*') && !fields[1].contains('*');
    let matches = |w: &jiff::civil::DateTime| cron.is_time_matching(w).unwrap();
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let ts = Timestamp::from_second(t.timestamp()).unwrap();
        let wall = tz.to_datetime(ts);
        let mut tick = matches(&wall)
            && (!fixed || {
                let amb = tz.to_ambiguous_timestamp(wall);
                match amb.offset() {
                    AmbiguousOffset::Fold { .. } => amb.earlier().unwrap() == ts,
                    _ => true,
                }
            });
        let before = tz.to_offset(ts - jiff::SignedDuration::from_secs(1));
        let after = tz.to_offset(ts);
        if fixed && before < after {
            // A gap ends at `ts`: did it skip a scheduled wall-clock minute?
            let (mut m, end) = (before.to_datetime(ts), after.to_datetime(ts));
            while m < end {
                tick |= matches(&m);
                m = m.checked_add(jiff::SignedDuration::from_mins(1)).unwrap();
            }
        }
        if tick {
            out.push(t);
        }
        t += TimeDelta::minutes(1);
    }
    out
}

#[test]
fn next_and_latest_agree_with_a_minute_by_minute_oracle() {
    let windows = [
        (
            "America/New_York",
            ["2026-03-07T00:00:00Z", "2026-10-31T00:00:00Z"],
        ),
        (
            "Europe/London",
            ["2026-03-28T00:00:00Z", "2026-10-24T00:00:00Z"],
        ),
        (
            "Australia/Sydney",
            ["2026-04-03T00:00:00Z", "2026-10-02T00:00:00Z"],
        ),
        // 30-minute DST: 02:00 -> 02:30 on 2026-10-04, 02:00 -> 01:30 on 2026-04-05.
        (
            "Australia/Lord_Howe",
            ["2026-04-03T00:00:00Z", "2026-10-02T00:00:00Z"],
        ),
        (
            "Asia/Tokyo",
            ["2026-03-07T00:00:00Z", "2026-10-31T00:00:00Z"],
        ),
        ("UTC", ["2026-03-07T00:00:00Z", "2026-10-31T00:00:00Z"]),
    ];
    let exprs = [
        "30 2 * * *",
        "30 1 * * *",
        "15 2 * * *",
        "0,30 2 * * *",
        "0 2,3 * * *",
        "30 1,13 * * *",
        "15 1-3 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "*/30 1 * * *",
        "45 1 * * SUN",
        "0 0 * * *",
    ];
    for (zone, starts) in windows {
        for start in starts {
            let from = utc(start);
            let to = from + TimeDelta::days(3);
            for expr in exprs {
                let s = sched(expr, zone);
                let want = oracle(expr, zone, from, to);
                let got = ticks(
                    &s,
                    &(from - TimeDelta::seconds(1)).to_rfc3339(),
                    &to.to_rfc3339(),
                );
                assert_eq!(got, want, "{expr} in {zone} from {start}");
                assert!(!got.is_empty(), "{expr} in {zone} from {start}");
                let mut prev = s.latest_at_or_before(from - TimeDelta::seconds(1));
                for &t in &got {
                    let ctx = format!("{expr} in {zone} at {t}");
                    assert_eq!(s.latest_at_or_before(t), Some(t), "{ctx}");
                    assert_eq!(
                        s.latest_at_or_before(t - TimeDelta::milliseconds(1)),
                        prev,
                        "{ctx}"
                    );
                    assert_eq!(
                        s.next_after(t - TimeDelta::milliseconds(500)),
                        Some(t),
                        "{ctx}"
                    );
                    prev = Some(t);
                }
            }
        }
    }
}

/// croner's own `Zoned` iteration classifies single-valued minute-and-hour jobs as fixed-time
/// and the rest as intervals; for those the two implementations must agree.
#[test]
fn agrees_with_croner_zoned_iteration_where_classifications_match() {
    for (expr, zone, start) in [
        ("30 2 * * *", "America/New_York", "2026-03-06T00:00:00Z"),
        ("30 1 * * *", "America/New_York", "2026-10-30T00:00:00Z"),
        ("0 * * * *", "America/New_York", "2026-03-07T00:00:00Z"),
        ("0 * * * *", "America/New_York", "2026-10-31T00:00:00Z"),
        ("*/15 * * * *", "America/New_York", "2026-10-31T00:00:00Z"),
        ("30 2 * * *", "Australia/Sydney", "2026-04-03T00:00:00Z"),
        ("30 2 * * *", "Australia/Sydney", "2026-10-02T00:00:00Z"),
    ] {
        let s = sched(expr, zone);
        let end = (utc(start) + TimeDelta::days(4)).to_rfc3339();
        let ours = ticks(&s, start, &end);
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expr)
            .unwrap();
        let begin = Timestamp::from_second(utc(start).timestamp())
            .unwrap()
            .to_zoned(TimeZone::get(zone).unwrap());
        let theirs: Vec<DateTime<Utc>> = cron
            .iter_after(begin)
            .map(|z| DateTime::from_timestamp(z.timestamp().as_second(), 0).unwrap())
            .take_while(|t| *t < utc(&end))
            .collect();
        assert_eq!(ours, theirs, "{expr} in {zone} from {start}");
    }
}

// ---- misfire ------------------------------------------------------------------------------

#[test]
fn misfire_decisions() {
    let s = sched("30 2 * * *", "America/New_York");
    let now = utc("2026-03-09T12:00:00Z");
    // Never ran: nothing to catch up.
    assert_eq!(
        misfire(&s, Misfire::RunOnce, None, now),
        MisfireDecision::None
    );
    assert_eq!(misfire(&s, Misfire::Skip, None, now), MisfireDecision::None);
    // Ran the latest tick: nothing missed.
    let last = Some(utc("2026-03-09T06:30:00Z"));
    assert_eq!(
        misfire(&s, Misfire::RunOnce, last, now),
        MisfireDecision::None
    );
    // A last tick in the future (the clock went back): nothing missed.
    let future = Some(utc("2026-03-10T06:30:00Z"));
    assert_eq!(
        misfire(&s, Misfire::RunOnce, future, now),
        MisfireDecision::None
    );
    // Down from the 6th: missed the 7th, the gap tick of the 8th and the 9th.
    let last = Some(utc("2026-03-06T07:30:00Z"));
    let missed = utc("2026-03-09T06:30:00Z");
    assert_eq!(
        misfire(&s, Misfire::RunOnce, last, now),
        MisfireDecision::RunOnce { missed, count: 3 }
    );
    assert_eq!(
        misfire(&s, Misfire::Skip, last, now),
        MisfireDecision::Skip { missed, count: 3 }
    );
    // `now` exactly on a tick counts it.
    assert_eq!(
        misfire(&s, Misfire::Skip, last, utc("2026-03-08T07:00:00Z")),
        MisfireDecision::Skip {
            missed: utc("2026-03-08T07:00:00Z"),
            count: 2
        }
    );
}

#[test]
fn misfire_count_is_capped_for_long_outages() {
    let s = sched("* * * * *", "Europe/London");
    let last = utc("2026-03-01T00:00:00Z");
    let now = utc("2026-03-31T00:00:30Z"); // ~43 000 missed minutes, across the DST change
    let started = std::time::Instant::now();
    assert_eq!(
        misfire(&s, Misfire::RunOnce, Some(last), now),
        MisfireDecision::RunOnce {
            missed: utc("2026-03-31T00:00:00Z"),
            count: MISFIRE_COUNT_CAP
        }
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // Just under the cap is counted exactly.
    let last = utc("2026-03-31T00:00:00Z") - TimeDelta::minutes(9_999);
    assert_eq!(
        misfire(&s, Misfire::Skip, Some(last), now),
        MisfireDecision::Skip {
            missed: utc("2026-03-31T00:00:00Z"),
            count: 9_999
        }
    );
}
