//! `invar schedule EXPR`: the next fire times of a cron expression in a zone, one RFC 3339
//! timestamp with the zone's offset per line (like `systemd-analyze calendar --iterations`),
//! so a schedule can be seen before it is trusted. Same parser and DST rules as `invar watch`.

use crate::cli::ScheduleArgs;
use crate::exit::{Exit, usage};
use chrono::{DateTime, Utc};
use invar_core::schedule::Schedule;

pub fn execute(args: &ScheduleArgs) -> Exit {
    print(
        &args.expr,
        args.timezone.as_deref(),
        args.from.as_deref(),
        args.count,
    )
}

/// Prints `count` fire times after `from` (default: now); exit 3 on a bad expression or zone.
fn print(expr: &str, timezone: Option<&str>, from: Option<&str>, count: u32) -> Exit {
    let schedule = match Schedule::parse(expr, timezone) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let mut at: DateTime<Utc> = match from {
        None => Utc::now(),
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                return usage(format!(
                    "--from `{s}` is not an RFC 3339 timestamp ({e}), e.g. 2026-01-01T00:00:00Z"
                ));
            }
        },
    };
    // Zone arithmetic far from today walks every transition in between: keep to the years a
    // schedule can actually fire in (the watcher's ticks come from the clock).
    use chrono::Datelike;
    if !(1970..=2200).contains(&at.year()) {
        return usage(format!(
            "--from must be between the years 1970 and 2200, found {}",
            at.year()
        ));
    }
    // `--from` is inclusive: a tick exactly at it is the first line.
    at -= chrono::TimeDelta::milliseconds(1);
    let zone = jiff::tz::TimeZone::get(timezone.unwrap_or("UTC")).ok();
    for _ in 0..count {
        let Some(next) = schedule.next_after(at) else {
            break;
        };
        println!("{}", local_rfc3339(next, zone.as_ref()));
        at = next;
    }
    Exit::Ok
}

/// `2026-03-08T03:00:00-04:00`: the instant written in the schedule's zone.
fn local_rfc3339(t: DateTime<Utc>, zone: Option<&jiff::tz::TimeZone>) -> String {
    let fallback = || t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (Some(zone), Ok(ts)) = (zone, jiff::Timestamp::from_second(t.timestamp())) else {
        return fallback();
    };
    let offset = zone.to_offset(ts).seconds();
    match chrono::FixedOffset::east_opt(offset) {
        Some(o) => t
            .with_timezone(&o)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        None => fallback(),
    }
}
