//! invar's schedules against an independent reference written here: a cron field matcher of
//! its own (not croner) with cronie's day rule, and the documented DST rules applied to each
//! matching wall-clock time through jiff's zone data. 33 expressions × 8 zones (including
//! Lord Howe's 30-minute DST, Chatham's +12:45, Dublin's negative DST and Santiago's
//! southern-hemisphere changes) over two years, every fire time compared.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, Datelike, TimeZone as _, Utc};
use invar_core::schedule::Schedule;
use jiff::civil::{Date, DateTime as Civil};
use jiff::tz::{AmbiguousOffset, TimeZone};
use std::collections::BTreeSet;

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Dublin",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kolkata",
];

const EXPRS: &[&str] = &[
    "0 0 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "15 2 * * *",
    "0,30 2 * * *",
    "0 2,3 * * *",
    "30 1,13 * * *",
    "15 1-3 * * *",
    "45 23 * * *",
    "0 12 * * MON-FRI",
    "0 9-17/4 * * 1-5",
    "5 4 * * SUN",
    "0 0 1 * *",
    "0 0 13 * FRI",
    "0 0 */2 * 1",
    "0 0 1-7 * MON",
    "0 0 * * 7",
    "0 0 29 2 *",
    "0 3 1,15 * *",
    "30 2 * 3,4,9,10 SUN",
    "0 0 ? * mon",
    "0 0 1 JAN,JUL *",
    "10 2 */3 * *",
    "0 1 15 * 1-5",
    "0 2 1 * 0",
    "0 0 1 * */2",
    "0 * * * *",
    "30 * * * 6",
    "*/30 1 * * *",
    "0 */6 * * *",
    "*/15 2 * * SUN",
    "* 2 * * SUN",
    "0 */2 */2 * *",
];

/// One field: the allowed values, and whether its text starts with `*` or `?`.
struct Field {
    allowed: BTreeSet<u32>,
    star: bool,
}

fn name_value(s: &str, names: &[&str]) -> Option<u32> {
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|i| i as u32)
}

fn field(text: &str, lo: u32, hi: u32, names: &[&str], base: u32) -> Field {
    let value = |s: &str| -> u32 {
        s.parse::<u32>()
            .ok()
            .or_else(|| name_value(s, names).map(|v| v + base))
            .unwrap_or_else(|| panic!("bad value `{s}`"))
    };
    let mut allowed = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap()),
            None => (part, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a), value(b))
        } else if step > 1 {
            (value(range), hi)
        } else {
            (value(range), value(range))
        };
        let mut v = a;
        while v <= b {
            allowed.insert(v);
            v += step;
        }
    }
    Field {
        allowed,
        star: text.starts_with('*') || text.starts_with('?'),
    }
}

struct Reference {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
    fixed: bool,
}

impl Reference {
    fn new(expr: &str) -> Reference {
        let f: Vec<&str> = expr.split_whitespace().collect();
        let months = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        let days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let mut dow = field(f[4], 0, 7, &days, 0);
        if dow.allowed.remove(&7) {
            dow.allowed.insert(0);
        }
        Reference {
            minute: field(f[0], 0, 59, &[], 0),
            hour: field(f[1], 0, 23, &[], 0),
            dom: field(f[2], 1, 31, &[], 0),
            month: field(f[3], 1, 12, &months, 1),
            dow,
            fixed: !f[0].contains('*') && !f[1].contains('*'),
        }
    }

    /// cronie's rule: AND when either day field starts with `*`, else OR.
    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom.allowed.contains(&(d.day() as u32));
        let dow = self
            .dow
            .allowed
            .contains(&(d.weekday().to_sunday_zero_offset() as u32));
        let month = self.month.allowed.contains(&(d.month() as u32));
        month
            && if self.dom.star || self.dow.star {
                dom && dow
            } else {
                dom || dow
            }
    }

    /// Every fire time in [from, to), by the documented rules.
    fn ticks(&self, tz: &TimeZone, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = BTreeSet::new();
        let civil =
            |t: DateTime<Utc>| Date::new(t.year() as i16, t.month() as i8, t.day() as i8).unwrap();
        let mut day = civil(from).checked_sub(jiff::Span::new().days(2)).unwrap();
        let last = civil(to).checked_add(jiff::Span::new().days(2)).unwrap();
        while day <= last {
            if self.day_matches(day) {
                for &h in &self.hour.allowed {
                    for &m in &self.minute.allowed {
                        let wall =
                            Civil::new(day.year(), day.month(), day.day(), h as i8, m as i8, 0, 0)
                                .unwrap();
                        let amb = tz.to_ambiguous_timestamp(wall);
                        match amb.offset() {
                            AmbiguousOffset::Unambiguous { offset } => {
                                out.insert(offset.to_timestamp(wall).unwrap().as_second());
                            }
                            AmbiguousOffset::Fold { before, after } => {
                                let a = before.to_timestamp(wall).unwrap().as_second();
                                let b = after.to_timestamp(wall).unwrap().as_second();
                                out.insert(a.min(b));
                                if !self.fixed {
                                    out.insert(a.max(b));
                                }
                            }
                            AmbiguousOffset::Gap { after, .. } => {
                                if self.fixed {
                                    // Once, at the transition that opened the gap.
                                    let early = after.to_timestamp(wall).unwrap();
                                    let t = tz.following(early).next().unwrap().timestamp();
                                    out.insert(t.as_second());
                                }
                            }
                        }
                    }
                }
            }
            day = day.tomorrow().unwrap();
        }
        out.into_iter()
            .map(|s| Utc.timestamp_opt(s, 0).unwrap())
            .filter(|t| *t >= from && *t < to)
            .collect()
    }
}

#[test]
fn two_years_of_fire_times_match_an_independent_reference() {
    // Two years, with a leap day (2028-02-29) and every zone's changes in both directions.
    let from = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2028, 12, 1, 0, 0, 0).unwrap();
    let mut compared = 0usize;
    for zone in ZONES {
        let tz = TimeZone::get(zone).unwrap();
        for expr in EXPRS {
            let want = Reference::new(expr).ticks(&tz, from, to);
            let s = Schedule::parse(expr, Some(zone)).unwrap();
            let mut got = Vec::new();
            let mut at = from - chrono::TimeDelta::seconds(1);
            while let Some(t) = s.next_after(at) {
                if t >= to {
                    break;
                }
                got.push(t);
                at = t;
            }
            if got != want {
                let first = got
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "`{expr}` in {zone}: {} ticks, reference {}; first difference at #{first}: \
                     invar {:?}, reference {:?}",
                    got.len(),
                    want.len(),
                    got.get(first),
                    want.get(first)
                );
            }
            assert!(!want.is_empty(), "`{expr}` in {zone} never fires");
            compared += got.len();
        }
    }
    assert!(compared > 100_000, "{compared}");
}

#[test]
fn cronie_day_rule_for_a_star_step_day_of_month() {
    // Odd days that are Mondays (cronie: `*/2` starts with `*`, so AND), not odd days OR Mondays.
    let s = Schedule::parse("0 0 */2 * 1", Some("UTC")).unwrap();
    let mut at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        at = s.next_after(at).unwrap();
        got.push(at.to_rfc3339());
    }
    assert_eq!(
        got,
        [
            "2026-01-05T00:00:00+00:00",
            "2026-01-19T00:00:00+00:00",
            "2026-02-09T00:00:00+00:00"
        ]
    );
}

#[test]
fn an_empty_list_item_is_refused_at_once() {
    // Found by the `schedule` fuzz target: `,` parsed, then each search ran for seconds.
    for expr in [
        ", 9-17 * * MON-FRI",
        "1, * * * *",
        "0 ,5 * * *",
        "0 0 * * 1,,5",
    ] {
        let t0 = std::time::Instant::now();
        let e = invar_core::schedule::Schedule::parse(expr, Some("Asia/Kathmandu")).unwrap_err();
        assert!(e.contains("has an empty list item"), "{expr}: {e}");
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(500),
            "{expr}"
        );
    }
    assert!(invar_core::schedule::Schedule::parse("0,30 9-17 * * MON-FRI", None).is_ok());
}
