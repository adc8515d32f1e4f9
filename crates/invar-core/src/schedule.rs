//! Cron schedules in IANA time zones: pure arithmetic, no I/O, no clock.
//!
//! A suite's `schedule` is a 5-field cron expression (minute hour day-of-month month
//! day-of-week) read in its `timezone` (UTC when none is given). Every instant here is a
//! `DateTime<Utc>`; ticks always fall on a whole second (in practice on a whole minute).
//!
//! # Cron syntax (Vixie cron)
//!
//! Exactly 5 fields, parsed by croner with seconds and years disallowed: numbers, `*`, ranges
//! `a-b`, steps `*/n` and `a-b/n`, lists `a,b,c`, month names `JAN`…`DEC`, weekday names
//! `SUN`…`SAT` (`0` and `7` are both Sunday), `?` as a synonym of `*` in the two day fields,
//! and croner's `L`, `W` and `#` day extensions. The day fields combine as in cronie and
//! Vixie cron (`cron.c`: `DOM_STAR`/`DOW_STAR`, set when the field's text starts with `*`):
//! when neither starts with `*` (or `?`), a day matching **either** runs (`0 0 13 * FRI` is
//! every Friday and every 13th); when one does, both must match (`0 0 */2 * 1` is the odd
//! days that are Mondays). croner's `+` day-of-week prefix is rejected so there is one rule.
//!
//! # Daylight saving time
//!
//! Following Vixie cron (`cron(8)`: "only jobs that run at a particular time — not specified
//! with `*` in the hour or minute specifier — are affected"), a schedule is one of:
//!
//! - **fixed-time**: neither the minute nor the hour field contains `*` (`30 2 * * *`,
//!   `0,30 1 * * *`, `0 9-17 * * MON-FRI`). It names wall-clock times:
//!   - *gap* (spring forward, the wall clock skips e.g. 02:00–03:00): if any wall-clock time
//!     it names falls in the skipped range, it runs **once**, at the first instant after the
//!     gap (the transition instant, e.g. 03:00 local). Several skipped times collapse into that
//!     one tick, and so does a time named exactly at the end of the gap (`0 2,3 * * *` runs
//!     once at 03:00 that day). No run is lost.
//!   - *fold* (fall back, the wall clock repeats e.g. 01:00–02:00): a wall-clock time shown
//!     twice runs only on its **first** showing (the earlier instant, still in summer time).
//!     No double run.
//! - **interval/wildcard**: the minute or hour field contains `*` (`*/15 * * * *`,
//!   `0 * * * *`, `*/30 1 * * *`). It follows real elapsed time: every instant whose local
//!   wall clock matches is a tick. So nothing ticks inside a gap (an hourly job has 23 ticks
//!   on the spring-forward day), and in a fold both showings tick (an hourly job has 25 ticks
//!   on the fall-back day in New York; `*/15` keeps ticking every 15 real minutes through
//!   the repeated hour). This is croner's behaviour for such jobs too.
//!
//! # Why not croner's own zoned iteration
//!
//! croner (4.0.3) also resolves gaps and folds when iterating over `jiff::Zoned`, but it calls
//! a job fixed-time only when minute and hour are each a *single* value, so `30 2,14 * * *`
//! loses its 02:30 run on the spring-forward day and `30 1,13 * * *` runs twice at 01:30 on
//! the fall-back day. Here croner only matches patterns against civil (zone-less) date-times;
//! the zone is applied by walking the zone's offset segments (the spans between two jiff
//! transitions, during which wall clock and UTC differ by a constant) and applying the rules
//! above at each segment's start. The gap and fold rules look at the transition that starts a
//! segment (the offset just before it against the one after it), which covers every real
//! DST change, including Lord Howe's 30-minute one.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime as Civil;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// The most ticks [`misfire`] counts: a per-minute schedule down for a month misses ~43 000
/// ticks, and counting them one by one would only delay start-up. Counts saturate here.
pub const MISFIRE_COUNT_CAP: u64 = 10_000;

/// How many offset segments (about two per year in a DST zone) a search crosses before
/// giving up; only a schedule firing once in thousands of years would reach it.
const MAX_SEGMENTS: usize = 10_000;

const ONE_SECOND: SignedDuration = SignedDuration::from_secs(1);

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

/// A parsed cron expression in a time zone. See the module docs for the DST rules.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
    expr: String,
    zone: String,
    /// Vixie's rule: neither the minute nor the hour field contains `*`.
    fixed_time: bool,
}

/// The croner parser for invar's schedules: 5 fields; `dom_and_dow` per [`days_and`].
fn parser(dom_and_dow: bool) -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(dom_and_dow)
        .alternative_weekdays(false)
        .sloppy_ranges(false)
        .build()
}

/// cronie's (and Vixie cron's) day rule: a day field whose text starts with `*` (or `?`)
/// makes the two day fields combine with AND, so `0 0 */2 * 1` is odd days that are Mondays;
/// only when neither starts with `*` does a day matching either one run (`0 0 13 * FRI`).
pub fn days_and(day_of_month: &str, day_of_week: &str) -> bool {
    let star = |f: &str| f.starts_with('*') || f.starts_with('?');
    star(day_of_month) || star(day_of_week)
}

impl Schedule {
    /// Parses a 5-field cron expression read in `timezone` (an IANA name; `None` = UTC).
    /// Errors are human sentences naming the bad part.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let expr = expr.trim();
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron schedule `{expr}` must have 5 fields (minute hour day-of-month month \
                 day-of-week), found {}",
                fields.len()
            ));
        }
        if fields[4].starts_with('+') {
            return Err(format!(
                "cron schedule `{expr}`: the day-of-week field `{}` starts with `+` (day-of-month \
                 AND day-of-week), which invar does not support; as in Vixie cron, a day matching \
                 either a restricted day-of-month or a restricted day-of-week runs",
                fields[4]
            ));
        }
        // An empty list item (`,`, `1,`, `,5`) leaves a field matching nothing: croner accepts
        // it and then searches to its year limit for a tick that cannot come (seconds per
        // call; found by the `schedule` fuzz target).
        if let Some((i, field)) = fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.split(',').any(str::is_empty))
        {
            return Err(format!(
                "cron schedule `{expr}`: the {} field `{field}` has an empty list item",
                FIELD_NAMES[i]
            ));
        }
        let parser = parser(days_and(fields[2], fields[4]));
        let cron = parser.parse(expr).map_err(|err| {
            // Parse each field alone (the others `*`) to name the one that is wrong.
            for (i, field) in fields.iter().enumerate() {
                let mut probe = ["*"; 5];
                probe[i] = field;
                if let Err(e) = parser.parse(&probe.join(" ")) {
                    return format!(
                        "cron schedule `{expr}`: the {} field `{field}` is invalid ({e})",
                        FIELD_NAMES[i]
                    );
                }
            }
            format!("cron schedule `{expr}` is invalid ({err})")
        })?;
        // Every 5-field pattern that fires at all fires within 28 years of any date (leap days
        // and weekdays repeat); one that never fires (`0 0 30 2 *`) would make every search
        // run to croner's year limit, so it is refused here.
        if cron
            .find_next_occurrence(&jiff::civil::date(2000, 1, 1).at(0, 0, 0, 0), true)
            .is_err()
        {
            return Err(format!(
                "cron schedule `{expr}` never fires (no date matches its day and month fields)"
            ));
        }
        let (tz, zone) = match timezone {
            None => (TimeZone::UTC, "UTC".to_string()),
            Some(name) => {
                let tz = TimeZone::get(name).map_err(|_| {
                    format!(
                        "unknown time zone `{name}`: expected an IANA zone name such as `UTC`, \
                         `Asia/Tokyo` or `America/New_York`"
                    )
                })?;
                (tz, name.to_string())
            }
        };
        let fixed_time = !fields[0].contains('*') && !fields[1].contains('*');
        Ok(Schedule {
            cron,
            tz,
            expr: expr.to_string(),
            zone,
            fixed_time,
        })
    }

    /// The first tick strictly after `after`.
    ///
    /// `None` only when no tick exists within the representable range.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks are whole seconds, so "> after" is ">= floor(after) + 1 s".
        let mut from = to_timestamp(after)?.checked_add(ONE_SECOND).ok()?;
        for _ in 0..MAX_SEGMENTS {
            let seg = self.segment(from);
            if let Some(start) = seg.start
                && start >= from
                && self.gap_tick(&seg)
            {
                return from_timestamp(start);
            }
            let mut wall = seg.offset.to_datetime(from);
            if let Some(lowest) = self.lowest_wall(&seg) {
                wall = wall.max(lowest);
            }
            let found = self.cron.find_next_occurrence(&wall, true).ok()?;
            let tick = seg.offset.to_timestamp(found).ok()?;
            match seg.end {
                Some(end) if tick >= end => from = end,
                _ => return from_timestamp(tick),
            }
        }
        None
    }

    /// The latest tick at or before `at` (for misfire and the dead-man's switch).
    ///
    /// `None` only when no tick exists within the representable range.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks are whole seconds, so "<= at" is "<= floor(at)".
        let mut upto = to_timestamp(at)?;
        for _ in 0..MAX_SEGMENTS {
            let seg = self.segment(upto);
            let wall = seg.offset.to_datetime(upto);
            // croner finds nothing only before the first match after year 1: nothing earlier.
            let found = self.cron.find_previous_occurrence(&wall, true).ok()?;
            if self.lowest_wall(&seg).is_none_or(|lowest| found >= lowest) {
                return from_timestamp(seg.offset.to_timestamp(found).ok()?);
            }
            let start = seg.start?;
            if self.gap_tick(&seg) {
                return from_timestamp(start);
            }
            upto = start.checked_sub(ONE_SECOND).ok()?;
        }
        None
    }

    /// The cron expression as given (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA zone name as given, `"UTC"` when none was.
    pub fn timezone_name(&self) -> &str {
        &self.zone
    }

    /// The offset segment containing `ts`.
    fn segment(&self, ts: Timestamp) -> Segment {
        let offset = self.tz.to_offset(ts);
        // `preceding` is strictly before its argument; `ts` is a whole second, as are
        // transitions, so this finds a transition at `ts` itself too.
        let start = ts
            .checked_add(ONE_SECOND)
            .ok()
            .and_then(|t| self.tz.preceding(t).next())
            .map(|t| t.timestamp());
        let before = start
            .and_then(|s| s.checked_sub(ONE_SECOND).ok())
            .map_or(offset, |t| self.tz.to_offset(t));
        let end = self.tz.following(ts).next().map(|t| t.timestamp());
        Segment {
            start,
            before,
            offset,
            end,
        }
    }

    /// For a fixed-time schedule in a segment that starts with a fold: the lowest wall-clock
    /// time it may tick at there, the end of the previous segment's wall clock, since earlier
    /// ones were already shown (and run) before the clock went back. Otherwise the segment's
    /// first wall-clock time, if it has a start.
    fn lowest_wall(&self, seg: &Segment) -> Option<Civil> {
        let start = seg.start?;
        Some(if self.fixed_time && seg.before > seg.offset {
            seg.before.to_datetime(start)
        } else {
            seg.offset.to_datetime(start)
        })
    }

    /// Whether a fixed-time schedule ticks at the start of `seg` for wall-clock times skipped
    /// by the gap that starts it.
    fn gap_tick(&self, seg: &Segment) -> bool {
        let Some(start) = seg.start else {
            return false;
        };
        if !self.fixed_time || seg.before >= seg.offset {
            return false;
        }
        let skipped_from = seg.before.to_datetime(start);
        let skipped_to = seg.offset.to_datetime(start);
        self.cron
            .find_next_occurrence(&skipped_from, true)
            .is_ok_and(|m| m < skipped_to)
    }
}

/// A span of time with one UTC offset: from the transition `start` (None: since the start
/// of the zone's history) to the next transition `end` (None: forever).
struct Segment {
    start: Option<Timestamp>,
    /// The offset just before `start` (equal to `offset` when there is no start).
    before: Offset,
    offset: Offset,
    end: Option<Timestamp>,
}

/// Whole seconds (floored); None outside jiff's range.
fn to_timestamp(t: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::from_second(t.timestamp()).ok()
}

fn from_timestamp(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().try_into().ok()?)
}

/// What to do at start-up about ticks missed while no watcher ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MisfireDecision {
    /// No tick was missed (or the suite never ran).
    None,
    /// Run once now, as the tick `missed` (the latest missed one).
    RunOnce { missed: DateTime<Utc>, count: u64 },
    /// Log and carry on with the next tick.
    Skip { missed: DateTime<Utc>, count: u64 },
}

/// `last_tick`: the latest tick for which a run was recorded (None: never ran → no misfire).
///
/// Counts the ticks in `(last_tick, now]`; none → [`MisfireDecision::None`], else by policy,
/// with `missed` the latest of them. The count saturates at [`MISFIRE_COUNT_CAP`], so a
/// per-minute schedule down for a month reports 10 000 and start-up stays fast; `missed` is
/// exact either way.
pub fn misfire(
    s: &Schedule,
    policy: crate::model::Misfire,
    last_tick: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> MisfireDecision {
    let Some(last) = last_tick else {
        return MisfireDecision::None;
    };
    let Some(missed) = s.latest_at_or_before(now) else {
        return MisfireDecision::None;
    };
    if missed <= last {
        return MisfireDecision::None;
    }
    let mut count = 0;
    let mut cursor = last;
    while count < MISFIRE_COUNT_CAP {
        match s.next_after(cursor) {
            Some(t) if t <= now => {
                count += 1;
                cursor = t;
            }
            _ => break,
        }
    }
    match policy {
        crate::model::Misfire::Skip => MisfireDecision::Skip { missed, count },
        crate::model::Misfire::RunOnce => MisfireDecision::RunOnce { missed, count },
    }
}
