//! Probes: `sql`, `values`, `lines`, `command`, `metrics`, `redis`, `http`, `promql` — and keyed probes
//! for set checks.

use crate::cx::{Cx, Fields, MAX_KEYS, MAX_TAIL, sub};
use crate::diag::did_you_mean;
use crate::sources::{PROMQL_TYPES, SourceTable, promql_probe};
use crate::yaml::{Entry, Kind, Node, Pos};
use invar_core::metrics::{MetricsProbe, is_identifier, parse_metric};
use invar_core::{
    CommandParse, CommandProbe, FileRef, HttpProbe, KeyedProbe, LinesProbe, Probe, RedisKind,
    RedisPattern, RedisProbe,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A probe's kind: the one key among [`KINDS`] it has. Matches on it are exhaustive, so a
/// new kind cannot silently parse as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Sql,
    Values,
    Lines,
    Command,
    Metrics,
    Redis,
    Http,
    Promql,
}

const KINDS: &[&str] = &[
    "sql", "values", "lines", "command", "metrics", "redis", "http", "promql",
];

impl ProbeKind {
    fn of(key: &str) -> Option<ProbeKind> {
        Some(match key {
            "sql" => ProbeKind::Sql,
            "values" => ProbeKind::Values,
            "lines" => ProbeKind::Lines,
            "command" => ProbeKind::Command,
            "metrics" => ProbeKind::Metrics,
            "redis" => ProbeKind::Redis,
            "http" => ProbeKind::Http,
            "promql" => ProbeKind::Promql,
            _ => return None,
        })
    }
}
const PROBE_KEYS: &[&str] = &[
    "source", "sql", "values", "lines", "command", "metrics", "redis", "http", "promql", "range",
    "step",
];
const KEYED_KEYS: &[&str] = &[
    "source", "sql", "values", "lines", "command", "metrics", "redis", "http", "promql", "range",
    "step", "key", "age",
];
/// The keys of a probe that only a `promql` probe uses.
const PROMQL_ONLY: &[&str] = &["range", "step"];
const METRICS_KEYS: &[&str] = &["table", "where", "compute"];
const LINES_KEYS: &[&str] = &["source", "path", "match", "tail", "since"];
const REDIS_KEYS: &[&str] = &["zset", "set", "hash", "string", "list", "ttl", "max_keys"];
const HTTP_KEYS: &[&str] = &[
    "path",
    "paths",
    "method",
    "headers",
    "body",
    "timeout",
    "follow_redirects",
];
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const COMMAND_KEYS: &[&str] = &[
    "run",
    "timeout",
    "cwd",
    "env",
    "parse",
    "max_output",
    "max_rows",
];
/// The range of a command's `max_output` (bytes of stdout, and of stderr) and `max_rows`.
const MAX_OUTPUT_RANGE: (u64, u64) = (1024, 1024 * 1024 * 1024);
const MAX_ROWS_RANGE: (u64, u64) = (1, 10_000_000);
const SQL_TYPES: &[&str] = &["postgres", "mysql", "sqlite"];
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A keyed probe plus where its `key` was stated (to compare key counts between sides).
pub(crate) struct Keyed {
    pub probe: KeyedProbe,
    pub key_pos: Option<Pos>,
}

/// A plain probe (the `probe:` of a probe check).
pub(crate) fn probe(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<Probe> {
    let f = cx.map(node, path, PROBE_KEYS, &[])?;
    probe_body(cx, &f, path, sources)
}

/// A set-check side: a probe plus `key` and `age`.
pub(crate) fn keyed(cx: &mut Cx, node: &Node, path: &str, sources: &SourceTable) -> Option<Keyed> {
    let before = cx.count();
    let f = cx.map(node, path, KEYED_KEYS, &[])?;
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
    let kinds: Vec<(&Entry, ProbeKind)> = f
        .entries
        .iter()
        .filter_map(|e| Some((e, ProbeKind::of(&e.key)?)))
        .collect();
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
        [(one, k)] => (*one, *k),
        [(first, _), (second, _), ..] => {
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
    let (kind, pk) = kind;
    let kpath = sub(path, &kind.key);
    if pk != ProbeKind::Promql {
        for key in PROMQL_ONLY {
            if let Some(e) = f.get(key) {
                let msg = format!("`{key}` is only used by a `promql` probe");
                cx.err(e.key_pos, &sub(path, key), msg, None);
            }
        }
    }
    match pk {
        ProbeKind::Sql => {
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
        ProbeKind::Metrics => {
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
        ProbeKind::Redis | ProbeKind::Http => {
            let ty = kind.key.as_str();
            let source = match f.get("source") {
                Some(e) => {
                    let user = format!("`{ty}`");
                    resolve_source(cx, e, &sub(path, "source"), sources, &[ty], &user)
                }
                None => {
                    let msg = format!("a `{ty}` probe needs a `source`");
                    cx.err(f.pos, path, msg, Some(sources_hint(sources, &[ty])));
                    None
                }
            };
            let source_name = source.clone().unwrap_or_default();
            let p = if pk == ProbeKind::Redis {
                redis(cx, &kind.value, &kpath, source_name).map(Probe::Redis)
            } else {
                http(cx, &kind.value, &kpath, source_name).map(Probe::Http)
            };
            source?;
            p
        }
        ProbeKind::Promql => {
            let source = match f.get("source") {
                Some(e) => {
                    let spath = sub(path, "source");
                    resolve_source(cx, e, &spath, sources, PROMQL_TYPES, "`promql`")
                }
                None => {
                    let msg = "a `promql` probe needs a `source`";
                    cx.err(f.pos, path, msg, Some(sources_hint(sources, PROMQL_TYPES)));
                    None
                }
            };
            promql_probe(cx, f, &kind.value, path, source)
        }
        ProbeKind::Values => {
            unused_source(cx, f, path, "values", None);
            values(cx, &kind.value, &kpath).map(Probe::Values)
        }
        ProbeKind::Lines => {
            let hint = "put it inside `lines:` (`lines: { source: …, match: … }`)";
            unused_source(cx, f, path, "lines", Some(hint));
            lines(cx, &kind.value, &kpath, sources).map(Probe::Lines)
        }
        ProbeKind::Command => {
            unused_source(cx, f, path, "command", None);
            command(cx, &kind.value, &kpath).map(Probe::Command)
        }
    }
}

/// A probe kind that reads no source, given a `source`: an error.
fn unused_source(cx: &mut Cx, f: &Fields, path: &str, kind: &str, hint: Option<&str>) {
    if let Some(e) = f.get("source") {
        let msg = format!("`source` is not used by a `{kind}` probe");
        cx.err(
            e.key_pos,
            &sub(path, "source"),
            msg,
            hint.map(str::to_string),
        );
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
    let f = cx.map(node, path, LINES_KEYS, &[])?;
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
        .and_then(|e| cx.uint(&e.value, &sub(path, "tail"), 1, MAX_TAIL));
    let since = f
        .get("since")
        .and_then(|e| cx.duration(&e.value, &sub(path, "since")));
    if cx.count() > before {
        return None;
    }
    Some(LinesProbe {
        file: file?,
        pattern,
        tail,
        since,
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
    let max_output = f.get("max_output").and_then(|e| {
        let mpath = sub(path, "max_output");
        let v = cx.string(&e.value, &mpath)?;
        let (lo, hi) = MAX_OUTPUT_RANGE;
        match invar_core::units::parse_size(&v) {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            Ok(_) => {
                cx.err(
                    e.value.pos,
                    &mpath,
                    format!("`max_output` must be between 1KiB and 1GiB, found `{v}`"),
                    None,
                );
                None
            }
            Err(err) => {
                cx.err(
                    e.value.pos,
                    &mpath,
                    format!("invalid size `{v}` for `max_output`"),
                    Some(err),
                );
                None
            }
        }
    });
    let max_rows = f.get("max_rows").and_then(|e| {
        let mpath = sub(path, "max_rows");
        cx.uint(&e.value, &mpath, MAX_ROWS_RANGE.0, MAX_ROWS_RANGE.1)
    });
    if cx.count() > before {
        return None;
    }
    Some(CommandProbe {
        max_output: max_output.unwrap_or(CommandProbe::DEFAULT_MAX_OUTPUT),
        max_rows: max_rows.unwrap_or(CommandProbe::DEFAULT_MAX_ROWS),
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

/// `redis: { zset: "agent:slots:{agent}", max_keys: 1000 }` — exactly one of the six kinds.
fn redis(cx: &mut Cx, node: &Node, path: &str, source: String) -> Option<RedisProbe> {
    let before = cx.count();
    let f = cx.map(node, path, REDIS_KEYS, &[])?;
    let kinds: Vec<&Entry> = f
        .entries
        .iter()
        .filter(|e| RedisKind::parse(&e.key).is_some())
        .collect();
    let names: Vec<&str> = RedisKind::ALL.iter().map(|k| k.as_str()).collect();
    let hint = || Some(format!("expected one of: {}", names.join(", ")));
    let kind = match kinds.as_slice() {
        [] => {
            let msg = "a `redis` probe names what to read; found none";
            cx.err(f.pos, path, msg, hint());
            None
        }
        [one] => Some(*one),
        [first, second, ..] => {
            let msg = format!(
                "a `redis` probe reads one kind; found `{}` and `{}`",
                first.key, second.key
            );
            cx.err(second.key_pos, &sub(path, &second.key), msg, hint());
            None
        }
    };
    let pattern = kind.and_then(|e| {
        let ppath = sub(path, &e.key);
        let pattern = cx.string(&e.value, &ppath)?;
        let k = RedisKind::parse(&e.key)?; // always Some: the keys were filtered by kind above
        match RedisPattern::parse(&pattern) {
            Ok(p) => {
                if let Some(c) = p
                    .captures
                    .iter()
                    .find(|c| k.columns().contains(&c.as_str()))
                {
                    let msg = format!("capture `{{{c}}}` has the name of a column of `{}`", e.key);
                    let hint = format!("rename it; the columns are: {}", k.columns().join(", "));
                    cx.err(e.value.pos, &ppath, msg, Some(hint));
                    return None;
                }
                Some((k, pattern))
            }
            Err(msg) => {
                let hint = "a key, or a pattern with `{name}` captures: `agent:slots:{agent}`";
                cx.err(e.value.pos, &ppath, msg, Some(hint.into()));
                None
            }
        }
    });
    let max_keys = f
        .get("max_keys")
        .and_then(|e| cx.uint(&e.value, &sub(path, "max_keys"), 1, MAX_KEYS));
    if cx.count() > before {
        return None;
    }
    let (kind, pattern) = pattern?;
    Some(RedisProbe {
        source,
        kind,
        pattern,
        max_keys,
    })
}

/// `http: { path | paths, method, headers, body, timeout, follow_redirects }`.
fn http(cx: &mut Cx, node: &Node, path: &str, source: String) -> Option<HttpProbe> {
    let before = cx.count();
    let f = cx.map(node, path, HTTP_KEYS, &[])?;
    let check_path = |cx: &mut Cx, p: String, at: &Node, ppath: &str| {
        if p.starts_with('/') {
            Some(p)
        } else {
            let msg = format!("`{p}` is not a path");
            let hint = "paths start with `/` and are joined to the source's `base_url`";
            cx.err(at.pos, ppath, msg, Some(hint.into()));
            None
        }
    };
    let paths = match (f.get("path"), f.get("paths")) {
        (Some(p), None) => {
            let ppath = sub(path, "path");
            cx.string(&p.value, &ppath)
                .and_then(|s| check_path(cx, s, &p.value, &ppath))
                .map(|p| vec![p])
        }
        (None, Some(p)) => {
            let ppath = sub(path, "paths");
            match &p.value.kind {
                Kind::Seq(items) if !items.is_empty() => {
                    let mut out = Vec::new();
                    let mut ok = true;
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{ppath}[{i}]");
                        match cx
                            .string(item, &ipath)
                            .and_then(|s| check_path(cx, s, item, &ipath))
                        {
                            Some(s) => out.push(s),
                            None => ok = false,
                        }
                    }
                    ok.then_some(out)
                }
                other => {
                    let msg = match other {
                        Kind::Seq(_) => "`paths` is empty".to_string(),
                        _ => format!("`paths` must be a list, found {}", p.value.describe()),
                    };
                    cx.err(
                        p.value.pos,
                        &ppath,
                        msg,
                        Some("e.g. `[/healthz, /v1/items]`".into()),
                    );
                    None
                }
            }
        }
        (Some(_), Some(p)) => {
            let msg = "`http` takes `path` or `paths`, not both";
            cx.err(p.key_pos, &sub(path, "paths"), msg, None);
            None
        }
        (None, None) => {
            let msg = "`http` needs a `path` or `paths`";
            cx.err(f.pos, path, msg, Some("e.g. `path: /healthz`".into()));
            None
        }
    };
    let method = f.get("method").and_then(|e| {
        let mpath = sub(path, "method");
        let m = cx.string(&e.value, &mpath)?.to_ascii_uppercase();
        if HTTP_METHODS.contains(&m.as_str()) {
            Some(m)
        } else {
            let msg = format!("unknown HTTP method `{m}`");
            cx.err(
                e.value.pos,
                &mpath,
                msg,
                Some(crate::diag::one_of_hint(&m, HTTP_METHODS)),
            );
            None
        }
    });
    let headers = f
        .get("headers")
        .and_then(|e| crate::sources::headers(cx, &e.value, &sub(path, "headers")));
    let body = f
        .get("body")
        .and_then(|e| cx.string(&e.value, &sub(path, "body")));
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &sub(path, "timeout")));
    let follow_redirects = f
        .get("follow_redirects")
        .and_then(|e| cx.bool(&e.value, &sub(path, "follow_redirects")));
    if cx.count() > before {
        return None;
    }
    Some(HttpProbe {
        source,
        paths: paths?,
        method: method.unwrap_or_else(|| "GET".into()),
        headers: headers.unwrap_or_default(),
        body,
        timeout,
        follow_redirects: follow_redirects.unwrap_or(false),
    })
}
