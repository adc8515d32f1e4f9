//! `history:` on an invariant, `anomaly:` on a probe check, and what `invar validate` checks
//! about `hist` in conditions: only with `history:`, only known statistics, and — where the
//! probe names its measures (a `metrics` probe) — only known measures. docs/HISTORY.md.

use crate::cx::{Cx, Fields, name_of, sub};
use crate::yaml::{Kind, Node, Style};
use invar_core::hist::STATS;
use invar_core::{Anomaly, Condition, Direction, HistorySpec};
use std::time::Duration;

const HISTORY_KEYS: &[&str] = &["window", "min_runs", "same_weekday"];
const ANOMALY_KEYS: &[&str] = &[
    "measure",
    "method",
    "threshold",
    "warn_threshold",
    "direction",
];
/// The most past runs `min_runs` may ask for (a year of 15-minute runs).
const MAX_MIN_RUNS: u32 = 35_040;
/// The longest `window`: the store keeps runs for `retention`, at most this anyway.
const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);

/// `history: { window, min_runs, same_weekday }`.
pub(crate) fn history(cx: &mut Cx, node: &Node, path: &str) -> Option<HistorySpec> {
    let f = cx.map(node, path, HISTORY_KEYS, &[])?;
    let before = cx.count();
    let window = cx.required(&f, "window", path).and_then(|e| {
        let d = cx.duration(&e.value, &sub(path, "window"))?;
        if d.is_zero() || d > MAX_WINDOW {
            cx.err(
                e.value.pos,
                &sub(path, "window"),
                "`window` must be more than 0 and at most 400 days (`400d`)",
                None,
            );
            return None;
        }
        Some(d)
    });
    let min_runs = f
        .get("min_runs")
        .and_then(|e| cx.u32(&e.value, &sub(path, "min_runs"), 1, MAX_MIN_RUNS));
    let same_weekday = f
        .get("same_weekday")
        .and_then(|e| cx.bool(&e.value, &sub(path, "same_weekday")));
    if cx.count() > before {
        return None;
    }
    Some(HistorySpec {
        window: window?,
        min_runs: min_runs.unwrap_or(7),
        same_weekday: same_weekday.unwrap_or(false),
    })
}

/// `anomaly: { measure, method: mad, threshold, warn_threshold, direction }`.
pub(crate) fn anomaly(cx: &mut Cx, node: &Node, path: &str) -> Option<Anomaly> {
    let f = cx.map(node, path, ANOMALY_KEYS, &[])?;
    let before = cx.count();
    let measure = cx
        .required(&f, "measure", path)
        .and_then(|e| cx.string(&e.value, &sub(path, "measure")));
    if let Some(e) = f.get("method") {
        cx.choice(&e.value, &sub(path, "method"), "method", &["mad"]);
    }
    let threshold = cx
        .required(&f, "threshold", path)
        .and_then(|e| positive(cx, &e.value, &sub(path, "threshold")));
    let warn_threshold = f
        .get("warn_threshold")
        .and_then(|e| positive(cx, &e.value, &sub(path, "warn_threshold")));
    let direction = f.get("direction").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "direction"),
            "direction",
            &["both", "up", "down"],
        )
    });
    if let (Some(t), Some(w), Some(e)) = (threshold, warn_threshold, f.get("warn_threshold"))
        && w >= t
    {
        cx.err(
            e.value.pos,
            &sub(path, "warn_threshold"),
            format!("`warn_threshold` ({w}) must be below `threshold` ({t})"),
            None,
        );
    }
    if cx.count() > before {
        return None;
    }
    Some(Anomaly {
        measure: measure?,
        threshold: threshold?,
        warn_threshold,
        direction: match direction {
            Some("up") => Direction::Up,
            Some("down") => Direction::Down,
            _ => Direction::Both,
        },
    })
}

/// A finite number above 0 (a z-score threshold).
fn positive(cx: &mut Cx, node: &Node, path: &str) -> Option<f64> {
    let parsed = match &node.kind {
        Kind::Scalar(s, Style::Plain) => s.parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() && x > 0.0 && x <= 1e6 => Some(x),
        _ => {
            cx.err(
                node.pos,
                path,
                format!(
                    "`{}` must be a number above 0 and at most 1000000",
                    name_of(path)
                ),
                None,
            );
            None
        }
    }
}

/// What a condition may say about `hist` here: whether the invariant has `history:`, and the
/// measures its probe is known to produce (None: not known before it runs).
pub(crate) struct HistScope {
    pub history: bool,
    pub measures: Option<Vec<String>>,
}

impl HistScope {
    pub(crate) const NONE: HistScope = HistScope {
        history: false,
        measures: None,
    };
}

/// Each `hist` use in `cond` (at `node`, key `path`) that `scope` does not allow, positioned.
pub(crate) fn check_refs(
    cx: &mut Cx,
    cond: &Condition,
    node: &Node,
    path: &str,
    scope: &HistScope,
) {
    let src = cond.source.clone();
    for r in cond.hist_refs() {
        let offset = crate::cx::char_offset(&src, r.line, r.col);
        let (line, col) = cx.offset_pos(node, offset);
        let problem = if !scope.history {
            Some((
                "`hist` needs `history:` on the invariant".to_string(),
                Some(
                    "add e.g. `history: { window: 14d, min_runs: 7 }` to the invariant".to_string(),
                ),
            ))
        } else if let Some(stat) = r.stat.as_deref().filter(|s| !STATS.contains(s)) {
            Some((
                format!(
                    "unknown statistic `hist.{}.{stat}`",
                    r.measure.as_deref().unwrap_or("?")
                ),
                Some(format!("expected one of: {}", STATS.join(", "))),
            ))
        } else {
            match (&r.measure, &scope.measures) {
                (Some(m), Some(known)) if !known.contains(m) => Some((
                    format!("unknown measure `hist.{m}`: the probe does not measure `{m}`"),
                    Some(format!("its measures: {}", known.join(", "))),
                )),
                _ => None,
            }
        };
        if let Some((message, hint)) = problem {
            cx.error_at(line, col, 4, path, message, hint);
        }
    }
}

/// `anomaly:` needs `history:`, and a known measure where the probe names them.
pub(crate) fn check_anomaly(cx: &mut Cx, f: &Fields, path: &str, a: &Anomaly, scope: &HistScope) {
    let Some(e) = f.get("anomaly") else { return };
    if !scope.history {
        cx.err(
            e.key_pos,
            &sub(path, "anomaly"),
            "`anomaly` needs `history:` on the invariant",
            Some("add e.g. `history: { window: 14d, min_runs: 7 }` to the invariant".into()),
        );
    } else if let Some(known) = &scope.measures
        && !known.contains(&a.measure)
    {
        cx.err(
            e.value.pos,
            &sub(path, "anomaly.measure"),
            format!(
                "unknown measure `{}`: the probe does not measure it",
                a.measure
            ),
            Some(format!("its measures: {}", known.join(", "))),
        );
    }
}
