//! `invariants:` — common fields plus exactly one check kind.

use crate::cx::{Cx, Fields, MAX_STREAK, sub};
use crate::history::HistScope;
use crate::probes::{self, Keyed};
use crate::sources::SourceTable;
use crate::yaml::{Entry, Kind, Node};
use invar_core::{
    Check, Invariant, JoinCheck, OnEmpty, PairCheck, Probe, ProbeCheck, Scope, Severity,
    SubsetCheck, TransitionsCheck,
};
use std::collections::{BTreeMap, HashMap};

const CHECK_KINDS: &[&str] = &["probe", "same", "subset", "disjoint", "join", "transitions"];
/// Check kinds whose rows are decided by `skip_when` / `fail_when` / `warn_when` / `every_row`.
const ROW_KINDS: &[&str] = &["probe", "join"];
const CONDITION_KEYS: &[&str] = &[
    "skip_when",
    "fail_when",
    "warn_when",
    "every_row",
    "on_empty",
    "anomaly",
];
const INVARIANT_KEYS: &[&str] = &[
    "id",
    "title",
    "severity",
    "tags",
    "runbook",
    "owner",
    "timeout",
    "skip_if",
    "fire_after",
    "resolve_after",
    "alerts",
    "probe",
    "same",
    "subset",
    "disjoint",
    "join",
    "transitions",
    "skip_when",
    "fail_when",
    "warn_when",
    "every_row",
    "on_empty",
    "history",
    "anomaly",
    "vacuous_after",
];

/// Invariant ids seen so far in any file: id → `file:line`.
pub(crate) type Ids = HashMap<String, String>;

/// Reads an `invariants:` list, appending every valid invariant to `out`.
pub(crate) fn invariants(
    cx: &mut Cx,
    node: &Node,
    sources: &SourceTable,
    ids: &mut Ids,
    out: &mut Vec<Invariant>,
) {
    let items = match &node.kind {
        Kind::Seq(items) => items,
        Kind::Null => return,
        _ => {
            let msg = format!("`invariants` must be a list, found {}", node.describe());
            cx.err(
                node.pos,
                "invariants",
                msg,
                Some("start each invariant with `- id: …`".into()),
            );
            return;
        }
    };
    for (i, item) in items.iter().enumerate() {
        if let Some(inv) = invariant(cx, item, &format!("invariants[{i}]"), sources, ids) {
            out.push(inv);
        }
    }
}

fn invariant(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    sources: &SourceTable,
    ids: &mut Ids,
) -> Option<Invariant> {
    let before = cx.count();
    let f = cx.map(node, path, INVARIANT_KEYS, &[])?;
    let p = |k: &str| sub(path, k);

    let id = cx.required(&f, "id", path).and_then(|e| {
        let id = cx.string(&e.value, &p("id"))?;
        if id.trim().is_empty() {
            cx.err(e.value.pos, &p("id"), "`id` must not be empty", None);
            return None;
        }
        let here = format!("{}:{}", cx.file.display.display(), e.value.pos.line);
        if let Some(first) = ids.get(&id) {
            let msg = format!("duplicate invariant id `{id}`");
            cx.err(
                e.value.pos,
                &p("id"),
                msg,
                Some(format!("`{id}` is first defined at {first}")),
            );
            return None;
        }
        ids.insert(id.clone(), here);
        Some(id)
    });
    let title = cx
        .required(&f, "title", path)
        .and_then(|e| cx.string(&e.value, &p("title")));
    let severity = f.get("severity").and_then(|e| {
        let s = cx.choice(
            &e.value,
            &p("severity"),
            "severity",
            &["critical", "major", "minor"],
        )?;
        Some(match s {
            "critical" => Severity::Critical,
            "minor" => Severity::Minor,
            _ => Severity::Major,
        })
    });
    let tags = f
        .get("tags")
        .and_then(|e| cx.string_list(&e.value, &p("tags")));
    let runbook = f
        .get("runbook")
        .and_then(|e| cx.string(&e.value, &p("runbook")));
    let owner = f
        .get("owner")
        .and_then(|e| cx.string(&e.value, &p("owner")));
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &p("timeout")));
    let skip_if = f
        .get("skip_if")
        .and_then(|e| cx.condition(&e.value, &p("skip_if"), Scope::SkipIf));
    let fire_after = f
        .get("fire_after")
        .and_then(|e| cx.u32(&e.value, &p("fire_after"), 1, MAX_STREAK));
    let resolve_after = f
        .get("resolve_after")
        .and_then(|e| cx.u32(&e.value, &p("resolve_after"), 1, MAX_STREAK));
    let alerts = f
        .get("alerts")
        .and_then(|e| cx.string_list(&e.value, &p("alerts")));
    let vacuous_after = f
        .get("vacuous_after")
        .and_then(|e| cx.duration(&e.value, &p("vacuous_after")));
    let history = f
        .get("history")
        .and_then(|e| crate::history::history(cx, &e.value, &p("history")));
    let check = check(cx, &f, path, id.as_deref(), sources, history.is_some());
    if let (Some(e), Some(c)) = (f.get("history"), &check)
        && !matches!(c, Check::Probe(_))
    {
        cx.err(
            e.key_pos,
            &p("history"),
            format!("`history` applies to a `probe` check, not `{}`", c.kind()),
            None,
        );
    }

    if cx.count() > before {
        return None;
    }
    Some(Invariant {
        id: id?,
        title: title?,
        severity: severity.unwrap_or(Severity::Major),
        tags: tags.unwrap_or_default(),
        runbook,
        owner,
        timeout,
        skip_if,
        fire_after: fire_after.unwrap_or(1),
        resolve_after: resolve_after.unwrap_or(1),
        alerts: alerts.unwrap_or_default(),
        check: check?,
        history,
        vacuous_after,
        defined_at: format!("{}:{}", cx.file.display.display(), node.pos.line),
    })
}

fn check(
    cx: &mut Cx,
    f: &Fields,
    path: &str,
    id: Option<&str>,
    sources: &SourceTable,
    history: bool,
) -> Option<Check> {
    let who = id
        .map(|id| format!("invariant `{id}`"))
        .unwrap_or_else(|| format!("`{path}`"));
    let kinds: Vec<&Entry> = f
        .entries
        .iter()
        .filter(|e| CHECK_KINDS.contains(&e.key.as_str()))
        .collect();
    let kinds_hint = || {
        Some(format!(
            "an invariant has exactly one of: {}",
            CHECK_KINDS.join(", ")
        ))
    };
    let kind = match kinds.as_slice() {
        [] => {
            cx.err(
                f.pos,
                path,
                format!("{who} has no check kind"),
                kinds_hint(),
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            let msg = format!(
                "{who} has more than one check kind: `{}` and `{}`",
                first.key, second.key
            );
            cx.err(second.key_pos, &sub(path, &second.key), msg, kinds_hint());
            return None;
        }
    };
    let kpath = sub(path, &kind.key);
    if !ROW_KINDS.contains(&kind.key.as_str()) {
        for e in f
            .entries
            .iter()
            .filter(|e| CONDITION_KEYS.contains(&e.key.as_str()))
        {
            let msg = format!(
                "`{}` only applies to a `probe` or `join` check, not `{}`",
                e.key, kind.key
            );
            cx.err(e.key_pos, &sub(path, &e.key), msg, None);
        }
    }
    match kind.key.as_str() {
        "probe" => {
            probe_check(cx, f, path, &kind.value, &kpath, sources, history).map(Check::Probe)
        }
        "same" => pair(cx, &kind.value, &kpath, sources).map(Check::Same),
        "disjoint" => pair(cx, &kind.value, &kpath, sources).map(Check::Disjoint),
        "subset" => subset(cx, &kind.value, &kpath, sources).map(Check::Subset),
        "join" => join(cx, f, path, &kind.value, &kpath, sources).map(Check::Join),
        "transitions" => transitions(cx, &kind.value, &kpath, sources).map(Check::Transitions),
        _ => None,
    }
}

/// The row conditions shared by `probe` and `join` checks.
struct RowConds {
    skip_when: Option<invar_core::Condition>,
    fail_when: Option<invar_core::Condition>,
    warn_when: Option<invar_core::Condition>,
    every_row: Option<invar_core::Condition>,
    on_empty: OnEmpty,
}

fn row_conditions(cx: &mut Cx, f: &Fields, path: &str, hist: &HistScope) -> RowConds {
    let cond = |cx: &mut Cx, key: &str, scope: Scope| {
        let e = f.get(key)?;
        let c = cx.condition(&e.value, &sub(path, key), scope)?;
        crate::history::check_refs(cx, &c, &e.value, &sub(path, key), hist);
        Some(c)
    };
    let skip_when = cond(cx, "skip_when", Scope::Probe);
    let fail_when = cond(cx, "fail_when", Scope::Probe);
    let warn_when = cond(cx, "warn_when", Scope::Probe);
    let every_row = cond(cx, "every_row", Scope::EveryRow);
    let on_empty = f.get("on_empty").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "on_empty"),
            "on_empty",
            &["pass", "skip", "fail"],
        )
    });
    RowConds {
        skip_when,
        fail_when,
        warn_when,
        every_row,
        on_empty: match on_empty {
            Some("skip") => OnEmpty::Skip,
            Some("fail") => OnEmpty::Fail,
            _ => OnEmpty::Pass,
        },
    }
}

fn probe_check(
    cx: &mut Cx,
    f: &Fields,
    path: &str,
    node: &Node,
    kpath: &str,
    sources: &SourceTable,
    history: bool,
) -> Option<ProbeCheck> {
    let before = cx.count();
    let probe = probes::probe(cx, node, kpath, sources);
    let hist = HistScope {
        history,
        measures: match &probe {
            // A metrics probe's row is its named metrics; `count` is always measured.
            Some(Probe::Metrics(m)) => Some(
                std::iter::once("count".to_string())
                    .chain(m.compute.iter().map(|(n, _)| n.clone()))
                    .collect(),
            ),
            _ => None,
        },
    };
    let c = row_conditions(cx, f, path, &hist);
    let anomaly = f
        .get("anomaly")
        .and_then(|e| crate::history::anomaly(cx, &e.value, &sub(path, "anomaly")));
    if let Some(a) = &anomaly {
        crate::history::check_anomaly(cx, f, path, a, &hist);
    }
    if cx.count() > before {
        return None;
    }
    Some(ProbeCheck {
        probe: probe?,
        skip_when: c.skip_when,
        fail_when: c.fail_when,
        warn_when: c.warn_when,
        every_row: c.every_row,
        on_empty: c.on_empty,
        anomaly,
    })
}

/// `join: { tables: { name: probe, … }, sql }` plus the row conditions of the invariant.
fn join(
    cx: &mut Cx,
    f: &Fields,
    path: &str,
    node: &Node,
    kpath: &str,
    sources: &SourceTable,
) -> Option<JoinCheck> {
    let before = cx.count();
    let jf = cx.map(node, kpath, &["tables", "sql"], &[]);
    let mut tables = Vec::new();
    if let Some(jf) = &jf
        && let Some(e) = cx.required(jf, "tables", kpath)
    {
        let tpath = sub(kpath, "tables");
        if let Some(entries) = cx.any_map(&e.value, &tpath) {
            if entries.is_empty() {
                let msg = "`tables` names no table";
                let hint =
                    "e.g. `tables: { slots: { source: cache, redis: { zset: \"k:{id}\" } } }`";
                cx.err(e.value.pos, &tpath, msg, Some(hint.into()));
            }
            for entry in entries {
                let npath = sub(&tpath, &entry.key);
                let ident =
                    invar_core::metrics::is_identifier(&entry.key) && !entry.key.contains('.');
                if !ident {
                    let msg = format!("`{}` is not a usable table name", entry.key);
                    let hint = "letters, digits and `_`: the SQL names the table by it";
                    cx.err(entry.key_pos, &npath, msg, Some(hint.into()));
                    continue;
                }
                if let Some(p) = probes::probe(cx, &entry.value, &npath, sources) {
                    tables.push((entry.key.clone(), p));
                }
            }
        }
    }
    let sql = jf.as_ref().and_then(|jf| {
        let e = cx.required(jf, "sql", kpath)?;
        let spath = sub(kpath, "sql");
        let sql = cx.string(&e.value, &spath)?;
        if sql.trim().is_empty() {
            cx.err(e.value.pos, &spath, "`sql` is empty", None);
            return None;
        }
        Some(sql)
    });
    let c = row_conditions(cx, f, path, &HistScope::NONE);
    if let Some(e) = f.get("anomaly") {
        cx.err(
            e.key_pos,
            &sub(path, "anomaly"),
            "`anomaly` applies to a `probe` check, not `join`",
            None,
        );
    }
    if cx.count() > before {
        return None;
    }
    Some(JoinCheck {
        tables,
        sql: sql?,
        skip_when: c.skip_when,
        fail_when: c.fail_when,
        warn_when: c.warn_when,
        every_row: c.every_row,
        on_empty: c.on_empty,
    })
}

/// Two keyed sides plus `grace`, with the side names of the check kind.
fn sides(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    names: [&str; 2],
    sources: &SourceTable,
) -> Option<(Keyed, Keyed, Option<std::time::Duration>)> {
    let before = cx.count();
    let f = cx.map(node, path, &[names[0], names[1], "grace"], &[])?;
    let a = cx
        .required(&f, names[0], path)
        .and_then(|e| probes::keyed(cx, &e.value, &sub(path, names[0]), sources));
    let b = cx
        .required(&f, names[1], path)
        .and_then(|e| probes::keyed(cx, &e.value, &sub(path, names[1]), sources));
    let grace = f
        .get("grace")
        .and_then(|e| cx.duration(&e.value, &sub(path, "grace")));
    if let (Some(a), Some(b)) = (&a, &b)
        && !a.probe.key.is_empty()
        && !b.probe.key.is_empty()
        && a.probe.key.len() != b.probe.key.len()
        && let Some(pos) = b.key_pos
    {
        let msg = format!(
            "`{}` has {} key column{} but `{}` has {}",
            names[0],
            a.probe.key.len(),
            if a.probe.key.len() == 1 { "" } else { "s" },
            names[1],
            b.probe.key.len()
        );
        cx.err(
            pos,
            &sub(&sub(path, names[1]), "key"),
            msg,
            Some("keys pair up by position: state the same number on both sides".into()),
        );
    }
    if cx.count() > before {
        return None;
    }
    Some((a?, b?, grace))
}

fn pair(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<PairCheck> {
    let (left, right, grace) = sides(cx, node, path, ["left", "right"], sources)?;
    Some(PairCheck {
        left: left.probe,
        right: right.probe,
        grace,
    })
}

fn subset(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<SubsetCheck> {
    let (each, within, grace) = sides(cx, node, path, ["each", "in"], sources)?;
    Some(SubsetCheck {
        each: each.probe,
        within: within.probe,
        grace,
    })
}

/// `transitions: { probe, key, state, allowed: { from: [to, …] }, remember: 24h }`.
fn transitions(
    cx: &mut Cx,
    node: &Node,
    path: &str,
    sources: &SourceTable,
) -> Option<TransitionsCheck> {
    let before = cx.count();
    let f = cx.map(
        node,
        path,
        &["probe", "key", "state", "allowed", "remember"],
        &[],
    )?;
    let probe = cx
        .required(&f, "probe", path)
        .and_then(|e| probes::probe(cx, &e.value, &sub(path, "probe"), sources));
    let key = cx.required(&f, "key", path).and_then(|e| {
        let kpath = sub(path, "key");
        let key = match &e.value.kind {
            Kind::Seq(_) => cx.string_list(&e.value, &kpath)?,
            _ => vec![cx.string(&e.value, &kpath)?],
        };
        if key.is_empty() || key.iter().any(|k| k.trim().is_empty()) {
            cx.err(
                e.value.pos,
                &kpath,
                "`key` must name at least one column",
                Some("e.g. `key: id` or `key: [agent, id]`".into()),
            );
            return None;
        }
        Some(key)
    });
    let state = cx.required(&f, "state", path).and_then(|e| {
        let spath = sub(path, "state");
        let s = cx.string(&e.value, &spath)?;
        if s.trim().is_empty() {
            cx.err(e.value.pos, &spath, "`state` must name a column", None);
            return None;
        }
        Some(s)
    });
    let allowed = cx.required(&f, "allowed", path).and_then(|e| {
        let apath = sub(path, "allowed");
        let entries = cx.any_map(&e.value, &apath)?;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in entries {
            let epath = sub(&apath, &entry.key);
            let tos = match &entry.value.kind {
                Kind::Null => Vec::new(),
                Kind::Seq(_) => match cx.string_list(&entry.value, &epath) {
                    Some(t) => t,
                    None => continue,
                },
                _ => {
                    let msg = format!(
                        "`{}` must list the states it may move to, found {}",
                        entry.key,
                        entry.value.describe()
                    );
                    let hint = format!(
                        "e.g. `{}: [running, cancelled]`, or `[]` for none",
                        entry.key
                    );
                    cx.err(entry.value.pos, &epath, msg, Some(hint));
                    continue;
                }
            };
            out.insert(entry.key.clone(), tos);
        }
        Some(out)
    });
    let remember = cx.required(&f, "remember", path).and_then(|e| {
        let rpath = sub(path, "remember");
        let d = cx.duration(&e.value, &rpath)?;
        if d.is_zero() {
            cx.err(
                e.value.pos,
                &rpath,
                "`remember` must be longer than zero",
                Some("e.g. `remember: 24h`".into()),
            );
            return None;
        }
        Some(d)
    });
    if cx.count() > before {
        return None;
    }
    Some(TransitionsCheck {
        probe: probe?,
        key: key?,
        state: state?,
        allowed: allowed?,
        remember: remember?,
    })
}
