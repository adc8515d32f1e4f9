//! `/`: the status page, a pure rendering of the [`StatusSnapshot`] as one HTML5 document —
//! no JavaScript, inline CSS only, readable on a phone. It reloads itself every 30 s with a
//! `<meta http-equiv="refresh">`.
//!
//! Top to bottom: a header with the overall state (`N firing` / `N overdue` in red, `all
//! clear` in green); the open incidents, most severe first; every invariant (firing ones
//! first, most severe first, then config order) with its severity, state, last outcome, last
//! change, a strip of its recent runs, and under it its trend chart and incident timeline
//! (inline SVG, [`trend`]); every suite with its schedule, next and last run,
//! and `RUNNING` / `OVERDUE` flags; the alert outbox counts.
//!
//! Every text from the snapshot is HTML-escaped. Stable attributes for tests and scrapers:
//! each invariant row has `data-invariant`, `data-outcome` (`pass`…`error`, or `none` if never
//! run) and `data-incident` (`firing` / `ok`); each suite row `data-suite`, `data-overdue` and
//! `data-running` (`true` / `false`); each open incident `data-incident-of`; the header
//! `data-firing` and `data-overdue` (counts).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

mod trend;

use crate::status::{IncidentStatus, InvariantStatus, StatusSnapshot, SuiteStatus};

/// The whole page.
pub fn render(s: &StatusSnapshot) -> String {
    let now = s.generated_at;
    let firing: Vec<&InvariantStatus> = by_severity(
        s.invariants
            .iter()
            .filter(|i| i.incident == IncidentStatus::Firing)
            .collect(),
    );
    let overdue = s.suites.iter().filter(|su| su.overdue).count();

    let mut state = Vec::new();
    if !firing.is_empty() {
        state.push(format!("{} firing", firing.len()));
    }
    if overdue > 0 {
        state.push(format!("{overdue} overdue"));
    }
    let (tone, state) = if state.is_empty() {
        ("good", "all clear".to_string())
    } else {
        ("bad", state.join(" · "))
    };

    let mut h = String::with_capacity(8192 + 1024 * s.invariants.len());
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<meta http-equiv=\"refresh\" content=\"30\">\n");
    let _ = writeln!(h, "<title>invar: {}</title>", esc(&state));
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>\n<body>");

    let _ = write!(
        h,
        "<header class=\"top {tone}\"><div class=\"wrap\">\
         <h1>invar</h1>\
         <p class=\"overall\" data-firing=\"{}\" data-overdue=\"{overdue}\">{}</p>\
         <p class=\"meta\">as of {} · store {} · invar {} · reloads every 30 s</p>\
         </div></header>\n<main class=\"wrap\">\n",
        firing.len(),
        esc(&state),
        abs_time(now),
        esc(&s.store),
        esc(&s.version),
    );

    // Open incidents.
    let _ = writeln!(
        h,
        "<section id=\"incidents\"><h2>Open incidents ({})</h2>",
        firing.len()
    );
    if firing.is_empty() {
        h.push_str("<p class=\"none\">No open incidents.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for i in &firing {
            incident_row(&mut h, now, i);
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");

    // Every invariant: the firing ones first.
    let rest = s
        .invariants
        .iter()
        .filter(|i| i.incident != IncidentStatus::Firing);
    let _ = writeln!(
        h,
        "<section id=\"invariants\"><h2>Invariants ({})</h2>",
        s.invariants.len()
    );
    if s.invariants.is_empty() {
        h.push_str("<p class=\"none\">No invariants configured.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for i in firing.iter().copied().chain(rest) {
            invariant_row(&mut h, now, i);
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");

    // Suites.
    let _ = writeln!(
        h,
        "<section id=\"suites\"><h2>Suites ({})</h2>",
        s.suites.len()
    );
    if s.suites.is_empty() {
        h.push_str("<p class=\"none\">No suites configured.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for su in &s.suites {
            suite_row(&mut h, now, su);
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");

    let d = &s.deliveries;
    let _ = writeln!(
        h,
        "<section id=\"alerts\"><h2>Alert deliveries</h2>\
         <p class=\"facts\">{} delivered · {} failed attempts · {} pending</p></section>",
        d.delivered, d.failed_attempts, d.pending
    );
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn incident_row(h: &mut String, now: DateTime<Utc>, i: &InvariantStatus) {
    let oc = outcome_class(i.last_outcome.as_deref());
    let _ = write!(
        h,
        "<li class=\"row o-{oc}\" data-incident-of=\"{id}\"><div class=\"line\">\
         <span class=\"badge sev-{sc}\">{sev}</span><span class=\"chip st-firing\">firing</span>\
         </div><div class=\"id\">{id}</div><div class=\"title\">{title}</div><div class=\"facts\">",
        id = esc(&i.id),
        sc = severity_class(&i.severity),
        sev = esc(&i.severity),
        title = esc(&i.title),
    );
    match i.incident_since {
        Some(t) => {
            let _ = write!(h, "open since {}", when(now, t));
        }
        None => h.push_str("open"),
    }
    if let Some(o) = &i.last_outcome {
        let _ = write!(h, " · last {}", esc(o));
    }
    if i.violations > 0 {
        let _ = write!(h, " · {}", violations(i.violations));
    }
    h.push_str("</div>");
    silenced(h, now, i);
    if let Some(r) = i.last_reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = write!(h, "<div class=\"reason\">{}</div>", esc(r));
    }
    h.push_str("</li>\n");
}

/// `silenced by ID until T: reason` when a silence holds the invariant's notices.
fn silenced(h: &mut String, now: DateTime<Utc>, i: &InvariantStatus) {
    if let Some(s) = &i.silenced {
        let _ = write!(
            h,
            "<div class=\"silenced\" data-silenced-by=\"{id}\">silenced by {id} until {until}{reason}</div>",
            id = esc(&s.id),
            until = when(now, s.until),
            reason = if s.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&s.reason))
            },
        );
    }
}

fn invariant_row(h: &mut String, now: DateTime<Utc>, i: &InvariantStatus) {
    let oc = outcome_class(i.last_outcome.as_deref());
    let outcome = i.last_outcome.as_deref().unwrap_or("none");
    let firing = i.incident == IncidentStatus::Firing;
    let state = if firing { "firing" } else { "ok" };
    let _ = write!(
        h,
        "<li class=\"row o-{oc}\" data-invariant=\"{id}\" data-outcome=\"{outcome}\" \
         data-incident=\"{state}\"><div class=\"line\">\
         <span class=\"badge b-{oc}\">{label}</span><span class=\"chip sev-{sc}\">{sev}</span>\
         <span class=\"chip st-{state}\">{state}</span></div>\
         <div class=\"id\">{id}</div><div class=\"title\">{title}</div><div class=\"facts\">",
        id = esc(&i.id),
        outcome = esc(outcome),
        label = if i.last_outcome.is_some() {
            esc(outcome)
        } else {
            "never run".to_string()
        },
        sc = severity_class(&i.severity),
        sev = esc(&i.severity),
        title = esc(&i.title),
    );
    let mut facts = Vec::new();
    if let Some(t) = i.last_change {
        facts.push(format!("changed {}", when(now, t)));
    }
    if let Some(t) = i.last_run_at {
        facts.push(format!("last run {}", when(now, t)));
    }
    if i.last_outcome.is_some() {
        facts.push(violations(i.violations));
    }
    if facts.is_empty() {
        facts.push("no run recorded yet".to_string());
    }
    h.push_str(&facts.join(" · "));
    h.push_str("</div>");
    silenced(h, now, i);
    if let Some(r) = i.last_reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = write!(h, "<div class=\"reason\">{}</div>", esc(r));
    }
    if !i.recent.is_empty() {
        let _ = write!(
            h,
            "<div class=\"strip\" title=\"recent runs, oldest first\" \
             aria-label=\"{} recent runs, oldest first\">",
            i.recent.len()
        );
        for r in &i.recent {
            let _ = write!(
                h,
                "<span class=\"b-{}\" title=\"{} · {}\"></span>",
                outcome_class(Some(&r.outcome)),
                esc(&r.outcome),
                utc(r.at),
            );
        }
        h.push_str("</div>");
    }
    trend::render(h, now, i);
    h.push_str("</li>\n");
}

fn suite_row(h: &mut String, now: DateTime<Utc>, su: &SuiteStatus) {
    let _ = write!(
        h,
        "<li class=\"row{cls}\" data-suite=\"{name}\" data-overdue=\"{}\" data-running=\"{}\">\
         <div class=\"line\"><span class=\"id\">{name}</span>",
        su.overdue,
        su.running,
        // The left border: red when overdue, else the colour of the last run's status.
        cls = if su.overdue {
            " overdue".to_string()
        } else {
            format!(
                " o-{}",
                outcome_class(su.last_run.as_ref().map(|r| r.status.as_str()))
            )
        },
        name = esc(&su.name),
    );
    if su.overdue {
        h.push_str("<span class=\"badge b-fail\">OVERDUE</span>");
    }
    if su.running {
        h.push_str("<span class=\"badge b-run\">RUNNING</span>");
    }
    h.push_str("</div><div class=\"facts\">");
    match &su.schedule {
        Some(cron) => {
            let _ = write!(
                h,
                "schedule <code>{}</code> in {}",
                esc(cron),
                esc(&su.timezone)
            );
            if let Some(next) = su.next_run {
                let _ = write!(h, " · next {}", when(now, next));
                if let Some(local) = in_zone(next, &su.timezone) {
                    let _ = write!(h, " ({})", esc(&local));
                }
            }
        }
        None => {
            let _ = write!(
                h,
                "on demand only (no schedule) · zone {}",
                esc(&su.timezone)
            );
        }
    }
    h.push_str("</div>");
    if su.overdue {
        h.push_str("<div class=\"alarm\">OVERDUE: ");
        match su.overdue_since {
            Some(t) => {
                let _ = write!(h, "the tick of {} has no recorded run", when(now, t));
            }
            None => h.push_str("a scheduled tick has no recorded run"),
        }
        h.push_str("</div>");
    }
    h.push_str("<div class=\"facts\">");
    match &su.last_run {
        Some(run) => {
            let _ = write!(
                h,
                "last run <span class=\"badge b-{}\">{}</span> by {} {} · took {}",
                outcome_class(Some(&run.status)),
                esc(&run.status),
                esc(&run.trigger),
                when(now, run.started_at),
                duration(run.duration_ms),
            );
            if run.lock_skipped {
                h.push_str(" · skipped: the suite was still running");
            }
            if run.skipped_budget > 0 {
                let _ = write!(h, " · {} skipped by the run budget", run.skipped_budget);
            }
        }
        None => h.push_str("never run"),
    }
    h.push_str("</div></li>\n");
}

/// Stable sort by severity, most severe first; unknown severities last.
fn by_severity(mut v: Vec<&InvariantStatus>) -> Vec<&InvariantStatus> {
    v.sort_by_key(|i| match i.severity.as_str() {
        "critical" => 0,
        "major" => 1,
        "minor" => 2,
        _ => 3,
    });
    v
}

/// A CSS class suffix for an outcome or run status; never a raw snapshot string.
fn outcome_class(o: Option<&str>) -> &'static str {
    match o {
        Some("pass") => "pass",
        Some("warn") => "warn",
        Some("fail") => "fail",
        Some("skip") => "skip",
        Some("error") => "error",
        _ => "none",
    }
}

fn severity_class(s: &str) -> &'static str {
    match s {
        "critical" => "critical",
        "major" => "major",
        "minor" => "minor",
        _ => "other",
    }
}

fn violations(n: u64) -> String {
    if n == 1 {
        "1 violation".into()
    } else {
        format!("{n} violations")
    }
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {}s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// `2024-05-01 12:00:00 UTC`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The absolute time, visible.
fn abs_time(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        utc(t)
    )
}

/// The time relative to `now` (`12m ago`, `in 3h`), the absolute UTC time in its title.
fn when(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        utc(t),
        relative(now, t)
    )
}

/// `just now`, `45s ago`, `12m ago`, `3h 5m ago`, `2d ago`; `in …` for the future.
fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let n = secs.unsigned_abs();
    if n < 5 {
        return if secs >= 0 { "just now" } else { "now" }.to_string();
    }
    let span = if n < 60 {
        format!("{n}s")
    } else if n < 3600 {
        format!("{}m", n / 60)
    } else if n < 10 * 3600 && n % 3600 >= 60 {
        format!("{}h {}m", n / 3600, n % 3600 / 60)
    } else if n < 48 * 3600 {
        format!("{}h", n / 3600)
    } else {
        format!("{}d", n / 86_400)
    };
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// The wall-clock time in the suite's zone (`Thu 03:00 CEST`), None for UTC or an unknown zone.
fn in_zone(t: DateTime<Utc>, zone: &str) -> Option<String> {
    if zone == "UTC" {
        return None;
    }
    let ts = jiff::Timestamp::from_millisecond(t.timestamp_millis()).ok()?;
    let zoned = ts.in_tz(zone).ok()?;
    Some(zoned.strftime("%a %H:%M %Z").to_string())
}

/// Escapes text for HTML content and double- or single-quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
:root{color-scheme:light dark;--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;\
--line:#d1d9e0;--pass:#1a7f37;--warn:#b08800;--fail:#cf222e;--skip:#8c959f;--error:#5a32a3;\
--none:#d1d9e0;--run:#0969da}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;\
--muted:#9198a1;--line:#30363d;--none:#3d444d}}\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}\
body{margin:0;background:var(--bg);color:var(--fg);\
font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
.wrap{max-width:60rem;margin:0 auto;padding:0 .75rem}\
header.top{color:#fff;padding:.6rem 0 .7rem}\
header.good{background:var(--pass)}header.bad{background:var(--fail)}\
h1{font-size:.95rem;margin:0;font-weight:600;opacity:.9}\
.overall{font-size:1.7rem;font-weight:700;margin:0}\
.meta{font-size:.8rem;margin:.15rem 0 0;opacity:.9;overflow-wrap:anywhere}\
h2{font-size:.85rem;margin:1.2rem 0 .45rem;color:var(--muted);text-transform:uppercase;\
letter-spacing:.04em}\
ul{list-style:none;margin:0;padding:0}\
.row{background:var(--card);border:1px solid var(--line);border-left:.35rem solid var(--none);\
border-radius:.4rem;padding:.45rem .6rem;margin:0 0 .45rem;min-width:0}\
.o-pass{border-left-color:var(--pass)}.o-warn{border-left-color:var(--warn)}\
.o-fail{border-left-color:var(--fail)}.o-skip{border-left-color:var(--skip)}\
.o-error{border-left-color:var(--error)}.row.overdue{border-left-color:var(--fail)}\
.line{display:flex;flex-wrap:wrap;align-items:center;gap:.2rem .45rem}\
.id{margin-top:.15rem;font:600 .92rem/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;\
overflow-wrap:anywhere;min-width:0}\
.badge,.chip{display:inline-block;border-radius:1rem;padding:0 .5rem;font-size:.75rem;\
font-weight:700;line-height:1.35rem;white-space:nowrap}\
.badge{color:#fff;background:var(--skip)}\
.b-pass{background:var(--pass)}.b-warn{background:var(--warn)}.b-fail{background:var(--fail)}\
.b-skip{background:var(--skip)}.b-error{background:var(--error)}.b-none{background:var(--none)}\
.b-run{background:var(--run)}\
.badge.b-none{color:var(--fg)}\
.chip{border:1px solid var(--line);color:var(--muted)}\
.chip.st-firing{background:var(--fail);border-color:var(--fail);color:#fff}\
.chip.sev-critical{border-color:var(--fail);color:var(--fail)}\
.chip.sev-major{border-color:var(--warn);color:var(--warn)}\
.badge.sev-critical{background:var(--fail)}.badge.sev-major{background:var(--warn)}\
.title{margin:.1rem 0;overflow-wrap:anywhere}\
.facts,.reason{font-size:.82rem;color:var(--muted);overflow-wrap:anywhere}\
.reason{font-style:italic}\
.silenced{font-size:.82rem;color:var(--warn);overflow-wrap:anywhere}\
.alarm{font-size:.85rem;font-weight:700;color:var(--fail)}\
code{font:.85em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}\
time[title]{text-decoration:underline dotted;text-underline-offset:2px}\
.strip{display:flex;flex-wrap:wrap;gap:2px;margin-top:.35rem}\
.strip span{width:.8rem;height:.8rem;border-radius:2px;background:var(--none)}\
.strip .b-pass{background:var(--pass)}.strip .b-warn{background:var(--warn)}\
.strip .b-fail{background:var(--fail)}.strip .b-skip{background:var(--skip)}\
.strip .b-error{background:var(--error)}\
.none{color:var(--muted);margin:.2rem 0}\
.trend{display:block;width:100%;max-width:32rem;height:auto;margin-top:.35rem}\
.trend text{font:8px system-ui,sans-serif;fill:var(--muted);paint-order:stroke;\
stroke:var(--card);stroke-width:2px}\
.trend .axis{stroke:var(--line);stroke-width:1}\
.trend .ln{fill:none;stroke:var(--muted);stroke-width:1.2}\
.trend .p-pass{fill:var(--pass)}.trend .p-warn{fill:var(--warn)}.trend .p-fail{fill:var(--fail)}\
.trend .p-skip{fill:var(--skip)}.trend .p-error{fill:var(--error)}.trend .p-none{fill:var(--none)}\
.trend .band{fill:var(--fail);opacity:.3}.trend .notice{fill:var(--fg)}\
.trend .e-opened{fill:var(--fail)}.trend .e-resolved{fill:var(--pass)}\
.trend .e-other{fill:var(--warn)}\
.timeline{display:flex;flex-wrap:wrap;gap:0 .6rem;margin:.1rem 0 0;padding:0;list-style:none;\
font-size:.78rem;color:var(--muted)}\
";

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::status::{DeliveryCounts, LastRun, RecentOutcome};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap()
    }

    fn invariant(id: &str, severity: &str, outcome: &str, firing: bool) -> InvariantStatus {
        InvariantStatus {
            id: id.into(),
            title: format!("{id} holds"),
            severity: severity.into(),
            incident: if firing {
                IncidentStatus::Firing
            } else {
                IncidentStatus::Ok
            },
            incident_since: firing.then(|| now() - Duration::hours(3)),
            last_outcome: Some(outcome.into()),
            last_reason: None,
            last_run_at: Some(now() - Duration::minutes(1)),
            last_change: Some(now() - Duration::minutes(12)),
            violations: 0,
            silenced: None,
            recent: vec![
                RecentOutcome {
                    run_id: "r1".into(),
                    at: now() - Duration::minutes(30),
                    outcome: "pass".into(),
                },
                RecentOutcome {
                    run_id: "r2".into(),
                    at: now() - Duration::minutes(1),
                    outcome: outcome.into(),
                },
            ],
            trend: Default::default(),
        }
    }

    fn suite(name: &str, overdue: bool) -> SuiteStatus {
        SuiteStatus {
            name: name.into(),
            schedule: Some("*/15 * * * *".into()),
            timezone: "Europe/Berlin".into(),
            next_run: Some(now() + Duration::minutes(15)),
            last_run: Some(LastRun {
                run_id: "r2".into(),
                trigger: "schedule".into(),
                started_at: now() - Duration::minutes(1),
                duration_ms: 1500,
                status: "fail".into(),
                lock_skipped: false,
                skipped_budget: 0,
            }),
            running: false,
            overdue,
            overdue_since: overdue.then(|| now() - Duration::minutes(45)),
        }
    }

    fn snapshot(invariants: Vec<InvariantStatus>, suites: Vec<SuiteStatus>) -> StatusSnapshot {
        StatusSnapshot {
            generated_at: now(),
            version: "0.1.0 (abc1234)".into(),
            store: "sqlite".into(),
            suites,
            invariants,
            deliveries: DeliveryCounts::default(),
        }
    }

    fn pos(html: &str, needle: &str) -> usize {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the page"))
    }

    #[test]
    fn firing_invariants_come_first_most_severe_first() {
        let html = render(&snapshot(
            vec![
                invariant("a_pass", "critical", "pass", false),
                invariant("b_minor_firing", "minor", "fail", true),
                invariant("c_warn", "major", "warn", false),
                invariant("d_critical_firing", "critical", "error", true),
            ],
            vec![],
        ));
        // The incidents section, most severe first, before the list of every invariant.
        let inc_d = pos(&html, "data-incident-of=\"d_critical_firing\"");
        let inc_b = pos(&html, "data-incident-of=\"b_minor_firing\"");
        let list = pos(&html, "id=\"invariants\"");
        assert!(inc_d < inc_b && inc_b < list);
        // In the list: firing (critical, then minor), then config order.
        let order: Vec<usize> = ["d_critical_firing", "b_minor_firing", "a_pass", "c_warn"]
            .iter()
            .map(|id| pos(&html, &format!("data-invariant=\"{id}\"")))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(html.matches("data-invariant=").count(), 4);
        assert!(html.contains("Open incidents (2)"));
    }

    #[test]
    fn a_silenced_invariant_says_by_which_silence_until_when_and_why() {
        let mut held = invariant("orders", "critical", "fail", true);
        held.silenced = Some(invar_core::SilencedBy {
            id: "config:invar.yaml:12".into(),
            until: now() + Duration::hours(2),
            reason: "weekly <vacuum>".into(),
        });
        let html = render(&snapshot(
            vec![held, invariant("other", "minor", "pass", false)],
            vec![],
        ));
        let note = "<div class=\"silenced\" data-silenced-by=\"config:invar.yaml:12\">silenced by \
                    config:invar.yaml:12 until <time datetime=\"2024-05-01T14:30:00Z\" \
                    title=\"2024-05-01 14:30:00 UTC\">in 2h</time>: weekly &lt;vacuum&gt;</div>";
        // Once in the open incident, once in the invariant's row; never for `other`.
        assert_eq!(html.matches(note).count(), 2, "{html}");
        assert_eq!(html.matches("data-silenced-by").count(), 2);
    }

    #[test]
    fn rows_carry_stable_attributes() {
        let mut never = invariant("never_run", "minor", "pass", false);
        never.last_outcome = None;
        never.last_run_at = None;
        never.last_change = None;
        never.recent.clear();
        let html = render(&snapshot(
            vec![invariant("orders", "critical", "fail", true), never],
            vec![suite("nightly", true), suite("gate", false)],
        ));
        assert!(
            html.contains(
                "data-invariant=\"orders\" data-outcome=\"fail\" data-incident=\"firing\""
            )
        );
        assert!(
            html.contains(
                "data-invariant=\"never_run\" data-outcome=\"none\" data-incident=\"ok\""
            )
        );
        assert!(html.contains("never run"));
        assert!(
            html.contains("data-suite=\"nightly\" data-overdue=\"true\" data-running=\"false\"")
        );
        assert!(html.contains("data-suite=\"gate\" data-overdue=\"false\" data-running=\"false\""));
        assert_eq!(html.matches(">OVERDUE</span>").count(), 1);
        assert!(html.contains("data-firing=\"1\" data-overdue=\"1\">1 firing · 1 overdue</p>"));
        assert!(html.contains("<header class=\"top bad\">"));
    }

    #[test]
    fn everything_from_the_snapshot_is_escaped() {
        let mut evil = invariant("<script>alert(1)</script>&x", "critical", "fail", true);
        evil.title = "Tom & \"Jerry\" <b>bold</b>".into();
        evil.last_reason = Some("a < b && c > 'd'".into());
        let mut s = snapshot(vec![evil], vec![suite("<script>x</script>", false)]);
        s.version = "<i>v</i>".into();
        let html = render(&s);
        assert!(!html.to_lowercase().contains("<script"), "{html}");
        assert!(!html.contains("<b>bold") && !html.contains("<i>v"));
        assert!(html.contains(
            "data-invariant=\"&lt;script&gt;alert(1)&lt;/script&gt;&amp;x\" data-outcome=\"fail\""
        ));
        assert!(html.contains("Tom &amp; &quot;Jerry&quot; &lt;b&gt;bold&lt;/b&gt;"));
        assert!(html.contains("a &lt; b &amp;&amp; c &gt; &#39;d&#39;"));
        assert!(html.contains("data-suite=\"&lt;script&gt;x&lt;/script&gt;\""));
    }

    #[test]
    fn unknown_outcomes_never_reach_a_class_name() {
        let mut odd = invariant("odd", "weird\" onmouseover=\"x", "pass", false);
        odd.last_outcome = Some("bogus\" style=\"x".into());
        let html = render(&snapshot(vec![odd], vec![]));
        assert!(html.contains("class=\"row o-none\""));
        assert!(html.contains("chip sev-other"));
        assert!(!html.contains("\" onmouseover=\"") && !html.contains("\" style=\"x"));
    }

    #[test]
    fn header_says_all_clear_in_green_when_nothing_fires_or_is_overdue() {
        let html = render(&snapshot(
            vec![invariant("ok", "major", "pass", false)],
            vec![suite("nightly", false)],
        ));
        assert!(html.contains("<header class=\"top good\">"));
        assert!(html.contains("data-firing=\"0\" data-overdue=\"0\">all clear</p>"));
        assert!(html.contains("No open incidents."));
        assert!(html.contains("<title>invar: all clear</title>"));
    }

    #[test]
    fn phone_ready_static_html() {
        let html = render(&snapshot(
            vec![invariant("ok", "major", "pass", false)],
            vec![],
        ));
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(
            html.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(!html.contains("<script") && !html.contains("javascript:"));
        assert!(!html.contains("onload=") && !html.contains("onclick="));
        assert!(!html.contains("<link") && !html.contains("src="));
    }

    #[test]
    fn recent_runs_strip_is_oldest_first_with_titles() {
        let html = render(&snapshot(
            vec![invariant("x", "major", "fail", false)],
            vec![],
        ));
        let first = pos(&html, "title=\"pass · 2024-05-01 12:00:00 UTC\"");
        let last = pos(&html, "title=\"fail · 2024-05-01 12:29:00 UTC\"");
        assert!(first < last);
        assert!(html.contains("<span class=\"b-pass\" title="));
    }

    #[test]
    fn each_invariant_row_ends_with_its_trend_chart_and_timeline() {
        let mut x = invariant("x", "major", "fail", true);
        x.trend = crate::status::Trend {
            measure: Some("n".into()),
            values: vec![Some(10.0), Some(3.0)],
            events: vec![crate::status::TimelineEvent {
                at: now() - Duration::minutes(1),
                event: "opened".into(),
                notice: Some("firing".into()),
            }],
        };
        let mut never = invariant("never", "minor", "pass", false);
        never.recent.clear();
        let html = render(&snapshot(vec![x, never], vec![]));
        let row = &html[pos(&html, "data-invariant=\"x\"")..];
        let row = &row[..pos(row, "</li></ol></li>")];
        assert!(
            row.contains(
                "<svg class=\"trend\" data-measure=\"n\" viewBox=\"0 0 300 70\" role=\"img\" \
             aria-label=\"n over the last 2 runs: last 3, min 3, max 10\">"
            ),
            "{row}"
        );
        assert!(
            row.contains("<circle class=\"p-fail\" data-outcome=\"fail\""),
            "{row}"
        );
        assert!(
            row.contains("<path class=\"e-opened\" data-event=\"opened\""),
            "{row}"
        );
        assert!(row.ends_with("(firing notice)"), "{row}");
        // Once: not in the open incidents; none for an invariant never run.
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(html.contains(".trend .p-fail{fill:var(--fail)}"));
    }

    #[test]
    fn last_change_is_relative_with_the_utc_time_in_its_title() {
        let html = render(&snapshot(
            vec![invariant("x", "major", "pass", false)],
            vec![],
        ));
        assert!(html.contains(
            "changed <time datetime=\"2024-05-01T12:18:00Z\" title=\"2024-05-01 12:18:00 UTC\">12m ago</time>"
        ));
    }

    #[test]
    fn suites_show_schedule_zone_next_and_last_run() {
        let mut manual = suite("gate", false);
        manual.schedule = None;
        manual.next_run = None;
        manual.timezone = "UTC".into();
        manual.running = true;
        manual.last_run = None;
        let html = render(&snapshot(vec![], vec![suite("sweep", true), manual]));
        assert!(html.contains("schedule <code>*/15 * * * *</code> in Europe/Berlin"));
        assert!(html.contains(">in 15m</time> (Wed 14:45 CEST)"));
        assert!(html.contains("OVERDUE: the tick of <time"));
        assert!(html.contains(">45m ago</time> has no recorded run"));
        assert!(
            html.contains("last run <span class=\"badge b-fail\">fail</span> by schedule <time")
        );
        assert!(html.contains("took 1.5 s"));
        assert!(html.contains("on demand only (no schedule)"));
        assert!(html.contains("data-suite=\"gate\" data-overdue=\"false\" data-running=\"true\""));
        assert!(html.contains(">RUNNING</span>"));
        assert!(html.contains("never run"));
    }

    #[test]
    fn relative_times() {
        let n = now();
        assert_eq!(relative(n, n), "just now");
        assert_eq!(relative(n, n - Duration::seconds(45)), "45s ago");
        assert_eq!(relative(n, n - Duration::minutes(12)), "12m ago");
        assert_eq!(relative(n, n - Duration::minutes(185)), "3h 5m ago");
        assert_eq!(relative(n, n - Duration::hours(3)), "3h ago");
        assert_eq!(relative(n, n - Duration::hours(30)), "30h ago");
        assert_eq!(relative(n, n - Duration::days(3)), "3d ago");
        assert_eq!(relative(n, n + Duration::minutes(15)), "in 15m");
    }
}
