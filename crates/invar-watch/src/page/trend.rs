//! An invariant's trend chart and incident timeline on the status page: one inline SVG (no
//! script, no external asset; it scales to the row's width, so it reads on a phone) and a
//! line of text saying the same for screen readers and scrapers.
//!
//! Top: the main measure ([`crate::status::main_measure`]) over the recent runs, placed by
//! time from the oldest run to the snapshot's instant — a line through the values and one mark
//! per run in the colour of its outcome (a circle where it measured a value, a tick on the
//! baseline where it did not). Bottom: the timeline — a red band while an incident was open,
//! a red diamond where one opened, green where it resolved, amber for a released or flapping
//! notice; a dot above a mark when that event queued a notice.
//!
//! Stable attributes: the `<svg>` has `class="trend"` and `data-measure`; each run mark
//! `data-outcome`; each timeline mark `data-event`; the text line's items `data-event`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{esc, outcome_class, utc, when};
use crate::status::InvariantStatus;

/// The SVG's coordinate box.
const W: f64 = 300.0;
const H: f64 = 70.0;
const LEFT: f64 = 6.0;
const RIGHT: f64 = W - 6.0;
/// The chart's band: values from `TOP` (max) to `BOTTOM` (min); the baseline under it.
const TOP: f64 = 6.0;
const BOTTOM: f64 = 38.0;
const BASE: f64 = 44.0;
/// The timeline's axis.
const LINE: f64 = 60.0;

/// A value as the caption and titles show it: integers without a point, others to 3 places.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Appends the chart and timeline of `i` (nothing when it has no recent runs).
pub(super) fn render(h: &mut String, now: DateTime<Utc>, i: &InvariantStatus) {
    let (Some(first), Some(last)) = (i.recent.first(), i.recent.last()) else {
        return;
    };
    let t0 = first.at;
    let t1 = now.max(last.at);
    let span = (t1 - t0).num_milliseconds().max(0) as f64;
    let x = |t: DateTime<Utc>| {
        if span == 0.0 {
            (LEFT + RIGHT) / 2.0
        } else {
            let f = ((t - t0).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
            LEFT + f * (RIGHT - LEFT)
        }
    };
    let tr = &i.trend;
    let values: Vec<Option<f64>> = (0..i.recent.len())
        .map(|k| {
            tr.values
                .get(k)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
        })
        .collect();
    let finite = values.iter().flatten().copied();
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let y = |v: f64| {
        if hi > lo {
            BOTTOM - (v - lo) / (hi - lo) * (BOTTOM - TOP)
        } else {
            (TOP + BOTTOM) / 2.0
        }
    };
    let measure = tr.measure.as_deref().unwrap_or("");
    let last_value = values.iter().rev().flatten().next().copied();
    let summary = match last_value {
        Some(v) => format!(
            "{} over the last {} runs: last {}, min {}, max {}",
            esc(measure),
            i.recent.len(),
            num(v),
            num(lo),
            num(hi)
        ),
        None => format!("the last {} runs (nothing measured)", i.recent.len()),
    };
    let _ = write!(
        h,
        "<svg class=\"trend\" data-measure=\"{}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{summary}\"><title>{summary}</title>",
        esc(measure)
    );
    if last_value.is_some() {
        let _ = write!(
            h,
            "<text x=\"{LEFT}\" y=\"{}\">{}</text><text x=\"{LEFT}\" y=\"{}\">{}</text>",
            TOP + 3.0,
            num(hi),
            BOTTOM + 3.0,
            num(lo)
        );
    }
    let _ = write!(
        h,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{BASE}\" x2=\"{RIGHT}\" y2=\"{BASE}\"/>"
    );
    // The line, broken where a run measured nothing.
    for seg in values
        .iter()
        .zip(&i.recent)
        .collect::<Vec<_>>()
        .split(|(v, _)| v.is_none())
        .filter(|s| s.len() > 1)
    {
        let pts: Vec<String> = seg
            .iter()
            .filter_map(|(v, r)| v.map(|v| format!("{:.1},{:.1}", x(r.at), y(v))))
            .collect();
        let _ = write!(h, "<polyline class=\"ln\" points=\"{}\"/>", pts.join(" "));
    }
    for (v, r) in values.iter().zip(&i.recent) {
        let oc = outcome_class(Some(&r.outcome));
        let title = format!(
            "{} · {}{}",
            esc(&r.outcome),
            utc(r.at),
            v.map(|v| format!(" · {} {}", esc(measure), num(v)))
                .unwrap_or_default()
        );
        match v {
            Some(v) => {
                let _ = write!(
                    h,
                    "<circle class=\"p-{oc}\" data-outcome=\"{oc}\" cx=\"{:.1}\" cy=\"{:.1}\" \
                     r=\"3.2\"><title>{title}</title></circle>",
                    x(r.at),
                    y(*v)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<rect class=\"p-{oc}\" data-outcome=\"{oc}\" x=\"{:.1}\" y=\"{}\" \
                     width=\"3\" height=\"7\"><title>{title}</title></rect>",
                    x(r.at) - 1.5,
                    BASE - 3.5
                );
            }
        }
    }
    timeline(h, i, t0, t1, &x);
    h.push_str("</svg>");
    timeline_text(h, now, i);
}

/// The open periods (red bands) and the event marks.
fn timeline(
    h: &mut String,
    i: &InvariantStatus,
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
    x: &dyn Fn(DateTime<Utc>) -> f64,
) {
    let _ = write!(
        h,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{LINE}\" x2=\"{RIGHT}\" y2=\"{LINE}\"/>"
    );
    // An incident open when the window starts (resolved in it, or still firing with no
    // `opened` in it) is drawn from the window's start.
    let mut open: Option<DateTime<Utc>> = None;
    let mut bands: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for e in &i.trend.events {
        match e.event.as_str() {
            "opened" => open = open.or(Some(e.at)),
            "resolved" => {
                bands.push((open.take().unwrap_or(t0), e.at));
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        bands.push((start, t1));
    } else if i.incident == crate::status::IncidentStatus::Firing {
        let since = i.incident_since.unwrap_or(t0).max(t0);
        let after_last = bands.last().is_none_or(|(_, end)| *end <= since);
        if after_last {
            bands.push((since, t1));
        }
    }
    for (a, b) in bands {
        let _ = write!(
            h,
            "<rect class=\"band\" x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"8\"/>",
            x(a),
            LINE - 4.0,
            (x(b) - x(a)).max(1.5)
        );
    }
    for e in &i.trend.events {
        let class = match e.event.as_str() {
            "opened" => "e-opened",
            "resolved" => "e-resolved",
            _ => "e-other",
        };
        let cx = x(e.at);
        let notice = e
            .notice
            .as_deref()
            .map(|n| format!(" · {} notice", esc(n)))
            .unwrap_or_else(|| " · notice held".to_string());
        let _ = write!(
            h,
            "<path class=\"{class}\" data-event=\"{ev}\" d=\"M{cx:.1} {top}l4.5 5-4.5 5-4.5-5z\">\
             <title>{ev} · {}{notice}</title></path>",
            utc(e.at),
            ev = esc(&e.event),
            top = LINE - 5.0,
        );
        if e.notice.is_some() {
            let _ = write!(
                h,
                "<circle class=\"notice\" cx=\"{cx:.1}\" cy=\"{}\" r=\"1.6\"/>",
                LINE - 8.5
            );
        }
    }
}

/// The timeline as text: `opened 3h ago (firing notice) · resolved 1h ago (resolved notice)`.
fn timeline_text(h: &mut String, now: DateTime<Utc>, i: &InvariantStatus) {
    if i.trend.events.is_empty() {
        return;
    }
    h.push_str("<ol class=\"timeline\">");
    for e in &i.trend.events {
        let _ = write!(
            h,
            "<li data-event=\"{ev}\">{ev} {}{}</li>",
            when(now, e.at),
            e.notice
                .as_deref()
                .map(|n| format!(" ({} notice)", esc(n)))
                .unwrap_or_else(|| " (notice held)".to_string()),
            ev = esc(&e.event),
        );
    }
    h.push_str("</ol>");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::status::{IncidentStatus, RecentOutcome, TimelineEvent, Trend};
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap()
    }

    /// Four runs 10 minutes apart ending at now: pass, pass, fail, fail — count 3, 5, none, 9.
    fn inv() -> InvariantStatus {
        let outcomes = ["pass", "pass", "fail", "fail"];
        InvariantStatus {
            id: "orders".into(),
            title: "orders hold".into(),
            severity: "critical".into(),
            incident: IncidentStatus::Firing,
            incident_since: Some(now() - Duration::minutes(10)),
            last_outcome: Some("fail".into()),
            last_reason: None,
            last_run_at: Some(now()),
            last_change: Some(now() - Duration::minutes(10)),
            violations: 0,
            silenced: None,
            recent: outcomes
                .iter()
                .enumerate()
                .map(|(k, o)| RecentOutcome {
                    run_id: format!("r{k}"),
                    at: now() - Duration::minutes(30 - 10 * k as i64),
                    outcome: o.to_string(),
                })
                .collect(),
            trend: Trend {
                measure: Some("count".into()),
                values: vec![Some(3.0), Some(5.0), None, Some(9.0)],
                events: vec![TimelineEvent {
                    at: now() - Duration::minutes(10),
                    event: "opened".into(),
                    notice: Some("firing".into()),
                }],
            },
        }
    }

    fn svg(i: &InvariantStatus) -> String {
        let mut h = String::new();
        render(&mut h, now(), i);
        h
    }

    #[test]
    fn the_chart_places_runs_by_time_and_values_min_to_max() {
        let h = svg(&inv());
        assert!(
            h.starts_with(
                "<svg class=\"trend\" data-measure=\"count\" viewBox=\"0 0 300 70\" role=\"img\" \
             aria-label=\"count over the last 4 runs: last 9, min 3, max 9\""
            ),
            "{h}"
        );
        // First run at the left edge on the min, the last at the right edge on the max.
        assert!(h.contains("<circle class=\"p-pass\" data-outcome=\"pass\" cx=\"6.0\" cy=\"38.0\" r=\"3.2\"><title>pass · 2024-05-01 12:00:00 UTC · count 3</title></circle>"), "{h}");
        assert!(
            h.contains("<circle class=\"p-fail\" data-outcome=\"fail\" cx=\"294.0\" cy=\"6.0\""),
            "{h}"
        );
        // The run without a value is a tick on the baseline, and breaks the line.
        assert!(h.contains("<rect class=\"p-fail\" data-outcome=\"fail\" x=\"196.5\" y=\"40.5\" width=\"3\" height=\"7\"><title>fail · 2024-05-01 12:20:00 UTC</title></rect>"), "{h}");
        assert_eq!(
            h.matches("<polyline class=\"ln\" points=\"6.0,38.0 102.0,27.3\"/>")
                .count(),
            1,
            "{h}"
        );
        assert_eq!(
            h.matches("<polyline").count(),
            1,
            "a lone point draws no line: {h}"
        );
        assert!(
            h.contains("<text x=\"6\" y=\"9\">9</text><text x=\"6\" y=\"41\">3</text>"),
            "{h}"
        );
        assert!(h.ends_with("</ol>"), "{h}");
    }

    #[test]
    fn the_timeline_shows_open_periods_openings_notices_and_resolutions() {
        let h = svg(&inv());
        // Opened at 12:20 and still firing: a band from there to now, a red diamond, a dot
        // for its firing notice.
        assert!(
            h.contains("<rect class=\"band\" x=\"198.0\" y=\"56\" width=\"96.0\" height=\"8\"/>"),
            "{h}"
        );
        assert!(h.contains("<path class=\"e-opened\" data-event=\"opened\" d=\"M198.0 55l4.5 5-4.5 5-4.5-5z\"><title>opened · 2024-05-01 12:20:00 UTC · firing notice</title></path>"), "{h}");
        assert!(
            h.contains("<circle class=\"notice\" cx=\"198.0\" cy=\"51.5\" r=\"1.6\"/>"),
            "{h}"
        );
        assert!(h.contains("<ol class=\"timeline\"><li data-event=\"opened\">opened <time datetime=\"2024-05-01T12:20:00Z\" title=\"2024-05-01 12:20:00 UTC\">10m ago</time> (firing notice)</li></ol>"), "{h}");

        // Open before the window and resolved in it (its notice held): a band from the start.
        let mut i = inv();
        i.incident = IncidentStatus::Ok;
        i.trend.events = vec![TimelineEvent {
            at: now() - Duration::minutes(15),
            event: "resolved".into(),
            notice: None,
        }];
        let h = svg(&i);
        assert!(
            h.contains("<rect class=\"band\" x=\"6.0\" y=\"56\" width=\"144.0\" height=\"8\"/>"),
            "{h}"
        );
        assert!(
            h.contains("<path class=\"e-resolved\" data-event=\"resolved\""),
            "{h}"
        );
        assert!(h.contains("(notice held)</li>"), "{h}");
        assert!(!h.contains("class=\"notice\""), "{h}");

        // Firing since before the window, no event in it: the whole window is red.
        let mut i = inv();
        i.incident_since = Some(now() - Duration::days(2));
        i.trend.events.clear();
        let h = svg(&i);
        assert!(
            h.contains("<rect class=\"band\" x=\"6.0\" y=\"56\" width=\"288.0\" height=\"8\"/>"),
            "{h}"
        );
        assert!(
            !h.contains("<ol class=\"timeline\">"),
            "no events, no text: {h}"
        );
    }

    #[test]
    fn flat_single_and_unmeasured_series() {
        let mut i = inv();
        i.incident = IncidentStatus::Ok;
        i.trend.events.clear();
        i.trend.values = vec![Some(4.0); 4];
        let h = svg(&i);
        assert_eq!(
            h.matches("cy=\"22.0\"").count(),
            4,
            "a flat series sits mid-height: {h}"
        );
        assert!(!h.contains("class=\"band\""), "{h}");
        // One run: in the middle.
        i.recent.truncate(1);
        i.recent[0].at = now();
        i.trend.values.truncate(1);
        assert!(svg(&i).contains("cx=\"150.0\" cy=\"22.0\""));
        // Nothing measured: only outcome ticks.
        i.trend = Trend::default();
        let h = svg(&i);
        assert!(
            h.contains("aria-label=\"the last 1 runs (nothing measured)\""),
            "{h}"
        );
        assert!(h.contains("<rect class=\"p-pass\""), "{h}");
        assert!(!h.contains("<circle") && !h.contains("<text"), "{h}");
        // No recent runs: no chart at all.
        i.recent.clear();
        assert_eq!(svg(&i), "");
    }

    #[test]
    fn snapshot_text_in_the_svg_is_escaped() {
        let mut i = inv();
        i.trend.measure = Some("<b>\"x\"</b>".into());
        i.recent[0].outcome = "bogus\" onload=\"x".into();
        i.trend.events[0].event = "<script>".into();
        let h = svg(&i);
        assert!(
            !h.contains("<b>") && !h.contains("<script") && !h.contains("\" onload"),
            "{h}"
        );
        assert!(
            h.contains("data-measure=\"&lt;b&gt;&quot;x&quot;&lt;/b&gt;\""),
            "{h}"
        );
        assert!(h.contains("class=\"p-none\" data-outcome=\"none\""), "{h}");
    }

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(11.5), "11.5");
        assert_eq!(num(1.0 / 3.0), "0.333");
        assert_eq!(num(-2.0), "-2");
    }
}
