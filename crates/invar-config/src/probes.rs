//! Probes: `sql`, `values`, `lines`, `command` — and keyed probes for set checks.

use crate::cx::{Cx, Fields, sub};
use crate::diag::did_you_mean;
use crate::sources::SourceTable;
use crate::yaml::{Entry, Kind, Node, Pos};
use invar_core::metrics::{MetricsProbe, is_identifier, parse_metric};
use invar_core::{CommandParse, CommandProbe, FileRef, KeyedProbe, LinesProbe, Probe};
use std::collections::BTreeMap;
use std::time::Duration;

const KINDS: &[&str] = &["sql", "values", "lines", "command", "metrics"];
const LATER: &[(&str, &str, &str)] = &[
    (
        "redis",
        "probe kind",
        "supported probe kinds: sql, values, lines, command, metrics",
    ),
    (
        "http",
        "probe kind",
        "supported probe kinds: sql, values, lines, command, metrics",
    ),
];
const PROBE_KEYS: &[&str] = &["source", "sql", "values", "lines", "command", "metrics"];
const KEYED_KEYS: &[&str] = &[
    "source", "sql", "values", "lines", "command", "metrics", "key", "age",
];
const METRICS_KEYS: &[&str] = &["table", "where", "compute"];
const LINES_KEYS: &[&str] = &["source", "path", "match", "tail"];
const COMMAND_KEYS: &[&str] = &["run", "timeout", "cwd", "env", "parse"];
const SQL_TYPES: &[&str] = &["postgres", "mysql", "sqlite"];
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A keyed probe plus where its `key` was stated (to compare key counts between sides).
pub(crate) struct Keyed {
    pub probe: KeyedProbe,
    pub key_pos: Option<Pos>,
}

/// A plain probe (the `probe:` of a probe check).
pub(crate) fn probe(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<Probe> {
    let f = cx.map(node, path, PROBE_KEYS, LATER)?;
    probe_body(cx, &f, path, sources)
}

/// A set-check side: a probe plus `key` and `age`.
pub(crate) fn keyed(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<Keyed> {
    let before = cx.count();
    let f = cx.map(node, path, KEYED_KEYS, LATER)?;
    let probe = probe_body(cx, &f, path, sources);
    let key_entry = f.get("key");
    let key = match key_entry {
        None => Some(Vec::new()),
        Some(e) => {
            let kpath = sub(path, "key");
            match &e.value.kind {
                Kind::Seq(_) => cx.string_list(&e.value, &kpath).and_then(|k| {
                    if k.is_empty() {
                        cx.err(
                            e.value.pos,
                            &kpath,
                            "`key` must name at least one column",
                            None,
                        );
                        None
                    } else {
                        Some(k)
                    }
                }),
                _ => cx.string(&e.value, &kpath).map(|k| vec![k]),
            }
        }
    };
    let age = f
        .get("age")
        .and_then(|e| cx.string(&e.value, &sub(path, "age")));
    if cx.count() > before {
        return None;
    }
    Some(Keyed {
        probe: KeyedProbe {
            probe: probe?,
            key: key?,
            age,
        },
        key_pos: key_entry.map(|e| e.value.pos),
    })
}

fn probe_body(cx: &mut Cx, f: &Fields, path: &str, sources: &SourceTable) -> Option<Probe> {
    let kinds: Vec<&Entry> = f
        .entries
        .iter()
        .filter(|e| KINDS.contains(&e.key.as_str()))
        .collect();
    if f.entries
        .iter()
        .any(|e| LATER.iter().any(|(k, ..)| *k == e.key))
    {
        // Already reported as not supported yet.
        return None;
    }
    let kind = match kinds.as_slice() {
        [] => {
            let msg = "a probe needs exactly one kind; found none";
            cx.err(
                f.pos,
                path,
                msg,
                Some(format!("expected one of: {}", KINDS.join(", "))),
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            let msg = format!(
                "a probe has exactly one kind; found `{}` and `{}`",
                first.key, second.key
            );
            cx.err(
                second.key_pos,
                &sub(path, &second.key),
                msg,
                Some(format!("expected one of: {}", KINDS.join(", "))),
            );
            return None;
        }
    };
    let kpath = sub(path, &kind.key);
    match kind.key.as_str() {
        "sql" => {
            let source = match f.get("source") {
                Some(e) => resolve_source(cx, e, &sub(path, "source"), sources, SQL_TYPES, "`sql`"),
                None => {
                    let msg = "an `sql` probe needs a `source`";
                    cx.err(f.pos, path, msg, Some(sources_hint(sources, SQL_TYPES)));
                    None
                }
            };
            let sql = cx.string(&kind.value, &kpath);
            Some(Probe::Sql {
                source: source?,
                sql: sql?,
            })
        }
        "metrics" => {
            let source = match f.get("source") {
                Some(e) => {
                    resolve_source(cx, e, &sub(path, "source"), sources, SQL_TYPES, "`metrics`")
                }
                None => {
                    let msg = "a `metrics` probe needs a `source`";
                    cx.err(f.pos, path, msg, Some(sources_hint(sources, SQL_TYPES)));
                    None
                }
            };
            let m = metrics(cx, &kind.value, &kpath, source.clone().unwrap_or_default());
            source?;
            m.map(Probe::Metrics)
        }
        other => {
            if let Some(e) = f.get("source") {
                let msg = format!("`source` is not used by a `{other}` probe");
                let hint = (other == "lines")
                    .then(|| "put it inside `lines:` (`lines: { source: …, match: … }`)".into());
                cx.err(e.key_pos, &sub(path, "source"), msg, hint);
            }
            match other {
                "values" => values(cx, &kind.value, &kpath).map(Probe::Values),
                "lines" => lines(cx, &kind.value, &kpath, sources).map(Probe::Lines),
                _ => command(cx, &kind.value, &kpath).map(Probe::Command),
            }
        }
    }
}

/// `metrics: { table, where, compute: { name: fn(col) } }`.
fn metrics(cx: &mut Cx, node: &Node, path: &str, source: String) -> Option<MetricsProbe> {
    let before = cx.count();
    let f = cx.map(node, path, METRICS_KEYS, &[])?;
    let table = cx.required(&f, "table", path).and_then(|e| {
        let tpath = sub(path, "table");
        let t = cx.string(&e.value, &tpath)?;
        if !is_identifier(&t) {
            let msg = format!("`{t}` is not a table name");
            let hint = "letters, digits and `_`, optionally schema-qualified: `public.orders`";
            cx.err(e.value.pos, &tpath, msg, Some(hint.into()));
            return None;
        }
        Some(t)
    });
    let filter = f
        .get("where")
        .and_then(|e| cx.string(&e.value, &sub(path, "where")));
    let mut compute = Vec::new();
    if let Some(e) = cx.required(&f, "compute", path) {
        let cpath = sub(path, "compute");
        if let Some(entries) = cx.any_map(&e.value, &cpath) {
            if entries.is_empty() {
                cx.err(e.value.pos, &cpath, "`compute` names no metric", None);
            }
            for entry in entries {
                let npath = sub(&cpath, &entry.key);
                if !is_identifier(&entry.key) || entry.key.contains('.') {
                    let msg = format!("`{}` is not a usable metric name", entry.key);
                    let hint = "letters, digits and `_`: it becomes a column (`row.no_email`)";
                    cx.err(entry.key_pos, &npath, msg, Some(hint.into()));
                    continue;
                }
                let Some(text) = cx.string(&entry.value, &npath) else {
                    continue;
                };
                match parse_metric(&text) {
                    Ok(m) => compute.push((entry.key.clone(), m)),
                    Err(msg) => {
                        let hint = format!(
                            "expected one of: {}",
                            invar_core::metrics::FUNCTIONS.join(", ")
                        );
                        cx.err(entry.value.pos, &npath, msg, Some(hint));
                    }
                }
            }
        }
    }
    if cx.count() > before {
        return None;
    }
    Some(MetricsProbe {
        source,
        table: table?,
        filter,
        compute,
    })
}

/// A `source:` reference that must name a known source of one of `types`.
fn resolve_source(
    cx: &mut Cx,
    entry: &Entry,
    path: &str,
    sources: &SourceTable,
    types: &[&str],
    user: &str,
) -> Option<String> {
    let name = cx.string(&entry.value, path)?;
    match sources.types.get(&name) {
        None => {
            let names = sources.names();
            let hint = if names.is_empty() {
                "no sources are defined; add one under `sources:`".to_string()
            } else {
                match did_you_mean(&name, names.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`? known sources: {}", names.join(", ")),
                    None => format!("known sources: {}", names.join(", ")),
                }
            };
            cx.err(
                entry.value.pos,
                path,
                format!("unknown source `{name}`"),
                Some(hint),
            );
            None
        }
        Some(Some(ty)) if !types.contains(ty) => {
            let msg = format!(
                "source `{name}` is a `{ty}` source; {user} needs a {} source",
                types.join(" or ")
            );
            cx.err(
                entry.value.pos,
                path,
                msg,
                Some(sources_hint(sources, types)),
            );
            None
        }
        Some(_) => Some(name),
    }
}

fn sources_hint(sources: &SourceTable, types: &[&str]) -> String {
    let fit: Vec<&str> = sources
        .types
        .iter()
        .filter(|(_, t)| t.is_some_and(|t| types.contains(&t)))
        .map(|(n, _)| n.as_str())
        .collect();
    if fit.is_empty() {
        format!("no {} source is defined", types.join(" or "))
    } else {
        format!("expected one of: {}", fit.join(", "))
    }
}

fn values(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<String>> {
    let Kind::Seq(items) = &node.kind else {
        let msg = format!("`values` must be a list, found {}", node.describe());
        cx.err(
            node.pos,
            path,
            msg,
            Some("write a list, e.g. `[a.sql, b.sql]`".into()),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match cx.string(item, &format!("{path}[{i}]")) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn lines(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<LinesProbe> {
    let before = cx.count();
    let f = cx.map(node, path, LINES_KEYS, &[("since", "key", "")])?;
    let file = match (f.get("source"), f.get("path")) {
        (Some(s), None) => {
            resolve_source(cx, s, &sub(path, "source"), sources, &["file"], "`lines`")
                .map(FileRef::Source)
        }
        (None, Some(p)) => cx
            .string(&p.value, &sub(path, "path"))
            .map(|p| FileRef::Path(cx.file.dir.join(p))),
        (Some(_), Some(p)) => {
            cx.err(
                p.key_pos,
                &sub(path, "path"),
                "`lines` takes `source` or `path`, not both",
                None,
            );
            None
        }
        (None, None) => {
            let msg = "`lines` needs a `source` (a `file` source) or a `path`";
            cx.err(f.pos, path, msg, None);
            None
        }
    };
    let pattern = f.get("match").and_then(|e| {
        let mpath = sub(path, "match");
        let re = cx.string(&e.value, &mpath)?;
        match regex::Regex::new(&re) {
            Ok(_) => Some(re),
            Err(err) => {
                cx.err(
                    e.value.pos,
                    &mpath,
                    format!("invalid regex: {}", regex_reason(&err)),
                    None,
                );
                None
            }
        }
    });
    let tail = f
        .get("tail")
        .and_then(|e| cx.uint(&e.value, &sub(path, "tail"), 1));
    if cx.count() > before {
        return None;
    }
    Some(LinesProbe {
        file: file?,
        pattern,
        tail,
    })
}

/// The last line of a regex error (`error: unclosed group`), without the pattern drawing.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

fn command(cx: &mut Cx, node: &Node, path: &str) -> Option<CommandProbe> {
    let before = cx.count();
    let f = cx.map(node, path, COMMAND_KEYS, &[])?;
    let run = cx.required(&f, "run", path).and_then(|e| {
        let rpath = sub(path, "run");
        if !matches!(e.value.kind, Kind::Seq(_)) {
            let msg = format!(
                "`run` must be a list (the program and its arguments), found {}",
                e.value.describe()
            );
            cx.err(
                e.value.pos,
                &rpath,
                msg,
                Some("write the argv as a list, e.g. `[ps, -eo, pid]`; no shell runs".into()),
            );
            return None;
        }
        let run = cx.string_list(&e.value, &rpath)?;
        if run.is_empty() {
            cx.err(e.value.pos, &rpath, "`run` must name a program", None);
            return None;
        }
        Some(run)
    });
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &sub(path, "timeout")));
    let cwd = f
        .get("cwd")
        .and_then(|e| cx.string(&e.value, &sub(path, "cwd")))
        .map(|c| cx.file.dir.join(c));
    let env = f.get("env").and_then(|e| {
        let epath = sub(path, "env");
        let vars = cx.any_map(&e.value, &epath)?;
        let mut out = BTreeMap::new();
        for v in vars {
            if let Some(s) = cx.string(&v.value, &sub(&epath, &v.key)) {
                out.insert(v.key.clone(), s);
            }
        }
        Some(out)
    });
    let parse = f.get("parse").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "parse"),
            "parse mode",
            &["lines", "json", "text"],
        )
    });
    if cx.count() > before {
        return None;
    }
    Some(CommandProbe {
        run: run?,
        timeout: timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        cwd,
        env: env.unwrap_or_default(),
        parse: match parse {
            Some("lines") => CommandParse::Lines,
            Some("json") => CommandParse::Json,
            _ => CommandParse::Text,
        },
    })
}
