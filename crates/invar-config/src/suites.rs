//! `suites:` — named selections of invariants with a schedule and a failure policy.

use crate::cx::{Cx, sub};
use crate::yaml::{Kind, Node};
use invar_core::{FailOn, Misfire, Scope, Suite};

const SUITE_KEYS: &[&str] = &[
    "select",
    "fail_on",
    "schedule",
    "timezone",
    "budget",
    "misfire",
    "vacuous_after",
];

/// Reads a `suites:` map. Without any suite, the implicit `all`.
pub(crate) fn suites(cx: &mut Cx, node: Option<&Node>) -> Vec<Suite> {
    let entries = match node.map(|n| (n, &n.kind)) {
        None | Some((_, Kind::Null)) => return vec![Suite::all()],
        Some((_, Kind::Map(entries))) => entries,
        Some((n, _)) => {
            let msg = format!(
                "`suites` must be a map of names to suites, found {}",
                n.describe()
            );
            cx.err(n.pos, "suites", msg, None);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for e in entries {
        if let Some(s) = suite(cx, &e.key, &e.value, &sub("suites", &e.key)) {
            out.push(s);
        }
    }
    if entries.is_empty() {
        out.push(Suite::all());
    }
    out
}

fn suite(cx: &mut Cx, name: &str, node: &Node, path: &str) -> Option<Suite> {
    let before = cx.count();
    let f = cx.map(node, path, SUITE_KEYS, &[])?;
    let select = f
        .get("select")
        .and_then(|e| cx.condition(&e.value, &sub(path, "select"), Scope::Select));
    let fail_on = f.get("fail_on").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "fail_on"),
            "fail_on",
            &["fail", "warn", "never"],
        )
    });
    let schedule = f.get("schedule").and_then(|e| {
        let spath = sub(path, "schedule");
        let s = cx.string(&e.value, &spath)?;
        let fields = s.split_whitespace().count();
        if fields != 5 {
            let msg = format!(
                "`schedule` must be a 5-field cron expression, found {fields} field{}",
                if fields == 1 { "" } else { "s" }
            );
            let hint = "minute hour day-of-month month day-of-week, e.g. `0 4 * * MON`".to_string();
            cx.err(e.value.pos, &spath, msg, Some(hint));
            return None;
        }
        if let Err(err) = invar_core::schedule::Schedule::parse(&s, None) {
            let msg = format!("invalid cron expression `{s}`: {err}");
            let hint = "minute hour day-of-month month day-of-week, e.g. `0 4 * * MON`".to_string();
            cx.err(e.value.pos, &spath, msg, Some(hint));
            return None;
        }
        Some(s)
    });
    let timezone = f.get("timezone").and_then(|e| {
        let tpath = sub(path, "timezone");
        let tz = cx.string(&e.value, &tpath)?;
        if jiff::tz::TimeZone::get(&tz).is_err() {
            let msg = format!("unknown time zone `{tz}`");
            let hint = "an IANA zone name such as `UTC`, `Asia/Tokyo` or `America/New_York`";
            cx.err(e.value.pos, &tpath, msg, Some(hint.to_string()));
            return None;
        }
        Some(tz)
    });
    let budget = f
        .get("budget")
        .and_then(|e| cx.duration(&e.value, &sub(path, "budget")));
    let vacuous_after = f
        .get("vacuous_after")
        .and_then(|e| cx.duration(&e.value, &sub(path, "vacuous_after")));
    let misfire = f.get("misfire").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "misfire"),
            "misfire policy",
            &["skip", "run_once"],
        )
    });
    if cx.count() > before {
        return None;
    }
    Some(Suite {
        name: name.to_string(),
        select,
        fail_on: match fail_on {
            Some("warn") => FailOn::Warn,
            Some("never") => FailOn::Never,
            _ => FailOn::Fail,
        },
        schedule,
        timezone,
        budget,
        vacuous_after,
        misfire: match misfire {
            Some("run_once") => Misfire::RunOnce,
            _ => Misfire::Skip,
        },
    })
}
