//! `silences:` — recurring maintenance windows: `match` (CEL over `id`, `severity`, `tags`,
//! `suite`), `every` (a cron in `timezone`), `for`, `reason`. One-off silences are made with
//! `invar silence add` or the API and live in the store.

use crate::cx::{Cx, sub};
use crate::yaml::{Kind, Node};
use invar_core::condition::Scope;
use invar_core::schedule::Schedule;
use invar_core::silence::SilenceRule;

const KEYS: &[&str] = &["match", "every", "for", "timezone", "reason"];
const CRON_HINT: &str = "minute hour day-of-month month day-of-week, e.g. `0 2 * * 6`";

pub(crate) fn silences(cx: &mut Cx, node: Option<&Node>) -> Vec<SilenceRule> {
    let Some(node) = node else {
        return Vec::new();
    };
    let items = match &node.kind {
        Kind::Seq(items) => items,
        Kind::Null => return Vec::new(),
        _ => {
            let msg = format!(
                "`silences` must be a list of windows, found {}",
                node.describe()
            );
            let hint = "e.g. `silences: [{ match: \"'db' in tags\", every: \"0 2 * * 6\", for: 2h, reason: weekly vacuum }]`";
            cx.err(node.pos, "silences", msg, Some(hint.into()));
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| silence(cx, item, &format!("silences[{i}]")))
        .collect()
}

fn silence(cx: &mut Cx, node: &Node, path: &str) -> Option<SilenceRule> {
    let before = cx.count();
    let f = cx.map(node, path, KEYS, &[])?;
    let matcher = cx
        .required(&f, "match", path)
        .and_then(|e| cx.condition(&e.value, &sub(path, "match"), Scope::Silence));
    let timezone = f.get("timezone").and_then(|e| {
        let tpath = sub(path, "timezone");
        let tz = cx.string(&e.value, &tpath)?;
        if jiff::tz::TimeZone::get(&tz).is_err() {
            let hint = "an IANA zone name such as `UTC` or `Europe/Berlin`";
            cx.err(
                e.value.pos,
                &tpath,
                format!("unknown time zone `{tz}`"),
                Some(hint.into()),
            );
            return None;
        }
        Some(tz)
    });
    let every = cx.required(&f, "every", path).and_then(|e| {
        let epath = sub(path, "every");
        let s = cx.string(&e.value, &epath)?;
        match Schedule::parse(&s, timezone.as_deref()) {
            Ok(s) => Some(s),
            Err(err) => {
                let msg = format!("invalid cron expression `{s}`: {err}");
                cx.err(e.value.pos, &epath, msg, Some(CRON_HINT.into()));
                None
            }
        }
    });
    let duration = cx.required(&f, "for", path).and_then(|e| {
        let fpath = sub(path, "for");
        let d = cx.duration(&e.value, &fpath)?;
        if d.is_zero() {
            cx.err(e.value.pos, &fpath, "`for` must be longer than 0s", None);
            return None;
        }
        Some(d)
    });
    let reason = cx
        .required(&f, "reason", path)
        .and_then(|e| cx.string(&e.value, &sub(path, "reason")));
    if cx.count() > before {
        return None;
    }
    Some(SilenceRule {
        matcher: matcher?,
        every: every?,
        duration: duration?,
        reason: reason?,
        defined_at: format!("{}:{}", cx.file.display.display(), node.pos.line),
    })
}
